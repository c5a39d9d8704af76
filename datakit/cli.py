"""The `datakit` command line: each command parses flags, calls the Python function of the same name, prints.

User errors (unreadable input, bad options) end with one clear line on stderr and exit status 2;
findings at or above --fail-on end with exit status 1.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from datakit.config import ConfigError, build_config
from datakit.io.atomic import write_text
from datakit.io.read import InputError
from datakit.measure.tokens import TokenizerError
from reports.gx import GxUnavailable

app = typer.Typer(help="Audit, repair, rebalance and split supervised fine-tuning data.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # a write failed for want of space
USER_ERRORS = (InputError, ConfigError, TokenizerError, GxUnavailable, ValueError, FileNotFoundError, IsADirectoryError,
               PermissionError)


def _split(values: list[str] | None) -> list[str] | None:
    """Options given repeatedly and/or comma-separated: --only a,b --only c -> [a, b, c]."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@app.command()
def audit(
    path: Annotated[Path, typer.Argument(help="Dataset file (JSONL, JSON array, .gz of either, Parquet) or a directory of them.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON here.")] = None,
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class/category label.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Token limit per record (default 2048).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Local Hugging Face tokenizer directory (default: cl100k, offline).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these rule families (comma-separated).")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these rule families (comma-separated).")] = None,
    against: Annotated[list[str] | None, typer.Option(help="Eval/test file(s) to check contamination against (repeat or comma-separate).")] = None,
    fail_on: Annotated[str | None, typer.Option(help="Exit 1 when a finding reaches: error | warning | never.")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file: TOML, YAML or JSON (an [audit] table or bare keys).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal summary; exit status only.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here (default: next to --json with .html, else ./report.html).")] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Do not write the HTML report.")] = False,
    html_max_findings: Annotated[int, typer.Option(min=0, help="Findings per rule embedded in the HTML page; the JSON keeps all.")] = 2000,
    markdown: Annotated[Path | None, typer.Option(help="Write a compact Markdown summary (for a pull-request comment) here.")] = None,
    gx_suite: Annotated[Path | None, typer.Option(help="Export the dataset-level rules as a Great Expectations suite (JSON) here.")] = None,
    gx: Annotated[bool, typer.Option("--gx", help="Validate the rules with Great Expectations too and add the result to the report.")] = False,
    engine: Annotated[str, typer.Option(help="local (this machine, batch by batch) | ray (a Ray cluster: pip install 'datakit[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address for --engine ray (e.g. auto); default: a local cluster.")] = None,
    batch_records: Annotated[int, typer.Option(min=1, help="Records per batch: memory use grows with it.")] = 10_000,
    inline_findings: Annotated[int, typer.Option(min=0, help="Findings listed inline in the JSON report at most; beyond, they go to <report>.findings.parquet beside it.")] = 100_000,
    score_model: Annotated[Path | None, typer.Option(help="Local causal LM folder: score each answer's perplexity and IFD (correspondence; GPU if any, else CPU).")] = None,
) -> None:
    """Audit a dataset against the data-quality rules; print a summary, write the HTML report and optionally JSON/Markdown."""
    from datakit.audit import GX_MEASURES, Audit
    from datakit.io.report_files import write_html, write_markdown, write_report_json
    from reports import terminal

    cfg = build_config(config, label_field=label_field, max_tokens=max_tokens,
                       tokenizer=str(tokenizer) if tokenizer else None, only=_split(only), skip=_split(skip),
                       against=_split(against), fail_on=fail_on, score_model=str(score_model) if score_model else None)
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine {engine}: expected local or ray.")
    html_out = None if no_html else html or (json_out.with_suffix(".html") if json_out else Path("report.html"))
    written = [p for p in (json_out, html_out, markdown, gx_suite) if p]
    with Audit(path, cfg, progress=not quiet, engine=engine, ray_address=ray_address, batch_records=batch_records,
               inline_limit=inline_findings, extra_measures=GX_MEASURES if gx_suite or gx else ()) as run:
        report = run.report
        if gx_suite or gx:
            from reports import gx as gx_report

            metrics = run.metrics()
            if gx_suite:
                write_text(gx_suite, gx_report.suite_json(report, metrics.columns))
            if gx:
                report = report.model_copy(update={"gx": gx_report.validate(report, metrics)})
        if json_out:
            report = write_report_json(report, json_out)
        base = json_out.parent if json_out else None
        if html_out:
            write_html(report, html_out, html_max_findings, base)
        if markdown:
            write_markdown(report, markdown, base)
        if not quiet:
            terminal.render(report, out)
            for written_path in written:
                out.print(f"written: {written_path}")
    raise typer.Exit(1 if report.fails(cfg.fail_on) else 0)


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="A JSON report written by `datakit audit --json`.")],
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here (default: next to the JSON, .html).")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown summary here.")] = None,
    html_max_findings: Annotated[int, typer.Option(min=0, help="Findings per rule embedded in the HTML page.")] = 2000,
) -> None:
    """Re-render a saved JSON report as HTML and/or Markdown, without auditing again."""
    from pydantic import ValidationError

    from datakit.io.report_files import write_html, write_markdown
    from reports.json_report import read_json

    try:
        saved = read_json(path)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{path}: not a datakit JSON report ({'.'.join(map(str, first['loc'])) or 'document'}: {first['msg']}). "
                         "Write one with `datakit audit DATA --json report.json`.") from None
    if html is None and markdown is None:
        html = path.with_suffix(".html")
    if html:
        write_html(saved, html, html_max_findings, path.parent)
        out.print(f"written: {html}")
    if markdown:
        write_markdown(saved, markdown, path.parent)
        out.print(f"written: {markdown}")


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
def schema(output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None) -> None:
    """Print the JSON Schema of the audit report (the `--json` output contract)."""
    from reports.json_report import json_schema

    if output:
        write_text(output, json_schema())
    else:
        sys.stdout.write(json_schema())


