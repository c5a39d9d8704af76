"""Per-record scores from a local causal LM (`--score-model DIR`): the answer's perplexity given its instruction and its
IFD (trainkit.score). A record's scores depend on it alone, so they are a measurement like the others; each batch
worker loads the model once."""
from __future__ import annotations

import polars as pl

from schemas.config import AuditConfig
from schemas.dataset import Dataset
from schemas.report import RecordScores

SCORED_BATCH_RECORDS = 256  # records per audit batch when a model scores them: the audit's progress bar moves per batch


def add_model_scores(ds: Dataset, config: AuditConfig) -> None:
    model = config.correspondence.score_model
    if model is None:
        return
    from trainkit.score import scorer

    scores = scorer(model).score(ds.frame)
    ds.frame = ds.frame.join(scores, on="id", how="left", maintain_order="left")


def record_scores(records: pl.LazyFrame, config: AuditConfig) -> RecordScores | None:
    """The report's per-record columns: every valid record's scores in input order (None when no model scored)."""
    if config.correspondence.score_model is None or "ifd" not in records.collect_schema().names():
        return None
    rows = records.filter(pl.col("valid")).select("source", "line", pl.col("perplexity").round(4), pl.col("ifd").round(6))
    columns = rows.collect(engine="streaming").to_dict(as_series=False)
    return RecordScores(model=str(config.correspondence.score_model), **columns)
