"""Training data in: records read through datakit, the automatic eval hold-out, and per-class loss weights."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from datakit.normalise import load

HOLDOUT_SHARE = 0.1
HOLDOUT_MAX = 1000
HOLDOUT_MIN_RECORDS = 20


def read_dataset(path: str | Path, label_field: str | None = None) -> pl.DataFrame:
    """The valid records of any file `datakit audit` reads, with canonical `messages` and the `label` column."""
    return load(path, label_field).valid


def holdout(frame: pl.DataFrame, seed: int, groups: np.ndarray | None = None) -> tuple[pl.DataFrame, pl.DataFrame | None, str]:
    """Split off 10% (at most 1000 records) for evaluation without leakage: `groups` (per record id, from the audit
    gate: `AuditRun.leak_groups`) says which records share a prompt, a whole record or a near-duplicate cluster, and
    such a group goes to one side whole (`datakit.split.assign_groups`, seeded: the same split every run). With labels,
    every class keeps its share of the eval records, so each class gets an eval loss.

    Fewer than 20 records: no eval split (each record is needed for training; early stopping is off).
    """
    from datakit.split import assign_groups  # datakit.split imports the audit engine: imported when called

    n = frame.height
    if n < HOLDOUT_MIN_RECORDS:
        return frame, None, f"{n} records (<{HOLDOUT_MIN_RECORDS}): no eval split; early stopping and the overfitting check are off"
    share = min(HOLDOUT_SHARE, HOLDOUT_MAX / n)
    group_of = groups[frame["id"].to_numpy()] if groups is not None else np.arange(n)
    stratified = frame["label"].null_count() < n
    assigned = assign_groups(frame, np.ones(n, dtype=bool), group_of, stratified, share, 0.0, seed)
    flags = pl.Series(assigned == 1)
    held = int(flags.sum())
    sizes = Counter(group_of.tolist())
    kept = sum(1 for size in sizes.values() if size > 1)
    if held == 0:
        return frame, None, (f"no eval split: the {n} records fall into groups (shared prompts, copies, near-duplicates) "
                             f"each larger than the {share:.0%} to hold out, and no group may straddle train and eval; "
                             "early stopping and the overfitting check are off. Pass --eval FILE to evaluate")
    why = (f"{held} of {n} records held out for evaluation (seed {seed}{', the same share of each label' if stratified else ''}); "
           f"{kept} group(s) of duplicates, shared prompts or near-duplicates kept whole on one side, so none straddles "
           "train and eval")
    return frame.filter(~flags), frame.filter(flags), why


class WeightsError(ValueError):
    """The class-weights file cannot be used; the message says what is wrong in it."""


def read_class_weights(path: str | Path) -> tuple[dict[str, float], str | None]:
    """Label -> loss weight from a JSON file: a flat mapping, or `{"weights": {...}}` (optionally with `"by"`,
    the label field, as `datakit balance --weights` writes). Returns the weights and the field when named."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"--class-weights {p}: no such file.") from None
    except json.JSONDecodeError as e:
        raise WeightsError(f"--class-weights {p}: not valid JSON ({e}).") from None
    field = None
    if isinstance(raw, dict) and isinstance(raw.get("weights"), dict):
        field = raw.get("by") or raw.get("label_field")
        raw = raw["weights"]
    if not isinstance(raw, dict) or not raw:
        raise WeightsError(f"--class-weights {p}: expected a JSON object mapping each label to a weight, e.g. "
                           '{"positive": 1.0, "negative": 3.2}.')
    weights = {}
    for label, w in raw.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise WeightsError(f"--class-weights {p}: weight of label '{label}' is {w!r}; weights must be positive numbers.")
        weights[str(label)] = float(w)
    return weights, field


def normalised_weights(weights: dict[str, float], labels: list[str | None], tokens: list[int]) -> tuple[dict[str, float], list[str]]:
    """Weights rescaled so that their mean over the training tokens is 1: the loss keeps its usual scale, so
    the planned learning rate still applies. Labels the file does not name keep weight 1 and are reported."""
    missing = sorted({lab or "(none)" for lab in labels if (lab or "") not in weights})
    raw = [weights.get(lab or "", 1.0) for lab in labels]
    total = sum(tokens)
    scale = total / sum(w * t for w, t in zip(raw, tokens)) if total else 1.0
    out = {k: v * scale for k, v in weights.items()}
    for lab in set(labels):
        out.setdefault(lab or "", scale)  # unnamed labels and records without one ("") keep weight 1 before scaling
    return out, missing
