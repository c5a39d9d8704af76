"""volume.*: is there enough data for the task, overall and per class? Dataset-level advice, never a record's fault."""
from __future__ import annotations

from typing import ClassVar

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info

I = Severity.info

# Recommended minimum training records per task type: (minimum, upper end of the recommended range or None for "+").
TASK_MINIMUMS: dict[str, tuple[int, int | None]] = {
    "style": (50, 100),
    "classification": (100, 200),
    "knowledge": (500, 1000),
    "reasoning": (1000, None),
}
# Without a task type: below the smallest minimum there is too little data for any task type.
GENERAL_MINIMUM = min(low for low, _ in TASK_MINIMUMS.values())


def _range(task: str) -> str:
    low, high = TASK_MINIMUMS[task]
    return f"{low}-{high}" if high else f"{low}+"


TABLE = ", ".join(f"{task} {_range(task)}" for task in TASK_MINIMUMS)


class VolumeRules(Rule):
    family: ClassVar[str] = "volume"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("volume.too_few", I, f"Too few records for the task type to be learnt (minimums: {TABLE}).",
                 f"task_type = none (general minimum {GENERAL_MINIMUM})"),
        RuleCode("volume.class_too_small", I, "A class with fewer than 10-100 examples is barely learnt; the model ignores it.",
                 "balance.min_per_class = 10"),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Trainable records per label value (null: no label) in the batch."""
        return _trainable(batch).group_by("label").len().with_columns(pl.col("len").cast(pl.Int64))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        counts = (state.group_by("label").agg(pl.col("len").sum()).collect(engine="streaming") if state is not None
                  else pl.DataFrame(schema={"label": pl.String, "len": pl.Int64}))
        return self._findings(counts, ctx), self._summary(counts, ctx)

    def _findings(self, counts: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        cfg = ctx.config
        task = cfg.volume.task_type
        n = int(counts["len"].sum())
        found: list[dict] = []
        base = {"source": ctx.path, "line": None, "record_id": None}
        minimum = TASK_MINIMUMS[task][0] if task else GENERAL_MINIMUM
        if n < minimum:
            info = code_info(self, "volume.too_few")
            if task:
                advice = (f"a {task} fine-tune needs at least {minimum} ({_range(task)} recommended). Add records, or "
                          "choose a task type that fits in volume.task_type")
            else:
                advice = (f"no task type needs fewer than {minimum} (recommended: {TABLE}). Add records; set volume.task_type "
                          "in --config for the check that fits your task")
            found.append(base | {"rule": info.code, "severity": info.severity.value, "message":
                                 f"{n} trainable record(s): {advice}.", "detail": f"{n} < {minimum}"})
        if cfg.label_field:
            info = code_info(self, "volume.class_too_small")
            least = cfg.balance.min_per_class
            for label, count in _class_counts(counts).filter(pl.col("len") < least).iter_rows():
                found.append(base | {"rule": info.code, "severity": info.severity.value, "field": cfg.label_field,
                                     "excerpt": label, "detail": f"{count} < {least}", "message":
                                     f"class '{label}' of {cfg.label_field} has {count} record(s), under the per-class minimum "
                                     f"of {least} (10-100 recommended): the model will barely learn it. Add examples, or "
                                     "merge it into a related class."})
        return findings_frame(found)

    def _summary(self, counts: pl.DataFrame, ctx: RuleContext) -> dict:
        cfg = ctx.config
        task = cfg.volume.task_type
        out = {
            "trainable_records": int(counts["len"].sum()),
            "task_type": task,
            "minimum": TASK_MINIMUMS[task][0] if task else GENERAL_MINIMUM,
            "recommended": _range(task) if task else TABLE,
            "table": {t: _range(t) for t in TASK_MINIMUMS},
        }
        if cfg.label_field:
            counts = _class_counts(counts)
            out |= {"min_per_class": cfg.balance.min_per_class, "classes": dict(counts.iter_rows()),
                    "classes_below_minimum": counts.filter(pl.col("len") < cfg.balance.min_per_class)["label"].to_list()}
        return out


def _trainable(batch: Dataset) -> pl.DataFrame:
    """Readable records that carry an answer (question-only `prompts` records teach nothing)."""
    return batch.valid.filter(pl.col("format") != "prompts")


def _class_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """Records per label value, most frequent first; records without a label are left to balance.*."""
    return counts.filter(pl.col("label").is_not_null()).sort(["len", "label"], descending=[True, False])
