"""The run's record: `run_report.json` (everything, machine-readable), `report.html` (one self-contained page)
and `data_order.jsonl` (which records each process trained on at each optimizer step); `trainkit eval` writes
`eval_report.json` and `eval_report.html` the same way.

The page has the look and offline rules of the audit report (its CSS and the shared pieces of
reports/templates/_page.html.j2, charts drawn by reports/charts.py's helpers as inline SVG, no script at all): a
summary, the loss and learning-rate curves, the eval loss per label / source / prompt length, the worst records and
base-vs-adapter answers side by side, the advice, the plan with the reason for each choice, and the audit of the
training data. Every value is shaped for display here; nothing reaches the page as a raw dict, and text from the
data or the user is autoescaped. The data order traces a loss spike back to its records, and shows that the
processes of a multi-GPU run trained on disjoint shares of the data.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datakit.io.atomic import write_text
from trainkit.model_info import parameter_count
from trainkit.plan import TrainPlan

DATA_ORDER_FILE = "data_order.jsonl"
RUN_REPORT, RUN_PAGE = "run_report.json", "report.html"
EVAL_REPORT, EVAL_PAGE = "eval_report.json", "eval_report.html"
PLAN_ROWS = ("method", "learning_rate", "scheduler", "warmup_ratio", "epochs", "effective_batch", "micro_batch", "grad_accum",
             "max_length", "packing", "precision", "gradient_checkpointing", "lora", "target_modules", "template")
LOSS, EVAL, LR, HIGH = "#4f46e5", "#dc2626", "#0d9488", "#f59e0b"  # reports/charts.py's palette


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    import trainkit

    return {"trainkit": trainkit.__version__, "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


# ---- charts (reports/charts.py's style and SVG helpers) ------------------------------------------------------------


def curves_svg(log_history: list[dict]) -> str | None:
    """Train and eval loss against the step, and the learning rate beneath, as one inline SVG (None: nothing logged)."""
    import matplotlib as mpl

    from reports.charts import STYLE, new_figure, svg_of
    from trainkit.monitor import overfitting

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    lrs = [(h["step"], h["learning_rate"]) for h in log_history if "learning_rate" in h]
    if not (train or evals or lrs):
        return None
    with mpl.rc_context(STYLE):
        fig = new_figure(8.0, 4.6)
        ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        if train:
            ax_loss.plot(*zip(*train), label="train loss", color=LOSS, linewidth=1.4)
        if evals:
            ax_loss.plot(*zip(*evals), "o-", label="eval loss", color=EVAL, linewidth=1.4, markersize=3.5)
        onset = overfitting(log_history)
        if onset:
            ax_loss.axvline(onset.step, color=HIGH, linewidth=1.2, linestyle="--",
                            label=f"overfitting from epoch {onset.epoch} (step {onset.step})")
        ax_loss.set_ylabel("loss")
        if train or evals:
            ax_loss.legend(frameon=False)
        if lrs:
            ax_lr.plot(*zip(*lrs), color=LR, linewidth=1.4)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("optimizer step")
        return svg_of(fig, "curves", "loss and learning rate per optimizer step")


def groups_svg(groups: list[dict], overall: float, key: str, title: str) -> str | None:
    """Eval loss per group as horizontal bars, the whole eval loss as a line; failing groups (`trainkit.advice.failing`:
    20% or more above the other eval records) in amber."""
    import matplotlib as mpl

    from reports.charts import STYLE, TOP_BARS, new_figure, short_label, svg_of
    from trainkit.advice import failing

    if not groups:
        return None
    shown = groups[:TOP_BARS]
    with mpl.rc_context(STYLE):
        fig = new_figure(5.6, 0.7 + 0.26 * len(shown))
        ax = fig.subplots()
        names = [short_label(g["name"]) for g in shown][::-1]
        values = [g["loss"] for g in shown][::-1]
        colors = [HIGH if failing(g, groups) else LOSS for g in shown][::-1]
        bars = ax.barh(range(len(values)), values, color=colors, height=0.7)
        ax.set_yticks(range(len(values)), names)
        ax.grid(axis="y", visible=False)
        ax.axvline(overall, color=EVAL, linewidth=1.1, linestyle="--")
        ax.set_xlabel(f"eval loss (dashed: whole eval set, {overall:.3f})")
        ax.bar_label(bars, [f"{v:.3f}" for v in values], padding=3, fontsize=8)
        ax.margins(x=0.18)
        return svg_of(fig, key, title)


# ---- the page --------------------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    return str(v)


def _memory(mem: dict) -> str:
    if "gpu_peak_allocated_gib" in mem:
        return f"{mem['gpu_peak_allocated_gib']:g} GiB on {mem['device']}"
    return f"{mem.get('process_peak_rss_gib', 0):g} GiB (process RSS, CPU)"


def _processes(processes: dict, plan: dict) -> str:
    count = processes["count"]
    batch = f"{plan['micro_batch']['value']} row(s) x {plan['grad_accum']['value']} accumulation"
    return f"{count}; global batch {batch}{f' x {count} processes' if count > 1 else ''} = {processes['global_batch_rows']} rows"


def _eval_view(evaluation: dict | None) -> dict | None:
    """The eval section shaped for the page: tables of groups, charts, and prompts as lines of `role: text`."""
    if not evaluation or evaluation.get("loss") is None:
        return None
    overall = evaluation["loss"]
    from trainkit.advice import failing, rest_loss

    def table(groups):
        rows = []
        for g in groups:
            rest = rest_loss(g, groups)
            rows.append({"name": g["name"], "records": g["records"], "tokens": g["tokens"], "loss": f"{g['loss']:.3f}",
                         "perplexity": f"{g['perplexity']:.2f}", "ratio": f"{g['loss'] / rest:.2f}x" if rest else "–",
                         "failing": failing(g, groups)})
        return rows

    def prompt(messages):
        return [(m["role"], m["content"]) for m in messages]

    return {
        "loss": f"{overall:.4f}", "perplexity": f"{evaluation['perplexity']:.2f}", "records": evaluation["records"],
        "tokens": evaluation["tokens"], "label_field": evaluation.get("label_field"), "answers_with": evaluation.get("answers_with"),
        "max_length": evaluation.get("max_length"), "over_length": len(evaluation.get("over_length", [])),
        "not_rendered": len(evaluation.get("not_rendered", [])),
        "by_label": table(evaluation.get("by_label", [])), "by_source": table(evaluation.get("by_source", [])),
        "by_length": table(evaluation.get("by_length", [])),
        "label_chart": groups_svg(evaluation.get("by_label", []), overall, "labels", "eval loss per label"),
        "worst": [w | {"prompt": prompt(w["prompt"]), "loss": f"{w['loss']:.3f}"} for w in evaluation.get("worst", [])],
        "compare": [c | {"prompt": prompt(c["prompt"])} for c in evaluation.get("compare_base", [])],
        "base_answers_with": evaluation.get("base_answers_with"),
        "advice": evaluation.get("advice", []),
    }


def _audit_view(audit: dict) -> dict:
    return {"checksum": audit["checksum"], "records": audit["records"], "valid_records": audit["valid_records"],
            "by_severity": audit["by_severity"], "by_rule": list(audit["by_rule"].items()),
            "next_steps": [(c.strip(), why.strip()) for c, _, why in (s.partition("   # ") for s in audit["next_steps"])]}


def page_view(r: dict) -> dict:
    """Everything the run (or eval) page shows, as strings, numbers and lists of rows."""
    plan = r.get("plan")
    view: dict[str, Any] = {"kind": r.get("kind", "run"), "run_dir": r["run_dir"], "evaluation": _eval_view(r.get("evaluation")),
                            "audit": _audit_view(r["audit"]) if r.get("audit") else None,
                            "notes": list(r.get("diagnoses", [])) + (plan["warnings"] if plan else []),
                            "versions": " · ".join(f"{k} {v}" for k, v in r["versions"].items()), "data": r.get("data")}
    if plan:
        model, tp = plan["model"], r["throughput"]
        losses = [h["loss"] for h in r["log_history"] if "loss" in h]
        records = r["records"]
        view |= {
            "plan": [(name, _value(plan[name]["value"]), plan[name]["reason"]) for name in PLAN_ROWS],
            "data": plan["data"], "model": f"{model['path']} ({model['model_type']}, {parameter_count(model['params'])} parameters)",
            "method": plan["method"]["value"], "steps": f"{r['steps']} of {plan['total_steps']}", "interrupted": r["interrupted"],
            "train_loss": f"{losses[-1]:.4f}" if losses else "–", "first_loss": f"{losses[0]:.4f}" if losses else "–",
            "records": records, "eval_split": r["eval_split"], "attention": r["attention"],
            "processes": _processes(r["processes"], plan), "tokens_per_s": f"{tp['real_tokens_per_s']:,}",
            "real_tokens": f"{tp['real_tokens']:,}", "seconds": tp["seconds"],
            "padding": "–" if tp["padding_share"] is None else f"{100 * tp['padding_share']:.1f}%",
            "memory": _memory(r["peak_memory"]), "output": r["output_dir"], "curves": curves_svg(r["log_history"]),
        }
    return view


def render_html(r: dict) -> str:
    """The run report page (or, for `kind: eval`, the eval report page) from the JSON report's dict."""
    from reports.html import ASSETS, page_environment

    css = (ASSETS / "report.css").read_text(encoding="utf-8") + (ASSETS / "run.css").read_text(encoding="utf-8")
    return page_environment().get_template("run_report.html.j2").render(r=page_view(r), css=css)


