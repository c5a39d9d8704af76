"""End to end through the real `datakit` CLI: exact lines per rule on the adversarial file, exit statuses, options,
the published schema, the Python API, and the bundled and shared real data."""
from __future__ import annotations

import json

import jsonschema
import polars as pl
import pytest

import datakit
from tests.conftest import EXAMPLES, ROOT, audit_json, lines_for, run_cli
from validators import all_codes

DATA = ROOT / "tests" / "data"
ADVERSARIAL = DATA / "adversarial.jsonl"
CORE = ("format", "empty", "length", "hygiene", "duplicate", "volume")
ONLY_CORE = ("--only", ",".join(CORE))  # the other families have their own end-to-end tests; this keeps these runs quick
LIMITS = ("--max-tokens", "200", "--label-field", "category")
OPTIONS = (*LIMITS, *ONLY_CORE)
FAST = "--no-html"  # the HTML report is tested elsewhere; rendering it would triple these runs' time

# Every rule of the core families at the exact line it must be found on (None: file- or dataset-level).
EXPECTED = {
    "format.bom": [1],
    "format.crlf": [None],
    "format.blank_line": [4],
    "format.invalid_json": [3, 42],
    "format.not_an_object": [5],
    "format.unknown_format": [6],
    "format.schema": [7],
    "format.unknown_role": [8],
    "format.roles_not_alternating": [9],
    "format.not_ending_with_assistant": [10],
    "format.invalid_utf8": [18],
    "format.no_response": [36],
    "format.mixed_formats": [8, 9, 10, 13, 36, 37, 38],
    "empty.output": [11],
    "empty.instruction": [12],
    "empty.turn": [13],
    "length.too_long": [29],
    "length.too_short": [30],
    "hygiene.html": [14],
    "hygiene.control_chars": [16, 17],
    "hygiene.replacement_char": [18, 19],
    "hygiene.template_marker": [20, 21, 22, 23],
    "hygiene.mojibake": [24, 25],
    "duplicate.exact": [26, 27],
    "duplicate.conflicting_output": [28],
    "volume.too_few": [None],
    "volume.class_too_small": [None],
}
# Records that are fine (apart from being in a file that mixes formats): a rule firing here is a false positive.
CLEAN_LINES = [2, 15, 31, 32, 33, 34, 35, 37, 38, 39, 40, 41]


def lines(report: dict, rule: str) -> list:
    return sorted((f["line"] for f in report["findings"] if f["rule"] == rule), key=lambda x: (x is not None, x or 0))


@pytest.fixture(scope="module")
def adversarial(tmp_path_factory) -> tuple:
    return audit_json(tmp_path_factory.mktemp("adv"), str(ADVERSARIAL), *OPTIONS, FAST)


@pytest.mark.parametrize("rule", EXPECTED)
def test_adversarial_file_flags_exactly_the_planted_lines(adversarial, rule):
    _, report = adversarial
    assert lines(report, rule) == EXPECTED[rule]


def test_adversarial_file_exercises_every_core_rule(adversarial):
    codes = {c.code for family, c in all_codes() if family in CORE} - {"format.truncated_file"}  # JSON arrays only: below
    codes -= {"format.encoding", "format.record_too_large"}  # a UTF-16 file, an 8 Mi-character line: test_adversarial.py
    assert codes <= set(EXPECTED)


def test_clean_records_are_not_flagged(adversarial):
    _, report = adversarial
    noise = [(f["line"], f["rule"]) for f in report["findings"]
             if f["line"] in CLEAN_LINES and f["rule"].split(".")[0] in CORE and f["rule"] != "format.mixed_formats"]
    assert noise == []


def test_findings_name_field_and_related_line(adversarial):
    _, report = adversarial
    by = {(f["rule"], f["line"]): f for f in report["findings"]}
    assert by[("empty.turn", 13)]["field"] == "conversations[1]"
    assert by[("hygiene.html", 14)]["field"] == "output" and "<b>" in by[("hygiene.html", 14)]["excerpt"]
    assert by[("hygiene.control_chars", 16)]["field"] == "instruction"
    assert by[("duplicate.exact", 26)]["related_line"] == 2 and by[("duplicate.conflicting_output", 28)]["related_line"] == 2
    assert "{{name}}" in by[("hygiene.template_marker", 23)]["message"] and "cannot invent" in by[("hygiene.template_marker", 23)]["message"]


