"""The `datakit` command line: each command parses flags, calls the Python function of the same name, prints.

User errors (unreadable input, bad options) end with one clear line on stderr and exit status 2;
findings at or above --fail-on end with exit status 1.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from datakit.config import ConfigError, build_config
from datakit.io.read import InputError
from datakit.measure.tokens import TokenizerError

app = typer.Typer(help="Audit, repair, rebalance and split supervised fine-tuning data.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
USER_ERRORS = (InputError, ConfigError, TokenizerError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError)


def _split(values: list[str] | None) -> list[str] | None:
    """Options given repeatedly and/or comma-separated: --only a,b --only c -> [a, b, c]."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@app.command()
def audit(
    path: Annotated[Path, typer.Argument(help="Dataset file: JSONL, JSON array, .gz of either, or Parquet.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON here.")] = None,
    label_field: Annotated[Optional[str], typer.Option(help="Record field holding the class/category label.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Token limit per record (default 2048).")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Local Hugging Face tokenizer directory (default: cl100k, offline).")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these rule families (comma-separated).")] = None,
    skip: Annotated[Optional[list[str]], typer.Option(help="Skip these rule families (comma-separated).")] = None,
    against: Annotated[Optional[list[str]], typer.Option(help="Eval/test file(s) to check contamination against (repeat or comma-separate).")] = None,
    fail_on: Annotated[Optional[str], typer.Option(help="Exit 1 when a finding reaches: error | warning | never.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML config file (an [audit] table or bare keys).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal summary; exit status only.")] = False,
) -> None:
    """Audit a dataset against the data-quality rules; print a summary, optionally write the JSON report."""
    from datakit.audit import run_audit
    from reports import terminal
    from reports.json_report import write_json

    cfg = build_config(config, label_field=label_field, max_tokens=max_tokens,
                       tokenizer=str(tokenizer) if tokenizer else None, only=_split(only), skip=_split(skip),
                       against=_split(against), fail_on=fail_on)
    run = run_audit(path, cfg, progress=not quiet)
    report = run.report
    if json_out:
        write_json(report, json_out)
    if not quiet:
        terminal.render(report, out)
        if json_out:
            out.print(f"report written to {json_out}")
    raise typer.Exit(1 if report.fails(cfg.fail_on) else 0)


@app.command()
def rules() -> None:
    """List every rule: its code, severity, default setting and the reason it exists."""
    from validators import all_codes

    table = Table(show_header=True, header_style="bold", expand=True)
    for col in ("code", "severity", "default", "why"):
        table.add_column(col, overflow="fold")
    for _, code in all_codes():
        table.add_row(code.code, code.severity.value + (" (fixable)" if code.fixable else ""), code.default, code.why)
    out.print(table)


@app.command()
def schema(output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write here instead of stdout.")] = None) -> None:
    """Print the JSON Schema of the audit report (the `--json` output contract)."""
    from datakit.io.atomic import write_text
    from reports.json_report import json_schema

    if output:
        write_text(output, json_schema())
    else:
        sys.stdout.write(json_schema())


def main() -> None:
    """Entry point: runs the app and turns user errors into one line and exit status 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("[red]aborted[/]")
        sys.exit(130)
    except USER_ERRORS as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except Exception as e:  # click usage errors and anything unforeseen: one line, never a traceback
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        if os.environ.get("DATAKIT_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e}. Re-run with DATAKIT_DEBUG=1 for the traceback "
                  "and report it.", highlight=False)
        sys.exit(2)
