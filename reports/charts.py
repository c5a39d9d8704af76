"""The report's charts: matplotlib figures rendered at build time to inline SVG, offline and byte-stable.

Each chart reads the `AuditReport` (profile and family summaries) and draws what is there; when the
data a chart needs was not produced (its family did not run, no label field), the chart says so
instead of drawing. Text from the dataset (labels, phrases) becomes escaped SVG `<text>` and is never
parsed as mathtext.
"""
from __future__ import annotations

import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from schemas.report import AuditReport, Histogram

INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
ACCENT, ACCENT_2, LIMIT = "#4f46e5", "#0d9488", "#dc2626"
TOP_BARS = 12
LABEL_CHARS = 32

STYLE = {
    "svg.fonttype": "none",  # text stays text: small, searchable, drawn with the browser's fonts (CJK included)
    "text.parse_math": False,  # a '$' in a class name is text, not TeX
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.major.size": 0,
    "ytick.major.size": 0,
    "figure.facecolor": "none",
    "axes.facecolor": "none",
}


@dataclass(frozen=True)
class Chart:
    """One chart card: an SVG when there is data, else the reason there is none."""

    key: str
    title: str
    caption: str
    svg: str | None = None
    missing: str | None = None


def report_charts(report: AuditReport) -> list[Chart]:
    """Every chart of the report, in page order."""
    return [_token_chart(report), _labels_chart(report), _languages_chart(report), _leading_chart(report),
            _clusters_chart(report), _correspondence_chart(report),
            _ifd_chart(report), _perplexity_chart(report)]


def summary_of(report: AuditReport, family: str) -> dict | None:
    """The family's summary, or None when the family did not run."""
    return next((f.summary for f in report.families if f.family == family), None)


def counts_in(summary: dict | None, *keys: str) -> list[tuple[str, float]] | None:
    """(name, count) pairs under the first of `keys` in a summary, largest first.

    Accepts the shapes a family may use: {name: n}, [[name, n], ...], [{"phrase"|"name"|...: x, "count"|"n"|...: n}, ...].
    """
    if not summary:
        return None
    value = next((summary[k] for k in keys if summary.get(k)), None)
    pairs: list[tuple[str, float]] = []
    if isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], (int, float)):
                pairs.append((str(item[0]), item[1]))
            elif isinstance(item, dict):
                name = next((item[k] for k in ("phrase", "name", "value", "label", "key", "size") if k in item), None)
                n = next((item[k] for k in ("count", "n", "records", "clusters", "share") if isinstance(item.get(k), (int, float))), None)
                if name is not None and n is not None:
                    pairs.append((str(name), n))
    return sorted(pairs, key=lambda p: (-p[1], p[0])) or None


