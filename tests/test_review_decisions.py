"""The review decisions file (append-only, synced, latest decision wins, undo, a torn last line survived) and
`datakit fix --decisions`: decisions first, then the automatic repairs; a decision on a record that changed is
reported and skipped; clean + rejected == input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.io.read import InputError, read_raw
from datakit.review.decisions import Decision, DecisionLog, load_decisions, record_checksum
from tests.conftest import run_cli
from tests.test_fix import adversarial_lines, rejected_rows


def _log(path: Path) -> DecisionLog:
    return DecisionLog(load_decisions(path))


def test_latest_decision_wins_and_undo_takes_back_the_latest(tmp_path):
    path = tmp_path / "review.jsonl"
    log = _log(path)
    log.append(Decision(3, "sha256:aa", "keep"))
    log.append(Decision(5, "sha256:bb", "drop", note="spam"))
    log.append(Decision(3, "sha256:aa", "drop"))
    log.undo([5])
    log.close()
    again = load_decisions(path)
    assert {line: d.action for line, d in again.latest().items()} == {3: "drop"}
    assert list(again.order) == [3] and again.warnings == []
    assert again.undo(3).action == "keep"  # one undo more goes back to the decision before
    assert [json.loads(x)["action"] for x in path.read_text().splitlines()] == ["keep", "drop", "drop", "undo"]


def test_decisions_made_together_are_undone_together(tmp_path):
    log = _log(tmp_path / "review.jsonl")
    log.append(Decision(1, "sha256:a", "keep"))
    log.append_many([Decision(line, "sha256:a", "drop", batch="b2") for line in (4, 5, 6)])
    assert sorted(log.decisions.last()) == [4, 5, 6]
    log.undo(log.decisions.last())
    assert log.decisions.last() == [1]
    log.close()
    again = load_decisions(tmp_path / "review.jsonl")
    assert list(again.latest()) == [1] and again.last() == [1]


def test_a_torn_last_line_is_ignored_with_a_warning_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "review.jsonl"
    log = _log(path)
    log.append(Decision(1, "sha256:aa", "keep"))
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"line": 2, "checksum": "sha256:b')  # the process died mid-write
    found = load_decisions(path)
    assert list(found.latest()) == [1]
    assert found.warnings and f"{path}:2: the last line is cut short" in found.warnings[0]
    log = DecisionLog(found)
    log.append(Decision(4, "sha256:cc", "drop"))
    log.close()
    assert [json.loads(x)["line"] for x in path.read_text().splitlines()] == [1, 4]
    assert load_decisions(path).warnings == []


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "review.jsonl"
    path.write_text('{"line": 2, "checksum": "sha256:b", "action": "keep"}')
    log = DecisionLog(load_decisions(path))
    log.append(Decision(3, "sha256:c", "drop"))
    log.close()
    assert sorted(load_decisions(path).latest()) == [2, 3]


@pytest.mark.parametrize("bad, says", [
    ("{not json", "not a JSON line"),
    ('{"line": 1, "checksum": "sha256:a", "action": "burn"}', "unknown action 'burn'"),
    ('{"line": "7", "checksum": "sha256:a", "action": "keep"}', "'line' must be"),
    ('{"line": 7, "action": "keep"}', "'checksum' must be"),
    ('{"line": 7, "checksum": "sha256:a", "action": "edit", "record": "text"}', "edited record as a JSON object"),
    ("[1, 2]", "expected a JSON object"),
])
def test_a_damaged_line_before_the_last_names_the_file_and_line(tmp_path, bad, says):
    path = tmp_path / "review.jsonl"
    path.write_text('{"line": 1, "checksum": "sha256:a", "action": "keep"}\n' + bad + "\n"
                    '{"line": 2, "checksum": "sha256:a", "action": "keep"}\n')
    with pytest.raises(InputError, match=f"^{path}:2: .*{says}"):
        load_decisions(path)


@pytest.fixture
def reviewed(tmp_path):
    """fix's adversarial file (1 GOOD, 2 html, 3 zero-width, 4 broken, 5 e-mail, 6 array, 7 empty answer, 8 GOOD again,
    9 Chinese answer) and a decisions file written through DecisionLog as `datakit review` writes it."""
    data = tmp_path / "messy.jsonl"
    data.write_text("\n".join(adversarial_lines()) + "\n", encoding="utf-8")
    raw = {r.line: r for r in read_raw(data).records}

    def on(line: int, action: str, **kw) -> Decision:
        return Decision(line, record_checksum(raw[line].text), action, **kw)

    log = _log(tmp_path / "review.jsonl")
    log.append(on(2, "keep", rule="hygiene.html"))
    log.append(on(3, "accept", rule="hygiene.control_chars"))
    log.append(on(5, "edit", rule="pii.email", record=raw[5].obj | {"output": "Write to the billing team about invoices."}))
    log.append(on(7, "edit", rule="empty.output", record=raw[7].obj | {"output": "I will stay silent."}))
    log.append(on(9, "drop", note="not a translation pair"))
    log.append(on(9, "keep"))
    log.undo([9])  # back to the drop
    log.append(on(8, "keep", rule="duplicate.exact"))
    log.append(on(4, "accept", rule="format.invalid_json"))  # what fix does to it anyway: rejected
    log.append(on(6, "keep", rule="format.not_an_object"))  # cannot be kept: reported
    log.append(Decision(1, record_checksum("something else"), "drop"))  # made on another file: must not apply
    log.append(Decision(42, record_checksum("x"), "drop"))
    log.close()
    return data, raw, tmp_path / "review.jsonl"


def test_fix_applies_decisions_first_then_repairs_the_rest_losing_nothing(reviewed, tmp_path):
    data, raw, decisions = reviewed
    proc = run_cli("fix", data, "-o", tmp_path / "clean.jsonl", "--decisions", decisions, "-q")
    assert proc.returncode == 0, proc.stderr
    clean = [json.loads(x) for x in (tmp_path / "clean.jsonl").read_text().splitlines()]
    rejected = {r["line"]: r for r in rejected_rows(tmp_path / "clean.rejected.jsonl")}
    assert len(clean) + len(rejected) == len(raw) == 9
    assert sorted(rejected) == [4, 6, 9]
    assert rejected[9]["reasons"] == [{"rule": "review.drop", "severity": "error", "fix": "drop",
                                       "message": "dropped by the reviewer: not a translation pair"}]
    assert rejected[9]["raw"] == raw[9].text
    kept = [raw[1].obj, raw[2].obj, {**raw[3].obj, "instruction": "Sum the numbers one to ten for me."},
            raw[5].obj | {"output": "Write to the billing team about invoices."},
            raw[7].obj | {"output": "I will stay silent."}, raw[8].obj]
    assert clean == kept  # kept html untouched, accepted repair applied, edits in place, the kept copy kept
    out = " ".join(proc.stdout.split())
    assert f"{decisions}:11: decision 'drop' on line 1 skipped: the record at that line is not the one reviewed" in out
    assert f"{decisions}:12: decision 'drop' on line 42 skipped: the input has no record at that line (9 records)" in out
    assert f"{decisions}:10: decision 'keep' on line 6 skipped: the record is no readable training record " \
           "(format.not_an_object)" in out
    assert "on line 4 skipped" not in out
    assert "review.keep" in out and "review.edit" in out


def test_without_decisions_the_same_file_is_fixed_automatically(reviewed, tmp_path):
    data, _, _ = reviewed
    proc = run_cli("fix", data, "-o", tmp_path / "auto.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["line"] for r in rejected_rows(tmp_path / "auto.rejected.jsonl")) == [4, 6, 7, 8]


def test_a_damaged_decisions_file_stops_fix_with_one_line(reviewed, tmp_path):
    data, _, decisions = reviewed
    decisions.write_text("oops\n" + decisions.read_text())
    proc = run_cli("fix", data, "-o", tmp_path / "clean.jsonl", "--decisions", decisions, "-q")
    assert proc.returncode == 2 and not (tmp_path / "clean.jsonl").exists()
    assert proc.stderr.strip().startswith(f"error: {decisions}:1: not a JSON line") and "Traceback" not in proc.stderr
    proc = run_cli("fix", data, "-o", tmp_path / "clean.jsonl", "--decisions", tmp_path / "typo.jsonl", "-q")
    assert proc.returncode == 2 and f"{tmp_path / 'typo.jsonl'}: no such decisions file" in proc.stderr
