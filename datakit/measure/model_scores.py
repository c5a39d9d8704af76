"""Per-record scores from a local causal LM (`--score-model DIR`): the answer's perplexity given its instruction and its
IFD (trainkit.score). A record's scores depend on it alone, so they are a measurement like the others; each batch
worker loads the model once."""
from __future__ import annotations

from schemas.config import AuditConfig
from schemas.dataset import Dataset


def add_model_scores(ds: Dataset, config: AuditConfig) -> None:
    model = config.correspondence.score_model
    if model is None:
        return
    from trainkit.score import scorer

    scores = scorer(model).score(ds.frame)
    ds.frame = ds.frame.join(scores, on="id", how="left", maintain_order="left")
