"""Configs and options cannot hang or confuse: a user's regular expression that backtracks catastrophically ends the
audit with a clear error within seconds (the subprocess timeout is the bound, not a timing assert), good patterns still
find what they found, and every mistake in a TOML, YAML or JSON config names the file and the dotted key."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import EXAMPLES, audit_json, lines_for, run_cli

HANG_BOUND = 120  # seconds: a pathological pattern on Python's `re` ran for many minutes on these three records
FORMATS = ("toml", "yaml", "json")


def write_config(path_stem, settings: dict, kind: str):
    """`settings` ({section: {key: value}} or top-level scalars) as a TOML, YAML or JSON file."""
    path = path_stem.with_suffix(f".{kind}")
    if kind == "json":
        path.write_text(json.dumps(settings), encoding="utf-8")
    elif kind == "yaml":
        path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    else:
        path.write_text(_toml(settings), encoding="utf-8")
    return path


def _toml(settings: dict, table: str = "") -> str:
    """JSON scalars and arrays are valid TOML values; nested mappings become [dotted.tables]."""
    scalars = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items() if not isinstance(v, dict))
    head = f"[{table}]\n" if table and scalars else ""
    tables = "".join(_toml(v, f"{table}.{k}".lstrip(".")) for k, v in settings.items() if isinstance(v, dict))
    return head + scalars + tables


def three_records(tmp_path, response: str = "a" * 40 + "!"):
    path = tmp_path / "three.jsonl"
    rows = [{"instruction": "Say a lot", "input": "", "output": response},
            {"instruction": "List words", "input": "", "output": "word " * 60 + "in Paris!"},
            {"instruction": "Where is it?", "input": "", "output": "See PROJ-1234 in Jira for the details of the plan."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def audit(*args, timeout: int = HANG_BOUND):
    return run_cli("audit", *args, "--no-html", "-q", timeout=timeout)


# --- patterns that would hang ------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "nested repeat": r"(a+)+$",
    "words with optional spaces": r"(\w+\s?)+$",
    "overlapping alternatives": r"(a|a)*$",
    "overlapping classes": r"([a-z]|\w)+\d$",
    "adjacent repeats under a repeat": r"(x+x+)+y",
    "literal then overlapping alternatives": r"Answer: (a|a)*$",
    "huge counted repeats": r"(a{65535}){65535}",
}
PATTERN_KEYS = (("leakage", "internal_patterns", "leakage"), ("hygiene", "template_markers", "hygiene"),
                ("hygiene", "placeholders", "hygiene"))


@pytest.mark.parametrize("pattern", PATHOLOGICAL.values(), ids=PATHOLOGICAL)
@pytest.mark.parametrize("section,key,family", PATTERN_KEYS, ids=[f"{s}.{k}" for s, k, _ in PATTERN_KEYS])
def test_a_pattern_that_would_hang_is_a_config_error_naming_file_key_and_pattern(tmp_path, pattern, section, key, family):
    config = write_config(tmp_path / "patterns", {section: {key: [r"\bPROJ-\d+\b", pattern]}}, "toml")
    proc = audit(three_records(tmp_path), "--only", family, "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert f"{config}: invalid configuration: {section}.{key}[1]: pattern {pattern!r}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", FORMATS)
def test_a_slow_pattern_is_named_with_its_file_whatever_the_format(tmp_path, kind):
    config = write_config(tmp_path / "slow", {"leakage": {"internal_patterns": [r"(\w+\s?)+$"]}}, kind)
    proc = audit(three_records(tmp_path), "--only", "leakage", "--config", config)
    assert proc.returncode == 2 and str(config) in proc.stderr and "leakage.internal_patterns[0]" in proc.stderr
    assert "backtracks catastrophically" in proc.stderr and "Traceback" not in proc.stderr


def test_a_pattern_slow_only_on_the_data_stops_the_audit_naming_the_record(tmp_path):
    """`x(a+)+$` passes the probes (a literal pins where it starts) but is quadratic: on a 40,000-character answer it
    would run for many seconds, so the per-call limit stops it and names the record."""
    data = three_records(tmp_path, response="x" + "a" * 40_000 + "!")
    config = write_config(tmp_path / "slow", {"leakage": {"internal_patterns": [r"x(a+)+$"]}}, "toml")
    proc = audit(data, "--only", "leakage", "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert "leakage.internal_patterns: pattern 'x(a+)+$' ran over" in proc.stderr
    assert f"{data}:1" in proc.stderr and "Traceback" not in proc.stderr


def test_a_template_marker_slow_only_on_the_data_stops_the_audit_naming_the_field(tmp_path):
    # polars pre-selects the record (the marker matches at its end); the backtracking search from its start is what is slow
    data = three_records(tmp_path, response="x" + "a" * 40_000 + "! then xa")
    config = write_config(tmp_path / "slow", {"hygiene": {"template_markers": [r"x(a+)+$"]}}, "yaml")
    proc = audit(data, "--only", "hygiene", "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert "hygiene.template_markers: pattern 'x(a+)+$' ran over" in proc.stderr and f"{data}:1, output" in proc.stderr


def many_records(tmp_path, slow_line: int, records: int):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"answer {i} " * 5} for i in range(records)]
    rows[slow_line - 1]["output"] = "x" + "a" * 40_000 + "!"
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_slow_pattern_in_the_forked_search_workers_names_the_right_record(tmp_path):
    """6,000 responses are searched in two chunks on forked workers: the error names the line in the second chunk."""
    data = many_records(tmp_path, slow_line=5_500, records=6_000)
    config = write_config(tmp_path / "slow", {"leakage": {"internal_patterns": [r"x(a+)+$"]}}, "json")
    proc = audit(data, "--only", "leakage", "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert "leakage.internal_patterns" in proc.stderr and f"{data}:5500" in proc.stderr and "Traceback" not in proc.stderr


def test_a_slow_pattern_in_the_spawned_batch_workers_ends_the_audit_with_the_same_error(tmp_path):
    from datakit.audit import Audit
    from datakit.config import build_config
    from schemas.patterns import PatternTooSlow

    data = many_records(tmp_path, slow_line=451, records=600)
    config = build_config(only=["leakage"], leakage={"internal_patterns": [r"x(a+)+$"]})
    expected = rf"leakage.internal_patterns: .* \(the response of {data}:451\)"
    with pytest.raises(PatternTooSlow, match=expected), Audit(data, config, progress=False, batch_records=100, workers=2):
        pass


@pytest.mark.parametrize("kind", FORMATS)
def test_good_patterns_still_find_what_they_found(tmp_path, kind):
    config = write_config(tmp_path / "good", {"leakage": {"internal_patterns": [r"\bPROJ-\d+\b"]},
                                              "hygiene": {"template_markers": ["Paris"], "placeholders": []}}, kind)
    data = three_records(tmp_path)
    proc, report = audit_json(tmp_path, str(data), "--only", "leakage,hygiene", "--config", str(config), "--no-html")
    assert proc.returncode in (0, 1), proc.stderr
    assert lines_for(report, "leakage.internal_reference") == [3] and lines_for(report, "hygiene.template_marker") == [2]
    assert "PROJ-1234" in next(f for f in report["findings"] if f["rule"] == "leakage.internal_reference")["excerpt"]


def test_default_patterns_find_the_same_internal_references_when_listed_in_a_config(tmp_path):
    """The built-in patterns written out in a config are probed like any user's and give the same findings."""
    from schemas.config import LeakageConfig

    data = tmp_path / "internal.jsonl"
    answers = ["According to our internal wiki, refunds take three days.", "This memo is for internal use only.",
               "The file is at /home/alice/reports/q3.xlsx.", "Cook until the internal temperature reaches 165°F."]
    data.write_text("".join(json.dumps({"instruction": "q", "input": "", "output": a}) + "\n" for a in answers))
    config = write_config(tmp_path / "defaults", {"leakage": {"internal_patterns": LeakageConfig().internal_patterns}}, "toml")
    _, default = audit_json(tmp_path, str(data), "--only", "leakage", "--no-html")
    _, listed = audit_json(tmp_path, str(data), "--only", "leakage", "--config", str(config), "--no-html")
    assert lines_for(listed, "leakage.internal_reference") == lines_for(default, "leakage.internal_reference") == [1, 2, 3]


