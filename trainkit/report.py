"""The run's record: `run_report.json` (everything, machine-readable), `report.html` (one self-contained page)
and `data_order.jsonl` (which records each process trained on at each optimizer step).

The HTML page has the loss and learning-rate curves (matplotlib, inlined as SVG), the plan with the
reason for each choice, the audit summary, throughput and peak memory. It opens offline and every
string from the data or the user is escaped. The data order traces a loss spike back to its records,
and shows that the processes of a multi-GPU run trained on disjoint shares of the data.
"""
from __future__ import annotations

import io
import json
from html import escape
from pathlib import Path
from typing import Any

from datakit.io.atomic import write_text
from trainkit.model_info import parameter_count
from trainkit.plan import TrainPlan

DATA_ORDER_FILE = "data_order.jsonl"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"  # no script at all
PLAN_ROWS = ("method", "learning_rate", "scheduler", "warmup_ratio", "epochs", "effective_batch", "micro_batch", "grad_accum",
             "max_length", "packing", "precision", "gradient_checkpointing", "lora", "target_modules", "template")


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    import trainkit

    return {"trainkit": trainkit.__version__, "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def curves_svg(log_history: list[dict]) -> str:
    """Train and eval loss against the step, and the learning rate beneath, as one inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    lrs = [(h["step"], h["learning_rate"]) for h in log_history if "learning_rate" in h]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(3, 1))
    if train:
        ax_loss.plot(*zip(*train), label="train loss", color="#1f77b4")
    if evals:
        ax_loss.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    if train or evals:
        ax_loss.legend()
    if lrs:
        ax_lr.plot(*zip(*lrs), color="#2ca02c")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # no timestamp: same run, same bytes
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _table(rows: list[tuple[str, str, str]], head: tuple[str, ...]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _processes(processes: dict, plan: dict) -> str:
    count = processes["count"]
    batch = f"{plan['micro_batch']['value']} row(s) x {plan['grad_accum']['value']} accumulation"
    return f"{count}; global batch {batch}{f' x {count} processes' if count > 1 else ''} = {processes['global_batch_rows']} rows"


def render_html(r: dict) -> str:
    plan = r["plan"]
    plan_rows = [(name, _value(plan[name]["value"]), plan[name]["reason"]) for name in PLAN_ROWS]
    audit = r["audit"]
    audit_rows = [(rule, str(n), "") for rule, n in audit["by_rule"].items()] or [("(no findings)", "0", "")]
    tp, mem = r["throughput"], r["peak_memory"]
    model = plan["model"]
    facts = [("data", f"{plan['data']}  ({audit['checksum']})"),
             ("model", f"{model['path']} ({model['model_type']}, {parameter_count(model['params'])} parameters)"),
             ("records", json.dumps(r["records"])), ("eval split", r["eval_split"]), ("attention", r["attention"]),
             ("processes", _processes(r["processes"], plan)),
             ("steps", f"{r['steps']} of {plan['total_steps']}" + ("  (interrupted: resume with --resume)" if r["interrupted"] else "")),
             ("real tokens/s", f"{tp['real_tokens_per_s']:,}"), ("real tokens", f"{tp['real_tokens']:,}"),
             ("padding share", "-" if tp["padding_share"] is None else f"{100 * tp['padding_share']:.1f}%"),
             ("peak memory", json.dumps(mem)), ("output", r["output_dir"]), ("versions", json.dumps(r["versions"]))]
    notes = "".join(f"<li>{escape(t)}</li>" for t in r["diagnoses"] + plan["warnings"]) or "<li>none</li>"
    style = ("body{font:14px system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse;"
             "width:100%;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
             "th{background:#f4f4f4}h1{font-size:1.5em}svg{max-width:100%;height:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<title>trainkit run: {escape(r['run_dir'])}</title>"
            f"<style>{style}</style></head><body><h1>trainkit run: {escape(r['run_dir'])}</h1>"
            f"{_table(facts, ('', ''))}<h2>Loss and learning rate</h2>{r['_svg']}"
            f"<h2>Diagnoses and warnings</h2><ul>{notes}</ul>"
            f"<h2>Plan</h2>{_table(plan_rows, ('setting', 'value', 'why'))}"
            f"<h2>Audit of the training data</h2><p>{escape(json.dumps(audit['by_severity']))}</p>"
            f"{_table(audit_rows, ('rule', 'findings', ''))}</body></html>\n")


def write_run_report(run_dir: Path, *, plan: TrainPlan, audit: dict, log_history: list[dict], throughput: dict,
                     peak_memory_gib: dict, eval_split: str, diagnoses: list[str], output_dir: Path, interrupted: bool,
                     attention: str, records: dict, steps: int, processes: dict) -> Path:
    report = {"run_dir": str(run_dir), "output_dir": str(output_dir), "interrupted": interrupted, "steps": steps,
              "records": records, "eval_split": eval_split, "attention": attention, "processes": processes, "throughput": throughput,
              "peak_memory": peak_memory_gib, "diagnoses": diagnoses, "versions": versions(),
              "plan": plan.model_dump(mode="json"), "audit": audit, "log_history": log_history}
    write_text(run_dir / "run_report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text(run_dir / "report.html", render_html({**report, "_svg": curves_svg(log_history)}))
    return run_dir / "report.html"


def data_order_lines(by_process: list[list[tuple[int, list[int]]]]) -> list[str]:
    """One JSON line per optimizer step: `{"step": s, "records": [[source lines of process 0's records], ...]}`."""
    steps: dict[int, list[list[int]]] = {}
    for rank, order in enumerate(by_process):
        for step, lines in order:
            steps.setdefault(step, [[] for _ in by_process])[rank].extend(lines)
    return [json.dumps({"step": step, "records": records}) + "\n" for step, records in sorted(steps.items())]


def write_data_order(run_dir: Path, by_process: list[list[tuple[int, list[int]]]], resumed: bool) -> Path:
    """`data_order.jsonl`; a resumed run keeps the steps its earlier sessions trained before this one's first step."""
    path = run_dir / DATA_ORDER_FILE
    new = data_order_lines(by_process)
    earlier = path.read_text(encoding="utf-8").splitlines(keepends=True) if resumed and path.is_file() else []
    first = json.loads(new[0])["step"] if new else float("inf")
    write_text(path, "".join([line for line in earlier if json.loads(line)["step"] < first] + new))
    return path