@app.command()
def fix(
    path: Annotated[Path, typer.Argument(help="Dataset file to fix; it is never modified.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Clean file, in the input's record format; its suffix picks the container (.jsonl, .json, .parquet, + .gz).")] = None,
    rejected: Annotated[Path | None, typer.Option(help="Rejected records with every reason (default: next to -o, .rejected.jsonl).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show counts per rule and a few before/after diffs; write nothing.")] = False,
    against: Annotated[list[str] | None, typer.Option(help="Eval/test file(s): training records leaking into them are rejected.")] = None,
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class/category label.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Token limit per record (default 2048).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Local Hugging Face tokenizer directory (default: cl100k, offline).")] = None,
    over_length: Annotated[str | None, typer.Option(help="Over-length records: drop (default) | truncate (cut the last answer).")] = None,
    pii: Annotated[str | None, typer.Option(help="PII and secrets: redact (default) | reject.")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Apply only these rule families (comma-separated).")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these rule families (comma-separated).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file: TOML, YAML or JSON (an [audit] table or bare keys).")] = None,
    engine: Annotated[str, typer.Option(help="local | ray: where the audit pass runs (pip install 'datakit[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address for --engine ray (e.g. auto).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    score_model: Annotated[Path | None, typer.Option(help="Local causal LM folder scoring each answer's IFD (for --keep-top-ifd).")] = None,
    keep_top_ifd: Annotated[float | None, typer.Option(help="Keep this share of the records with IFD < 1, highest IFD first; reject the rest (needs --score-model).")] = None,
    decisions: Annotated[Path | None, typer.Option(help="Decisions file written by `datakit review`: applied first, then the automatic repairs to the rest.")] = None,
) -> None:
    """Repair what can be repaired, move the rest to a rejected file with its reasons: clean + rejected == input."""
    from datakit.fix import fix as fix_file
    from datakit.fix import print_summary

    if engine not in ("local", "ray"):
        raise ValueError(f"--engine {engine}: expected local or ray.")
    result = fix_file(path, output, rejected, dry_run=dry_run, config_file=config, progress=not quiet,
                      engine=engine, ray_address=ray_address,
                      against=_split(against), label_field=label_field, max_tokens=max_tokens,
                      tokenizer=str(tokenizer) if tokenizer else None, only=_split(only), skip=_split(skip),
                      pii={"action": pii} if pii else None, fix={"over_length": over_length} if over_length else None,
                      score_model=str(score_model) if score_model else None,
                      correspondence={"keep_top_ifd": keep_top_ifd} if keep_top_ifd is not None else None,
                      decisions=decisions)
    print_summary(result, out)


@app.command()
def balance(
    path: Annotated[Path, typer.Argument(help="Dataset file to rebalance.")],
    by: Annotated[str, typer.Option("--by", help="Record field holding the class label.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Rebalanced file; its suffix picks the container (.jsonl, .json, .parquet, + .gz).")] = None,
    strategy: Annotated[str, typer.Option(help="cap (downsample big classes) | floor (upsample small ones) | shares.")] = "cap",
    shares: Annotated[str | None, typer.Option(help="Target shares for --strategy shares, e.g. a=0.5,b=0.5 (default: uniform).")] = None,
    max_per_class: Annotated[int | None, typer.Option(help="cap: records per class at most (default: smallest x max imbalance ratio).")] = None,
    min_per_class: Annotated[int | None, typer.Option(help="floor: records per class at least (default: largest / max imbalance ratio).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Write per-class loss weights (JSON) here instead of resampling.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 0,
    rejected: Annotated[Path | None, typer.Option(help="Capped records with their reason (default: next to -o, .rejected.jsonl).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file: TOML, YAML or JSON (balance.max_imbalance_ratio).")] = None,
) -> None:
    """Rebalance classes by resampling (nothing is lost: capped records keep their reason), or write loss weights."""
    from datakit.balance import balance as balance_file
    from datakit.balance import parse_shares, print_summary

    result = balance_file(path, by, output, strategy=strategy, shares=parse_shares(shares) if shares else None,
                          max_per_class=max_per_class, min_per_class=min_per_class, weights=weights, seed=seed,
                          rejected=rejected, config_file=config)
    print_summary(result, out)


@app.command(name="split")
def split_command(
    path: Annotated[Path, typer.Argument(help="Dataset file to split.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output directory (default: <input>_split next to it).")] = None,
    eval_share: Annotated[float, typer.Option("--eval", help="Share of records for eval.")] = 0.1,
    test_share: Annotated[float, typer.Option("--test", help="Share of records for test (0: no test file).")] = 0.0,
    stratify: Annotated[str | None, typer.Option(help="Record field to stratify by (the class label).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    threshold: Annotated[float | None, typer.Option(help="Near-duplicate Jaccard threshold for grouping (default 0.8).")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file: TOML, YAML or JSON (an [audit] table or bare keys).")] = None,
) -> None:
    """Write train / eval (/ test) files; duplicate and near-duplicate groups never straddle splits."""
    from datakit.split import print_summary
    from datakit.split import split as split_file

    result = split_file(path, output, eval_share=eval_share, test_share=test_share, stratify=stratify, seed=seed,
                        config_file=config, threshold=threshold, progress=True)
    print_summary(result, out)


@app.command()
def convert(
    path: Annotated[Path, typer.Argument(help="Dataset file to convert.")],
    to: Annotated[str, typer.Option("--to", help="Target format: alpaca | sharegpt | openai.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Converted file; its suffix picks the container (default: <input>.<to>.<ext>, the input's container).")] = None,
    rejected: Annotated[Path | None, typer.Option(help="Records the target cannot hold, with the reason (default: next to -o).")] = None,
    dataset_info: Annotated[str | None, typer.Option(help="Add/replace this entry in a LLaMA-Factory dataset_info.json next to -o.")] = None,
) -> None:
    """Convert between Alpaca, ShareGPT and OpenAI messages; lossless where the formats allow, refusing clearly where not."""
    from datakit.convert import convert as convert_file
    from datakit.convert import print_summary

    print_summary(convert_file(path, to, output, rejected=rejected, dataset_info=dataset_info), out)


@app.command()
def mix(
    paths: Annotated[list[Path], typer.Argument(help="Input files: a task set, then general data, ...")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Mixed file; its suffix picks the container (.jsonl, .json, .parquet, + .gz; else JSON Lines).")],
    ratio: Annotated[str | None, typer.Option(help="One share per input, e.g. 0.8,0.2 (default: every record once).")] = None,
    total: Annotated[int | None, typer.Option(help="Records in the mix (default: the largest that repeats no record).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same file.")] = 0,
    to: Annotated[str | None, typer.Option("--to", help="Convert every record to alpaca | sharegpt | openai first.")] = None,
) -> None:
    """Mix a task set with general data at a fixed ratio (against catastrophic forgetting); each record tagged with _source."""
    from datakit.mix import mix as mix_files
    from datakit.mix import parse_ratio, print_summary

    print_summary(mix_files(paths, output, ratio=parse_ratio(ratio) if ratio else None, total=total, seed=seed, to=to), out)


@app.command()
def review(
    path: Annotated[Path, typer.Argument(help="Dataset file to review; it is never modified.")],
    report: Annotated[Path | None, typer.Option(help="A JSON report of this file from `datakit audit --json` (default: audit it now).")] = None,
    decisions: Annotated[Path | None, typer.Option(help="Decisions file to append to and resume from (default: <data>.review.jsonl beside the data).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: a free one).")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL (remote machines, SSH tunnels).")] = False,
    label_field: Annotated[str | None, typer.Option(help="Record field holding the class/category label.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Token limit per record (default 2048).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Local Hugging Face tokenizer directory (default: cl100k, offline).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these rule families (comma-separated).")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these rule families (comma-separated).")] = None,
    against: Annotated[list[str] | None, typer.Option(help="Eval/test file(s) to check contamination against.")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file: TOML, YAML or JSON (an [audit] table or bare keys).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Decide in a local web page what fix cannot (which copy to keep, which answer is right, how to rewrite one);
    apply the decisions with `datakit fix --decisions`."""
    from datakit.review.server import review as review_file

    result = review_file(path, report, decisions, port=port, open_browser=not no_browser, config_file=config,
                         progress=not quiet, label_field=label_field, max_tokens=max_tokens,
                         tokenizer=str(tokenizer) if tokenizer else None, only=_split(only), skip=_split(skip),
                         against=_split(against))
    out.print(f"stopped: {result.decided} of {result.flagged} flagged records decided; decisions in {result.decisions}. "
              f"Apply them: datakit fix {path} -o CLEAN.jsonl --decisions {result.decisions}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: runs the app and turns user errors into one line and exit status 2, never a traceback."""
    try:
        # Without standalone mode click returns a command's exit status instead of exiting with it.
        sys.exit(app(standalone_mode=False) or 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("[red]aborted[/]")
        sys.exit(130)
    except USER_ERRORS as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)  # escaped: "datakit[ray]" is no markup tag
        sys.exit(2)
    except Exception as e:  # a full disk, click usage errors and anything unforeseen: one line, never a traceback
        import click

        if isinstance(e, OSError) and e.errno in FULL:
            err.print(f"[red]error:[/] cannot write {e.filename or 'an output file'}: {e.strerror} (the disk, a quota or "
                      "a file-size limit is full). Nothing half-written was left; free space or write elsewhere, then "
                      "run the command again.", highlight=False)
            sys.exit(2)

        # typer >= 0.29 bundles its own click: its usage errors are not click's classes but show() the same way.
        if isinstance(e, (click.exceptions.ClickException, typer.exceptions.TyperException)) and hasattr(e, "show"):
            e.show()
            sys.exit(2)
        if os.environ.get("DATAKIT_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {escape(str(e))}. Re-run with DATAKIT_DEBUG=1 for the traceback "
                  "and report it.", highlight=False)
        sys.exit(2)