# --- mistakes in a config file -----------------------------------------------------------------------------------

MISTAKES = {
    "unknown key": ({"length": {"max_token": 100}}, ["length.max_token", "unknown setting", "did you mean max_tokens"]),
    "unknown section": ({"lenght": {"max_tokens": 100}}, ["lenght", "unknown setting", "did you mean length"]),
    "wrong type": ({"near_duplicate": {"threshold": "high"}}, ["near_duplicate.threshold", "expected a valid number", "'high'"]),
    "out of range": ({"length": {"max_tokens": -5}}, ["length.max_tokens", "expected a number >= 1", "got -5"]),
    "above its maximum": ({"near_duplicate": {"threshold": 1.5}}, ["near_duplicate.threshold", "<= 1", "got 1.5"]),
    "not one of the choices": ({"pii": {"action": "shred"}}, ["pii.action", "'redact' or 'reject'", "'shred'"]),
    "section that is not a table": ({"length": 5}, ["length: expected a table of settings (max_tokens", "got 5"]),
    "list item of the wrong type": ({"leakage": {"internal_patterns": ["ok", 5]}}, ["leakage.internal_patterns[1]", "got 5"]),
    "broken pattern": ({"hygiene": {"placeholders": ["(unclosed"]}}, ["hygiene.placeholders[0]", "not a valid regular expression"]),
    "unknown rule family": ({"only": ["lenght"]}, ["only: unknown rule family 'lenght'"]),
}


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("settings,expected", MISTAKES.values(), ids=MISTAKES)
def test_every_config_mistake_names_the_file_and_the_key(tmp_path, settings, expected, kind):
    config = write_config(tmp_path / "mistake", settings, kind)
    proc = audit(EXAMPLES / "identity.json", "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {config}: "), proc.stderr
    for part in expected:
        assert part in proc.stderr
    assert "Traceback" not in proc.stderr


