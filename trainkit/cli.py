"""The `trainkit` command line (plan, train, merge)."""
from __future__ import annotations

import typer

app = typer.Typer(help="Fine-tune LoRA/QLoRA adapters from audited data.", no_args_is_help=True, add_completion=False)


@app.command()
def version() -> None:
    """Print the trainkit version."""
    from trainkit import __version__

    typer.echo(__version__)


def main() -> None:
    app()
