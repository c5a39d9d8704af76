"""Shared test helpers: paths to the bundled real samples and a runner for the real CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_cli(*args: str, cwd: Path | None = None, tool: str = "datakit", stdin: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed console script as a user would, in a subprocess (`stdin`: text typed into it; `timeout`: the
    bound on a hang, as a test failure)."""
    exe = Path(sys.executable).parent / tool
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(exe), *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, input=stdin)


def audit_json(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `datakit audit ... --json` and return the process and the parsed report."""
    out = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    proc = run_cli("audit", *args, "--json", str(out))
    report = json.loads(out.read_text()) if out.exists() else {}
    return proc, report


def lines_for(report: dict, rule: str) -> list[int]:
    return sorted(f["line"] for f in report["findings"] if f["rule"] == rule)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-init tiny Qwen2 with a locally trained tokenizer and chat template (tests/trainkit_helpers.py)."""
    from tests.trainkit_helpers import build_model

    return build_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_model_no_chat(tmp_path_factory) -> Path:
    """The same tiny model whose tokenizer has no chat template (Alpaca templates apply)."""
    from tests.trainkit_helpers import build_model

    return build_model(tmp_path_factory.mktemp("tiny-qwen2-nochat"), chat_template=False)


def run_rule(rule, ds, config=None, against=()):
    """(findings with messages, summary) of one rule family on records in memory, through the audit engine."""
    from datakit.recheck import audit_records
    from schemas.config import AuditConfig

    found, summaries = audit_records(ds, config or AuditConfig(), list(against), [rule])
    return found, summaries[rule.family]


@pytest.fixture(scope="session")
def chat_run(tiny_model, tmp_path_factory) -> Path:
    """One real tiny `trainkit train` run on chat records with a system prompt, shared by the generate and chat tests
    (none of them writes into it)."""
    from tests.trainkit_helpers import identity_with_system, train_tiny_run

    return train_tiny_run(tiny_model, tmp_path_factory.mktemp("chat-run"), identity_with_system(24))