def test_several_mistakes_are_reported_together(tmp_path):
    config = write_config(tmp_path / "many", {"length": {"max_tokens": 0, "min_response_tokens": "few"},
                                              "balance": {"min_per_clas": 3}}, "yaml")
    proc = audit(EXAMPLES / "identity.json", "--config", config)
    assert proc.returncode == 2
    for key in ("length.max_tokens", "length.min_response_tokens", "balance.min_per_clas"):
        assert key in proc.stderr


@pytest.mark.parametrize("text,kind,expected", [
    ("[length\nmax_tokens = 5\n", "toml", "not valid TOML"),
    ("length: [unclosed\n", "yaml", "not valid YAML"),
    ('{"length": {"max_tokens": 5,}}', "json", "not valid JSON"),
    ("[1, 2, 3]", "json", "expected a mapping of setting: value at the top, got a list"),
    ("- length\n", "yaml", "expected a mapping of setting: value at the top, got a list"),
    ("audit = 5\n", "toml", "audit: expected a table of settings"),
])
def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path, text, kind, expected):
    config = tmp_path / f"broken.{kind}"
    config.write_text(text, encoding="utf-8")
    proc = audit(EXAMPLES / "identity.json", "--config", config)
    assert proc.returncode == 2 and str(config) in proc.stderr and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('label_field = "catégorie"\n'.encode("latin-1"))
    proc = audit(EXAMPLES / "identity.json", "--config", config)
    assert proc.returncode == 2 and f"{config}: not UTF-8" in proc.stderr


