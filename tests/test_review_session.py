"""The review session behind the page: records read back by line exactly as the reader reads them, findings paged
and filtered, copies and conflicting answers grouped, repairs proposed with their diff, edits re-audited, decisions,
bulk decisions (after their count is confirmed) and undo written to the decisions file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.config import build_config
from datakit.io.read import read_raw
from datakit.review.decisions import load_decisions, record_checksum
from datakit.review.session import PAGE_MAX, Filter, ReviewError, Session
from datakit.review.sources import audited
from datakit.review.store import RecordStore
from tests.conftest import EXAMPLES
from tests.test_fix import adversarial_lines
from tests.test_report_html import PAYLOADS

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = "format,hygiene,pii,duplicate,near_duplicate,accuracy"
# The planted lines of review_sample(), after the 200 real records.
NEAR_COPY, CONFLICT, HTML, HTML_LIST, EMAIL, HEDGED, XSS = 201, 202, 203, 204, 205, 206, 207


def review_sample(path: Path) -> Path:
    """The bundled Alpaca sample (200 real records) with defects planted after it, one kind per line (see the
    constants above), and script-injection payloads as records."""
    real = json.loads((EXAMPLES / "alpaca_en_sample.json").read_text(encoding="utf-8"))
    records = [r | {"category": "real"} for r in real]
    records.append(real[0] | {"output": real[0]["output"].replace("easy and delicious", "quick and tasty"), "category": "copy"})
    records.append(real[3] | {"output": real[5]["output"], "category": "copy"})
    records.append({"instruction": "Say hi<br>", "input": "", "output": "Hi &amp; welcome<br/>", "category": "planted"})
    records.append({"instruction": "Format this list", "input": "", "output": "One<br>Two<br>Three", "category": "planted"})
    records.append({"instruction": "Who handles refunds?", "input": "", "output": "Write to jane.roe@fastmail.fm about refunds.",
                    "category": "planted"})
    records.append({"instruction": "When was the Eiffel Tower built?", "input": "", "output": "In 1889, but I could be wrong.",
                    "category": "planted"})
    records += [{"instruction": f"Repeat: {p}", "input": "", "output": p, "category": p} for p in PAYLOADS]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["examples/belle_sample.jsonl", "tests/data/adversarial.jsonl",
                                  "tests/data/adversarial_array.json", "examples/alpaca_zh_sample.json",
                                  "examples/messages_sample.jsonl"])
def test_the_store_reads_every_record_back_as_the_reader_does(name, tmp_path):
    raw = read_raw(ROOT / name).records
    store = RecordStore(ROOT / name, tmp_path)
    for rec in raw:
        back = store.get(rec.line)
        assert (back.line, back.text, back.obj, back.error) == (rec.line, rec.text, rec.obj, rec.error)
    lines = {r.line for r in raw}
    assert list(store.texts(sorted(lines))) == [(r.line, r.text) for r in sorted(raw, key=lambda r: r.line)]
    assert all(store.get(n) is None for n in (0, -3, max(lines) + 1, max(lines) + 500) if n not in lines)


def test_the_store_finds_lines_without_a_trailing_newline_and_with_crlf(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"instruction": "a", "output": "b"}\r\n\r\n{"instruction": "c", "output": "d"}')
    store = RecordStore(path, tmp_path)
    assert [(r.line, r.text, r.obj) for r in read_raw(path).records] == [(n, store.get(n).text, store.get(n).obj) for n in (1, 3)]
    assert store.get(2) is None


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("review")
    data = review_sample(folder / "sample.jsonl")
    found = audited(data, build_config(None, only=FAMILIES.split(","), label_field="category"), progress=False)
    opened = Session(found.source, found.frame, found.config, RecordStore(data, folder), folder / "review.jsonl",
                     found.labels, found.records)
    yield opened
    opened.close()


def _lines(page: dict) -> list[int]:
    return [item["line"] for item in page["items"]]


def test_findings_are_paged_by_rule_then_line_and_filtered(session):
    every = session.items(Filter(), 0, PAGE_MAX)
    assert every["total"] == session.index.select("rule", "line").n_unique() == len(every["items"])  # one per record and rule
    pages = [session.items(Filter(), offset, 4)["items"] for offset in range(0, every["total"], 4)]
    assert [item for page in pages for item in page] == every["items"] and all(len(p) <= 4 for p in pages)
    rules = [item["rule"] for item in every["items"]]
    assert rules == sorted(rules, key=[r["rule"] for r in session.summary()["rules"]].index)
    html = session.items(Filter(rule="hygiene.html"))
    assert {HTML, HTML_LIST, XSS} <= set(_lines(html)) and _lines(html) == sorted(_lines(html))
    assert {item["fix"] for item in html["items"]} == {"repair"}
    assert _lines(session.items(Filter(q="JANE.ROE@fastmail"))) == []  # messages name the kind, not the address
    assert EMAIL in _lines(session.items(Filter(q="email address")))
    assert set(_lines(session.items(Filter(label="planted")))) >= {HTML, EMAIL, HEDGED}
    assert session.items(Filter(severity="error", rule="hygiene.html"))["total"] == 0
    assert session.items(Filter(rule="hygiene.html"), offset=2, limit=1)["items"][0]["line"] == _lines(html)[2]
    with pytest.raises(ReviewError, match="status 'maybe'"):
        Filter.of({"status": "maybe"})


def test_copies_and_conflicting_answers_come_as_groups_with_word_diffs(session):
    near = session.record(NEAR_COPY)
    group = next(g for g in near["groups"] if g["rule"] == "near_duplicate.cluster")
    assert [m["line"] for m in group["members"]] == [1, NEAR_COPY] and group["anchor"] == 1
    output = next(f for f in group["members"][1]["fields"] if f["field"] == "output")
    assert ["-", "easy"] in output["diff"] and ["+", "quick"] in output["diff"]
    conflict = session.record(CONFLICT)
    pair = next(g for g in conflict["groups"] if g["rule"] == "duplicate.conflicting_output")
    assert sorted(m["line"] for m in pair["members"]) == [4, CONFLICT]
    assert session.record(4)["groups"][0]["anchor"] == 4  # the record pointed at shows the same group


def test_a_repairable_finding_comes_with_the_repair_fix_would_make(session):
    rec = session.record(HTML)
    assert rec["format"] == "alpaca" and [f["field"] for f in rec["fields"]] == ["instruction", "input", "output"]
    assert rec["proposal"]["rules"] == ["hygiene.html"]
    change = {c["field"]: c["diff"] for c in rec["proposal"]["changes"]}
    assert set(change) == {"instruction", "output"}
    before = "".join(text for op, text in change["output"] if op != "+")
    after = "".join(text for op, text in change["output"] if op != "-")
    assert (before, after) == ("Hi &amp; welcome<br/>", "Hi & welcome\n") and ["-", "<br/>"] in change["output"]


def test_an_edit_is_audited_again_before_it_is_saved(session):
    rec = session.record(HEDGED)
    assert "accuracy.hedged" in {f["rule"] for f in rec["findings"]}
    texts = [f["text"] for f in rec["fields"]]
    assert "accuracy.hedged" in {f["rule"] for f in session.recheck(HEDGED, texts)["findings"]}
    texts[-1] = "It was built from 1887 to 1889."
    assert session.recheck(HEDGED, texts)["findings"] == []
    with pytest.raises(ReviewError, match="the record has 3 texts, the edit gives 1"):
        session.recheck(HEDGED, ["only one"])


def test_decisions_bulk_and_undo_reach_the_file(session):
    path = session.decisions.path
    raw = {r.line: r for r in read_raw(session.store.path).records}
    out = session.decide([{"line": EMAIL, "action": "accept", "rule": "pii.email"}])
    assert out["decisions"][0]["action"] == "accept" and out["progress"]["decided"] == 1
    texts = [f["text"] for f in session.record(HEDGED)["fields"]]
    session.decide([{"line": HEDGED, "action": "edit", "texts": texts[:-1] + ["Built 1887-1889."], "note": "sourced"}])
    assert session.record(HEDGED)["decision"]["fields"][-1]["text"] == "Built 1887-1889."
    preview = session.bulk(Filter(rule="hygiene.html"), "accept", None)
    assert preview == {"count": len(set(_lines(session.items(Filter(rule="hygiene.html"))))), "applied": False}
    html = {HTML, HTML_LIST, XSS, XSS + 1, XSS + 2, XSS + 3}
    assert session.bulk(Filter(rule="hygiene.html"), "accept", preview["count"])["applied"]
    assert session.items(Filter(status="open", rule="hygiene.html"))["total"] == 0
    assert session.undo()["lines"] == sorted(html)  # the bulk action is undone as a whole
    assert set(_lines(session.items(Filter(status="open", rule="hygiene.html")))) == html
    assert session.bulk(Filter(rule="hygiene.html"), "accept", preview["count"])["applied"]
    saved = load_decisions(path).latest()
    assert saved[EMAIL].checksum == record_checksum(raw[EMAIL].text)
    assert saved[HEDGED].record["output"] == "Built 1887-1889." and saved[HEDGED].note == "sourced"
    assert {line for line, d in saved.items() if d.action == "accept"} == html | {EMAIL}
    assert session.undo()["lines"] == sorted(html) and session.undo()["lines"] == [HEDGED]


def test_keeping_one_record_of_a_group_drops_every_other_member_as_one_decision(session):
    out = session.pick("near_duplicate.cluster", 1, [1])
    assert [(d["line"], d["action"]) for d in out["decisions"]] == [(1, "keep"), (NEAR_COPY, "drop")]
    assert out["decisions"][1]["note"] == "near-duplicate cluster: line 1 kept by the reviewer"
    assert session.undo()["lines"] == [1, NEAR_COPY]
    with pytest.raises(ReviewError, match="not in the group of line 1"):
        session.pick("near_duplicate.cluster", 1, [HTML])
    with pytest.raises(ReviewError, match="no group of duplicate.exact around line 1"):
        session.pick("duplicate.exact", 1, [1])


@pytest.mark.parametrize("row, says", [
    ({"line": 99999, "action": "keep"}, "line 99999 has no finding to review"),
    ({"line": HTML, "action": "burn"}, "action 'burn'"),
    ({"line": "7", "action": "keep"}, "needs the record's line"),
    ({"line": HTML, "action": "edit", "texts": "new"}, "list of strings"),
    ({"line": HTML, "action": "keep", "note": "x" * 3000}, "at most 2000"),
    ({"line": HTML, "action": "keep", "rule": "made.up"}, "unknown rule"),
])
def test_bad_decisions_are_refused_with_a_reason(session, row, says):
    before = session.decisions.lines
    with pytest.raises(ReviewError, match=says):
        session.decide([row])
    assert session.decisions.lines == before


def test_a_record_that_is_no_training_record_can_only_be_dropped(tmp_path):
    data = tmp_path / "messy.jsonl"
    data.write_text("\n".join(adversarial_lines()) + "\n", encoding="utf-8")  # 4: broken JSON, 6: a JSON array
    found = audited(data, build_config(None, only=["format"]), progress=False)
    opened = Session(found.source, found.frame, found.config, RecordStore(data, tmp_path), tmp_path / "r.jsonl")
    try:
        for line, code in ((4, "format.invalid_json"), (6, "format.not_an_object")):
            assert opened.record(line)["unusable"] == code
            for action in ("keep", "edit"):
                with pytest.raises(ReviewError, match=f"line {line} is no readable training record \\({code}\\)"):
                    opened.decide([{"line": line, "action": action, "texts": []}])
            assert opened.decide([{"line": line, "action": "drop"}])["decisions"][0]["action"] == "drop"
        assert opened.bulk(Filter(), "keep", 2) == {"count": 0, "skipped": 2, "applied": True,
                                                    "progress": {"decided": 2, "flagged": 2}}
        assert {d.action for d in opened.decisions.latest().values()} == {"drop"}  # the bulk keep skipped both
    finally:
        opened.close()


@pytest.mark.parametrize("container", ["jsonl.gz", "parquet"])
def test_the_store_reads_gzip_and_parquet_records_as_the_reader_does(container, tmp_path):
    import gzip

    import polars as pl

    source = EXAMPLES / "belle_sample.jsonl"
    path = tmp_path / f"belle.{container}"
    if container == "parquet":
        pl.read_ndjson(source).write_parquet(path)
    else:
        path.write_bytes(gzip.compress(source.read_bytes()))
    raw = read_raw(path).records
    store = RecordStore(path, tmp_path)
    assert len(raw) == 250 and all(store.get(r.line).text == r.text and store.get(r.line).obj == r.obj for r in raw)
    assert list(store.texts([r.line for r in raw])) == [(r.line, r.text) for r in raw]