def write_run_report(run_dir: Path, *, plan: TrainPlan, audit: dict, log_history: list[dict], throughput: dict,
                     peak_memory_gib: dict, eval_split: str, diagnoses: list[str], output_dir: Path, interrupted: bool,
                     attention: str, records: dict, steps: int, processes: dict, evaluation: dict | None = None,
                     eval_lines: list[int] | None = None) -> Path:
    """`run_report.json` and `report.html`. `eval_lines`: the source lines the run held out (`trainkit eval` reads the
    same records again from them); `evaluation`: the eval section of `trainkit.evaluate`, with its advice."""
    report = {"kind": "run", "run_dir": str(run_dir), "output_dir": str(output_dir), "interrupted": interrupted, "steps": steps,
              "records": records, "eval_split": eval_split, "eval_lines": eval_lines, "attention": attention,
              "processes": processes, "throughput": throughput, "peak_memory": peak_memory_gib, "diagnoses": diagnoses,
              "versions": versions(), "plan": plan.model_dump(mode="json"), "audit": audit, "evaluation": evaluation,
              "log_history": log_history}
    write_text(run_dir / RUN_REPORT, json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text(run_dir / RUN_PAGE, render_html(report))
    return run_dir / RUN_PAGE


def write_eval_report(run_dir: Path, *, evaluation: dict, audit: dict | None, data: str) -> Path:
    """`eval_report.json` and `eval_report.html` of `trainkit eval` in the run folder."""
    report = {"kind": "eval", "run_dir": str(run_dir), "data": data, "versions": versions(), "audit": audit,
              "evaluation": evaluation}
    write_text(run_dir / EVAL_REPORT, json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    write_text(run_dir / EVAL_PAGE, render_html(report))
    return run_dir / EVAL_PAGE


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