def test_an_audit_table_in_a_larger_file_is_read_in_every_format(tmp_path):
    for kind in FORMATS:
        config = write_config(tmp_path / f"project-{kind}", {"audit": {"length": {"max_tokens": -1}}}, kind)
        proc = audit(EXAMPLES / "identity.json", "--config", config)
        assert proc.returncode == 2 and f"{config}: invalid configuration: length.max_tokens" in proc.stderr


# --- options out of range ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    (("audit", "--batch-records", "-5"), "--batch-records"),
    (("audit", "--max-tokens", "-5"), "--max-tokens: expected a number >= 1, got -5"),
    (("audit", "--html-max-findings", "-1"), "--html-max-findings"),
    (("audit", "--inline-findings", "-1"), "--inline-findings"),
    (("audit", "--only", "lenght"), "--only: unknown rule family 'lenght'"),
    (("audit", "--fail-on", "sometimes"), "--fail-on: expected 'error', 'warning' or 'never'"),
    (("split", "--threshold", "7"), "--threshold: expected a number <= 1, got 7.0"),
    (("fix", "--pii", "shred", "--dry-run"), "pii.action (given as an option): expected 'redact' or 'reject'"),
])
def test_an_option_out_of_range_is_one_clear_line(tmp_path, args, expected):
    command, *options = args
    proc = run_cli(command, EXAMPLES / "identity.json", *options, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr


# --- trainkit: options in a config file, flags, the audit gate's config --------------------------------------------

def train_cli(tmp_path, *args):
    """`trainkit train` on three records with a model folder that is never reached: options are checked first."""
    return run_cli("train", three_records(tmp_path), "--model", tmp_path / "no-model", "--output", tmp_path / "run", *args,
                   tool="trainkit", timeout=HANG_BOUND)


@pytest.mark.parametrize("kind", FORMATS)
def test_a_train_config_with_an_unknown_option_names_the_file_and_the_close_one(tmp_path, kind):
    config = write_config(tmp_path / "train", {"lerning_rate": 0.1, "max-steps": 5}, kind)
    proc = train_cli(tmp_path, "--config", config)
    assert proc.returncode == 2, proc.stderr
    assert f"{config}: unknown option(s) lerning_rate (did you mean learning_rate?)" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", FORMATS)
def test_wrong_train_option_values_name_the_file_the_option_and_what_is_expected(tmp_path, kind):
    config = write_config(tmp_path / "train", {"max-steps": 0, "lora_r": "big", "learning_rate": -0.1,
                                               "lora_dropout": 1.5, "method": "lorra"}, kind)
    proc = train_cli(tmp_path, "--config", config)
    assert proc.returncode == 2, proc.stderr
    for problem in (f"{config}: max_steps: expected a number >= 1, got 0",
                    f"{config}: lora_r: expected a valid integer",
                    f"{config}: learning_rate: expected a number > 0, got -0.1",
                    f"{config}: lora_dropout: expected a number < 1, got 1.5",
                    f"{config}: method: expected 'lora', 'qlora'"):
        assert problem in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_a_train_flag_out_of_range_is_named_as_the_flag(tmp_path):
    config = write_config(tmp_path / "train", {"max_steps": 5}, "yaml")
    proc = train_cli(tmp_path, "--config", config, "--lr", "0", "--micro-batch", "0")
    assert proc.returncode == 2, proc.stderr
    assert "--lr: expected a number > 0, got 0.0" in proc.stderr and "--micro-batch: expected a number >= 1, got 0" in proc.stderr
    assert str(config) not in proc.stderr


def test_the_audit_gate_config_mistake_names_its_file_and_key(tmp_path):
    audit_config = write_config(tmp_path / "gate", {"length": {"max_tokens": 0}, "leakage": {"internal_patterns": ["(a|a)*$"]}},
                                "yaml")
    proc = train_cli(tmp_path, "--audit-config", audit_config)
    assert proc.returncode == 2, proc.stderr
    assert f"{audit_config}: invalid configuration: length.max_tokens: expected a number >= 1, got 0" in proc.stderr
    assert "leakage.internal_patterns[0]: pattern '(a|a)*$'" in proc.stderr and "Traceback" not in proc.stderr