def test_truncated_json_array_is_reported(tmp_path):
    proc, report = audit_json(tmp_path, str(DATA / "adversarial_array.json"), *ONLY_CORE, FAST)
    assert proc.returncode == 1
    assert lines_for(report, "format.truncated_file") == [3] and lines_for(report, "format.invalid_json") == [3]


def test_errors_exit_1_and_fail_on_never_exits_0(adversarial, tmp_path):
    proc, _ = adversarial
    assert proc.returncode == 1
    assert run_cli("audit", ADVERSARIAL, "--fail-on", "never", "-q", *ONLY_CORE, FAST, cwd=tmp_path).returncode == 0


def test_fail_on_warning_fails_on_warnings(tmp_path):
    assert run_cli("audit", EXAMPLES / "alpaca_eval_sample.json", "-q", "--only", "hygiene", "--fail-on", "warning",
                   FAST, cwd=tmp_path).returncode == 1


@pytest.mark.parametrize("make,args,says", [
    (None, (), "no such file"),
    ("42\n", (), "top-level JSON value is a int"),
    ('{"instruction": "q", "output": "a"}\n', ("--only", "nonsense"), "unknown rule family 'nonsense'"),
    ('{"instruction": "q", "output": "a"}\n', ("--no-such-option",), "No such option"),
])
def test_user_errors_exit_2_with_a_message_and_no_traceback(tmp_path, make, args, says):
    path = tmp_path / "data.jsonl"
    if make is not None:
        path.write_text(make)
    proc = run_cli("audit", path, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert says in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr + proc.stdout


def test_only_runs_just_the_named_families(tmp_path):
    _, report = audit_json(tmp_path, str(ADVERSARIAL), *LIMITS, FAST, "--only", "hygiene,duplicate")
    assert {f["rule"].split(".")[0] for f in report["findings"]} == {"hygiene", "duplicate"}
    assert [f["family"] for f in report["families"]] == ["hygiene", "duplicate"]


def test_skip_leaves_out_the_named_families(tmp_path):
    _, report = audit_json(tmp_path, str(ADVERSARIAL), *LIMITS, FAST, "--skip", "format", "--skip", "hygiene")
    families = {f["rule"].split(".")[0] for f in report["findings"]}
    assert "format" not in families and "hygiene" not in families and {"empty", "length", "duplicate"} <= families


def test_config_file_sets_limits_and_patterns(tmp_path):
    config = tmp_path / "datakit.toml"
    config.write_text('[audit]\nlabel_field = "category"\n\n[audit.length]\nmax_tokens = 200\nmin_response_tokens = 1\n\n'
                      '[audit.hygiene]\ntemplate_markers = ["Paris"]\nplaceholders = []\n\n'
                      '[audit.volume]\ntask_type = "reasoning"\n', encoding="utf-8")
    _, report = audit_json(tmp_path, str(ADVERSARIAL), *ONLY_CORE, FAST, "--config", str(config))
    assert lines_for(report, "length.too_long") == [29] and lines_for(report, "length.too_short") == []
    assert lines_for(report, "hygiene.template_marker") == [20]
    assert "reasoning fine-tune needs at least 1000" in next(f for f in report["findings"] if f["rule"] == "volume.too_few")["message"]


def test_invalid_config_value_is_a_user_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[hygiene]\ntemplate_markers = ["(?<=a)b"]\n')
    proc = run_cli("audit", ADVERSARIAL, "--config", config, cwd=tmp_path)
    assert proc.returncode == 2 and "look-around" in proc.stderr and "Traceback" not in proc.stderr


def test_rules_command_lists_every_code():
    proc = run_cli("rules")
    assert proc.returncode == 0
    for _, code in all_codes():
        assert code.code in proc.stdout


def test_report_validates_against_the_published_schema(adversarial):
    proc = run_cli("schema")
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(adversarial[1], schema)


def test_python_api_gives_the_cli_findings(adversarial):
    report = datakit.audit(ADVERSARIAL, max_tokens=200, label_field="category", only=list(CORE))
    api = [(f.rule, f.line, f.field, f.related_line) for f in report.findings]
    cli = [(f["rule"], f["line"], f["field"], f["related_line"]) for f in adversarial[1]["findings"]]
    assert api == cli


SAMPLES = sorted(p.name for p in EXAMPLES.glob("*.json*"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, tuple]:
    """Each bundled sample audited once through the CLI with the core families."""
    out = tmp_path_factory.mktemp("samples")
    return {name: audit_json(out, str(EXAMPLES / name), *ONLY_CORE, FAST) for name in SAMPLES}


@pytest.mark.parametrize("name", SAMPLES)
def test_bundled_real_samples_audit_and_exit_1_only_on_errors(samples, name):
    proc, report = samples[name]
    assert "Traceback" not in proc.stderr
    assert proc.returncode == (1 if any(f["severity"] == "error" for f in report["findings"]) else 0)
    assert report["profile"]["valid_records"] == report["profile"]["records"]


def test_identity_placeholders_are_flagged_on_the_right_lines(samples):
    _, report = samples["identity.json"]
    records = json.loads((EXAMPLES / "identity.json").read_text(encoding="utf-8"))
    templated = [i + 1 for i, r in enumerate(records) if "{{" in r["output"]]
    assert lines_for(report, "hygiene.template_marker") == templated and len(templated) > 80


def test_clean_english_sample_is_not_flooded(samples):
    _, report = samples["alpaca_en_sample.json"]
    by_family = pl.DataFrame(report["findings"] or None, schema={"rule": pl.String}).group_by(
        pl.col("rule").str.split(".").list.first()).len()
    counts = dict(by_family.iter_rows())
    assert counts.get("hygiene", 0) == 0 and counts.get("empty", 0) == 0 and counts.get("format", 0) == 0
    assert counts.get("length", 0) <= 2  # a one-word definition ('Configuration') is the only short answer


def test_real_leaked_html_is_found(samples):
    _, report = samples["alpaca_eval_sample.json"]
    records = json.loads((EXAMPLES / "alpaca_eval_sample.json").read_text(encoding="utf-8"))
    with_br = [i + 1 for i, r in enumerate(records) if "<br>" in r["instruction"]]
    assert lines_for(report, "hygiene.html") == with_br and with_br


def test_belle_unanswered_questions_are_empty_outputs(samples):
    _, report = samples["belle_sample.jsonl"]
    rows = [json.loads(line) for line in (EXAMPLES / "belle_sample.jsonl").read_text(encoding="utf-8").splitlines() if line]
    unanswered = [i + 1 for i, r in enumerate(rows) if not r["std_answer"].strip()]
    assert lines_for(report, "empty.output") == unanswered
    assert {f["field"] for f in report["findings"] if f["rule"] == "empty.output"} == {"std_answer"}


def test_shared_real_files_audit_and_find_the_known_problems(shared_data):
    reports = {p.relative_to(shared_data).as_posix(): datakit.audit(p, only=list(CORE))
               for p in sorted(shared_data.glob("*/*.json*"))
               if p.name != "dataset_info.json"}
    rules = {name: [(f.rule, f.line) for f in r.findings] for name, r in reports.items()}
    assert [line for rule, line in rules["llamafactory/alpaca_zh_demo.json"] if rule == "hygiene.template_marker"] == [33]
    assert not [r for r, _ in rules["llamafactory/alpaca_en_demo.json"] if r.startswith(("hygiene", "empty", "format"))]
    assert sum(r == "length.too_long" for r, _ in rules["llamafactory/glaive_toolcall_zh_demo.json"]) == 6
    assert sum(r == "duplicate.exact" for r, _ in rules["llamafactory/alpaca_en_demo.json"]) == 14