def svg_of(fig: Figure, key: str, label: str) -> str:
    """The figure as an inline SVG element at its natural size (CSS shrinks it to fit, so every chart's text is the
    same size); ids salted per chart so several can share a page."""
    buf = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": f"datakit-{key}"}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph missing" for CJK: layout only, the browser draws the text
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight", pad_inches=0.05)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib's <metadata> is noise inline, and its <style> would apply to the whole page: the page's CSS has it
    text = re.sub(r"\s*<metadata>.*?</metadata>|\s*<style[^>]*>.*?</style>", "", text, flags=re.DOTALL)
    head_end = text.index(">")
    head = text[:head_end]
    aria = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    return f'{head} class="chart" role="img" aria-label="{aria}"{text[head_end:]}'.strip()


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state); callers build and save it inside `rc_context(STYLE)`."""
    return Figure(figsize=(width, height), layout="constrained")


def short_label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _token_chart(report: AuditReport) -> Chart:
    title = "Token lengths"
    hists = report.profile.histograms or {}
    limit = report.config.length.max_tokens
    counted = f" ({report.profile.tokenizer})" if report.profile.tokenizer else ""
    caption = f"Records per token count{counted}; the red line is the limit of {limit:,} tokens per record (--max-tokens)."
    shown = [(name, hists[name]) for name in ("prompt", "response", "total") if name in hists]
    if not shown:
        reason = ("no readable records to count." if summary_of(report, "length") is not None
                  else "not run: no rule that counts tokens ran (the length family).")
        return Chart("tokens", title, caption, missing=reason)
    with mpl.rc_context(STYLE):
        fig = new_figure(3.4 * len(shown), 2.3)
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, (name, hist), color in zip(axes, shown, (ACCENT, ACCENT_2, "#7c3aed")):
            _histogram(ax, hist, limit, color)
            ax.set_title(name)
        axes[0].set_ylabel("records")
        return Chart("tokens", title, caption, svg_of(fig, "tokens", "token length histograms"))


def _histogram(ax, hist: Histogram, limit: int, color: str) -> None:
    ax.stairs(hist.counts, hist.edges, fill=True, color=color, alpha=0.85, linewidth=0)
    ax.grid(axis="x", visible=False)
    top = hist.edges[-1]
    if limit <= top:
        ax.axvline(limit, color=LIMIT, linewidth=1.2, linestyle="--")
        ax.set_title(f"limit {limit:,}", loc="right", color=LIMIT, fontsize=8, fontweight="normal")
    else:
        ax.set_title(f"limit {limit:,}: all below", loc="right", color=LIMIT, fontsize=8, fontweight="normal")
    ax.set_xlabel("tokens" + (f" (+{hist.overflow:,} records ≥ {top:,} not shown)" if hist.overflow else ""))
    ax.set_xlim(0, top)
    ax.margins(y=0.05)
    _thousands(ax.xaxis, ax.yaxis)


def _thousands(*axes) -> None:
    for axis in axes:
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def bar_chart(key: str, title: str, caption: str, pairs: list[tuple[str, float]], label: str, color: str,
          total: float | None = None) -> Chart:
    """Horizontal bars, largest on top; beyond TOP_BARS the rest is one 'others' bar; shares when `total` is known."""
    shown = pairs[:TOP_BARS]
    rest = sum(v for _, v in pairs[TOP_BARS:])
    if rest:
        shown = shown + [(f"{len(pairs) - TOP_BARS} others", rest)]
    with mpl.rc_context(STYLE):
        fig = new_figure(5.0, 0.6 + 0.22 * len(shown))
        ax = fig.subplots()
        names = [short_label(n) for n, _ in shown][::-1]
        values = [v for _, v in shown][::-1]
        bars = ax.barh(range(len(values)), values, color=color, height=0.7)
        ax.set_yticks(range(len(values)), names)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(label)
        if max(values) >= 10:  # counts; shares (0..1) keep matplotlib's decimals
            _thousands(ax.xaxis)
        texts = [f"{v:,.0f}" + (f"  ({100 * v / total:.1f}%)" if total else "") if v >= 1 or v == 0 else f"{100 * v:.1f}%"
                 for v in values]
        ax.bar_label(bars, texts, padding=3, color=INK, fontsize=8)
        ax.margins(x=0.18)
        return Chart(key, title, caption, svg_of(fig, key, title))


def _labels_chart(report: AuditReport) -> Chart:
    title = "Class distribution"
    field = report.config.label_field
    caption = f"Records per value of the label field '{field}'." if field else "Records per class."
    pairs = counts_in({"labels": report.profile.labels}, "labels") or counts_in(
        summary_of(report, "balance"), "classes", "labels", "counts", "distribution")
    if not pairs:
        reason = "not run: no label field configured (--label-field)." if not field else "not run: no labels were found."
        return Chart("labels", title, caption, missing=reason)
    return bar_chart("labels", title, caption, pairs, "records", ACCENT, total=sum(v for _, v in pairs))


def _languages_chart(report: AuditReport) -> Chart:
    title = "Languages"
    caption = "Share of records per detected main language of the response."
    summary = summary_of(report, "language") or {}
    pairs = counts_in({"languages": report.profile.languages}, "languages") or counts_in(summary, "languages")
    if not pairs:
        reason = "no language was detected." if summary_of(report, "language") is not None else "not run: the language family did not run."
        return Chart("languages", title, caption, missing=reason)
    names = summary.get("names") if isinstance(summary.get("names"), dict) else {}
    pairs = [(f"{code} · {names[code]}" if code in names else code, n) for code, n in pairs]
    return bar_chart("languages", title, caption, pairs, "records", ACCENT_2, total=sum(v for _, v in pairs))


def _leading_chart(report: AuditReport) -> Chart:
    title = "Leading phrases"
    share = report.config.diversity.max_leading_share
    caption = (f"Most common opening words of prompts; one phrasing on more than {share:.0%} of prompts makes the model "
               "brittle to other phrasings.")
    summary = summary_of(report, "diversity")
    pairs = counts_in(summary, "leading_phrases", "top_leading_phrases", "leading", "openings", "top_openings")
    if not pairs:
        reason = "not run: the diversity family did not run." if summary is None else "no leading phrases were reported."
        return Chart("leading", title, caption, missing=reason)
    total = report.profile.valid_records if pairs[0][1] >= 1 else None
    return bar_chart("leading", title, caption, pairs, "prompts", "#7c3aed", total=total)


def _cluster_sizes(summary: dict | None) -> list[tuple[int, int]] | None:
    """(cluster size, clusters of that size), from {size: clusters}, a list of sizes, or a list of clusters."""
    if not summary:
        return None
    for key in ("size_distribution", "cluster_sizes", "clusters", "sizes", "cluster_size_counts"):
        value = summary.get(key)
        if isinstance(value, dict) and value:
            try:
                return sorted((int(k), int(v)) for k, v in value.items())
            except (TypeError, ValueError):
                continue
        if isinstance(value, list) and value:
            sizes = [len(v) if isinstance(v, (list, tuple)) else v.get("size") if isinstance(v, dict) else v for v in value]
            sizes = [s for s in sizes if isinstance(s, int) and not isinstance(s, bool)]
            if sizes:
                return sorted(Counter(sizes).items())
    return None


def _clusters_chart(report: AuditReport) -> Chart:
    title = "Duplicate clusters"
    caption = "Clusters per size (records in the cluster): exact duplicates after normalisation, and MinHash near-duplicates."
    series = [(name, _cluster_sizes(summary_of(report, family)), color)
              for name, family, color in (("exact", "duplicate", ACCENT), ("near", "near_duplicate", ACCENT_2))]
    series = [(n, s, c) for n, s, c in series if s]
    if not series:
        ran = [f for f in ("duplicate", "near_duplicate") if summary_of(report, f) is not None]
        reason = ("no duplicate clusters." if ran else "not run: the duplicate and near_duplicate families did not run.")
        return Chart("clusters", title, caption, missing=reason)
    with mpl.rc_context(STYLE):
        fig = new_figure(5.0, 2.3)
        ax = fig.subplots()
        sizes = sorted({size for _, s, _ in series for size, _ in s})
        position = {size: i for i, size in enumerate(sizes)}
        width = 0.8 / len(series)
        for i, (name, pairs, color) in enumerate(series):
            xs = [position[size] + (i - (len(series) - 1) / 2) * width for size, _ in pairs]
            bars = ax.bar(xs, [n for _, n in pairs], width=width, color=color, label=name)
            ax.bar_label(bars, [f"{n:,}" for _, n in pairs], padding=2, color=INK, fontsize=8)
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
        ax.set_xlabel("records in cluster")
        ax.set_ylabel("clusters")
        _thousands(ax.yaxis)
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.15)
        ax.legend(frameon=False, loc="upper right")
        return Chart("clusters", title, caption, svg_of(fig, "clusters", title))


def _correspondence_chart(report: AuditReport) -> Chart:
    title = "Answers vs their own prompt"
    caption = ("Answers by the share of their own prompt's weighted words they contain (correspondence); aligned data "
               "spreads to the right, shifted or shuffled columns pile up at 0.")
    summary = summary_of(report, "correspondence")
    hist = (summary or {}).get("own_relevance_histogram")
    if not hist:
        reason = "not run: the correspondence family did not run." if summary is None else "too few answers to compare."
        return Chart("correspondence", title, caption, missing=reason)
    return bar_chart("correspondence", title, caption, list(hist.items()), "answers", ACCENT_2, total=sum(hist.values()))


def _ifd_chart(report: AuditReport) -> Chart:
    title = "Instruction-following difficulty (IFD)"
    caption = ("Answers by IFD = loss(answer | instruction) / loss(answer) from --score-model; at the red line and above "
               "the instruction does not help predict the answer (correspondence.high_ifd).")
    values = [v for v in report.record_scores.ifd if v is not None] if report.record_scores else []
    if not values:
        return Chart("ifd", title, caption, missing=_unscored(report))
    limit = report.config.correspondence.max_ifd
    edges = np.linspace(0, max(1.5, limit + 0.25, max(values)) + 1e-9, 31)
    return _score_histogram("ifd", title, caption, values, edges, "IFD", ACCENT, limit)


def _perplexity_chart(report: AuditReport) -> Chart:
    title = "Answer perplexity"
    caption = ("Answers by the perplexity of their tokens given the instruction (--score-model), on a log scale: very low "
               "is boilerplate the model already knows, very high is noise, another language or a wrong answer.")
    values = [v for v in report.record_scores.perplexity if v is not None] if report.record_scores else []
    if not values:
        return Chart("perplexity", title, caption, missing=_unscored(report))
    edges = np.geomspace(max(min(values), 1.0) * 0.999, max(max(values), 2.0) * 1.001, 31)
    return _score_histogram("perplexity", title, caption, values, edges, "perplexity (log scale)", ACCENT_2, None, log=True)


def _unscored(report: AuditReport) -> str:
    if report.record_scores is None:
        return "not run: audit with --score-model DIR to score answers with a local model."
    return "no answer could be scored (the template renders none of them)."


def _score_histogram(key: str, title: str, caption: str, values: list[float], edges: np.ndarray, label: str, color: str,
                     limit: float | None, log: bool = False) -> Chart:
    """Records per bin of a per-record score, with the rule's limit as a red line where there is one."""
    counts, _ = np.histogram(values, edges)
    with mpl.rc_context(STYLE):
        fig = new_figure(5.0, 2.3)
        ax = fig.subplots()
        ax.stairs(counts, edges, fill=True, color=color, alpha=0.85, linewidth=0)
        if log:
            ax.set_xscale("log")
        if limit is not None:
            ax.axvline(limit, color=LIMIT, linewidth=1.2, linestyle="--")
            above = sum(v >= limit for v in values)
            ax.set_title(f"{above:,} at or above {limit:g}", loc="right", color=LIMIT, fontsize=8, fontweight="normal")
        ax.grid(axis="x", visible=False)
        ax.set_xlabel(label)
        ax.set_ylabel("answers")
        ax.margins(y=0.05)
        _thousands(ax.yaxis)
        return Chart(key, title, caption, svg_of(fig, key, title))
