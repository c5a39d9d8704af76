"""`trainkit generate` on every case of the hostile-input corpus (tests/adversarial.py): a clear answer naming the file,
the readable records answered, never a traceback, never a hang. All cases run in one driver process, as
tests/test_adversarial.py runs `trainkit train`."""
from __future__ import annotations

import json

import polars as pl
import pytest

from datakit.normalise import load
from tests.test_adversarial import CASE_NAMES, _drive
from tests.test_adversarial import corpus as corpus  # noqa: PLC0414  the session's hostile files, built once
from tests.trainkit_helpers import identity_with_system, train_tiny_run


@pytest.fixture(scope="module")
def generated(corpus, tiny_model, tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("generate-hostile")
    run_dir = train_tiny_run(tiny_model, root, identity_with_system(8))
    jobs = [{"tool": "trainkit", "key": c.name, "env": c.env,
             "args": ["generate", str(run_dir), "--data", str(c.path), "-o", str(root / f"{c.name}.jsonl"),
                      "--max-new-tokens", "2", "--batch-size", "16"]}
            for c in corpus.values() if not c.unreadable]
    results = _drive(jobs, root, timeout=900)
    return {name: r | {"preds": root / f"{name}.jsonl"} for name, r in results.items()}


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n != "no_permission"])
def test_trainkit_generate_gives_hostile_data_a_clear_answer(name, corpus, generated):
    case, result = corpus[name], generated[name]
    output = " ".join(result["output"].split())
    assert result["rc"] != "timeout", f"{name}: `trainkit generate` did not finish (a hang?)"
    assert "Traceback" not in result["output"] + result["driver_stderr"] and "internal error" not in output, output
    if case.unusable:
        assert result["rc"] == 2 and str(case.path) in output and not result["preds"].exists(), output
        return
    assert result["rc"] == 0, output
    preds = [json.loads(line) for line in result["preds"].read_text(encoding="utf-8").splitlines()]
    frame = load(case.path).frame
    answered = [p["line"] for p in preds]
    assert answered == sorted(set(answered))  # in file order, once each
    assert not set(answered) & set(frame.filter(~pl.col("valid"))["line"])  # unreadable records are not answered...
    for line in set(frame["line"]) - set(answered):  # ...and each record left out is named by file:line
        assert f"{case.path}:{line}:" in output, (line, output)
