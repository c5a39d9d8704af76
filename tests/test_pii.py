"""pii.*: personal data and secrets are found by pattern plus validation, masked in reports, and redacted exactly."""
from __future__ import annotations

import json
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.normalise import load
from schemas.config import AuditConfig
from tests.conftest import EXAMPLES, audit_json, lines_for, run_cli, run_rule
from validators import RuleContext
from validators.base import code_info
from validators.pii import DETECTORS, PLACEHOLDERS, PiiRules, cn_id_valid, find_pii, luhn_valid, mask, redact

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_check_char(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS)) % 11]


def wrong_check_char(valid_id: str) -> str:
    return valid_id[:-1] + ("0" if valid_id[-1] != "0" else "1")


VALID_ID = with_check_char("11010519491231002")  # Beijing Dongcheng, born 1949-12-31
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
OPENAI = "sk-proj-Ab3dEf7hIjK9mNoPqRsTuVwXyZ0123456789abcd"
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7o\n"
               "nLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBdWSuuC1b\n-----END RSA PRIVATE KEY-----")


def found(text: str) -> list[tuple[str, str]]:
    return [(h.code, h.value) for h in find_pii(text)]


def codes(text: str) -> set[str]:
    return {h.code for h in find_pii(text)}


# --- email -------------------------------------------------------------------------------------------

def test_email_in_english_and_in_chinese_text_is_found():
    assert found("mail me at jane.roe@gmail.com.") == [("pii.email", "jane.roe@gmail.com")]
    assert found("联系邮箱：zhang.wei@qq.com，欢迎来信") == [("pii.email", "zhang.wei@qq.com")]


def test_email_inside_a_code_sample_is_still_an_email():
    code = "```python\nsmtp.login('li.na@163.com', password)\n```"
    assert found(code) == [("pii.email", "li.na@163.com")]


@pytest.mark.parametrize("text", [
    "git clone git@github.com:user/repo.git",
    "@app.route('/login')\ndef login(): ...",
    "icons: logo@2x.png, logo@3x.webp",
    "send it to boss@company.com or john@example.com or a@b.test",
    "npm install @types/node@18.11.9",
    "the pattern r'[^@]+@[^@]+\\.[^@]+' matches addresses",
])
def test_decorators_ssh_remotes_file_names_and_example_domains_are_not_emails(text):
    assert "pii.email" not in codes(text)


# --- phone -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("电话13911458362，欢迎致电", "13911458362"),
    ("手机：139-1145-8362", "139-1145-8362"),
    ("call +86 139 1145 8362 today", "+86 139 1145 8362"),
    ("London office: +44 20 7946 0958.", "+44 20 7946 0958"),
    ("Call us at 650-636-4884 or visit", "650-636-4884"),
    ("reach me on (415) 867-5309", "(415) 867-5309"),
])
def test_chinese_mobile_international_and_north_american_numbers_are_phones(text, value):
    assert found(text) == [("pii.phone", value)]


@pytest.mark.parametrize("text", [
    "the price is ¥13911458362 or $13911458362",
    "成交额13911458362元",
    "order number 139114583620 and 2139114583",
    "from 1999-2023, on 2023-04-10 08:20:11",
    "growth of +3.5% and 3+13911458362",
    "13911458362.5 kilograms",
    "ISBN 978-0-306-40615-7",
    "(555) 123-4567, 555-867-5309, 123-456-7890, 13812345678",  # placeholder numbers
])
def test_prices_years_dates_order_numbers_and_placeholders_are_not_phones(text):
    assert "pii.phone" not in codes(text)


# --- Chinese resident ID -----------------------------------------------------------------------------

def test_resident_id_with_valid_checksum_and_birth_date_is_found():
    assert cn_id_valid(VALID_ID)
    assert found(f"身份证号{VALID_ID}，请核对") == [("pii.cn_id", VALID_ID)]
    lower_x = with_check_char("44030419900307217")
    assert found(f"id {lower_x.lower()}") == [("pii.cn_id", lower_x.lower())]


def test_resident_id_with_wrong_check_character_is_not_an_id():
    bad = wrong_check_char(VALID_ID)
    assert not cn_id_valid(bad)
    assert "pii.cn_id" not in codes(f"身份证号{bad}")


def test_resident_id_with_impossible_birth_date_is_not_an_id():
    feb30 = with_check_char("11010519490230002")
    assert not cn_id_valid(feb30)
    assert "pii.cn_id" not in codes(feb30)


# --- payment cards -----------------------------------------------------------------------------------

@pytest.mark.parametrize("card", ["4539 1488 0343 6467", "4539-1488-0343-6467", "4539148803436467", "3795 482103 65541"])
def test_luhn_valid_card_numbers_with_or_without_separators_are_found(card):
    assert found(f"my card is {card}, expires 09/27") == [("pii.credit_card", card)]


def test_luhn_invalid_numbers_published_test_cards_and_mixed_separators_are_not_cards():
    assert luhn_valid("4539148803436467") and not luhn_valid("4539148803436468")
    for text in ("4539148803436468", "4111 1111 1111 1111", "4242424242424242", "4539 1488-0343 6467",
                 "1234567890123456789012"):
        assert "pii.credit_card" not in codes(text), text


def test_a_resident_id_that_also_passes_luhn_is_reported_once_as_an_id():
    ids = (with_check_char(f"62010219{y}0101{s:03d}") for y in range(50, 99) for s in range(100, 999))
    both = next(i for i in ids if luhn_valid(i) and i[-1] != "X")
    assert found(both) == [("pii.cn_id", both)]


# --- IP addresses ------------------------------------------------------------------------------------

def test_public_ipv4_and_ipv6_addresses_are_found():
    assert found("ssh into 52.14.200.7 now") == [("pii.ip_address", "52.14.200.7")]
    assert found("服务器地址是52.14.200.7。") == [("pii.ip_address", "52.14.200.7")]
    assert found("AAAA 2a03:2880:f12f:83:face:b00c:0:25de") == [("pii.ip_address", "2a03:2880:f12f:83:face:b00c:0:25de")]


@pytest.mark.parametrize("text", [
    "version 10.0.19041.1", "v2.3.14.1", "Python 3.11.4.2", "see section 1.2.3.4",
    "router 192.168.1.1, 10.0.0.1, 127.0.0.1", "docs 203.0.113.5 and 198.51.100.7", "DNS 8.8.8.8 and 114.114.114.114",
    "subnet mask 255.255.255.0", "at 12:30:45", "std::vector<int>", "a[::2]", "MAC 00:1A:2B:3C:4D:5E", "2001:db8::1",
    "OID 1.3.6.1.4.1.311",
])
def test_version_numbers_private_documentation_and_resolver_addresses_are_not_flagged(text):
    assert "pii.ip_address" not in codes(text)


# --- API keys and private keys -----------------------------------------------------------------------

@pytest.mark.parametrize("key,provider", [
    (OPENAI, "OpenAI"),
    ("sk-ant-api03-Xy7Qw2Er9Ty1Ui8Op3As6Df4Gh0Jk5Lz", "Anthropic"),
    (GITHUB, "GitHub"),
    ("github_pat_11ABCDEFG0abcdefghijkl_MNOPqrstuv1234567890", "GitHub"),
    ("AKIAZ7QWERTY12345XYZ", "AWS"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "Slack"),
    ("AIzaSyD3x7Q9mK2pL5nR8tV1wY4zB6cF0hJ3kM7", "Google"),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "Hugging Face"),
    ("glpat-Ab3De6Gh9Jk2Mn5Pq8St", "GitLab"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Stripe"),
])
def test_provider_keys_are_found_with_their_provider(key, provider):
    hits = find_pii(f'client = Client("{key}")')
    assert [(h.code, h.value, h.label) for h in hits] == [("pii.api_key", key, provider)]


@pytest.mark.parametrize("text", [
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "OPENAI_API_KEY=sk-your-api-key-goes-here-1234",
    "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "pip install sk-learn-2-compatible-estimator",
    "Authorization: Bearer YOUR_ACCESS_TOKEN_1234567890",
])
def test_documentation_placeholders_are_not_keys(text):
    assert "pii.api_key" not in codes(text)


def test_a_random_token_is_a_key_only_next_to_a_credential_word():
    token = "8fJ2kLq9Zx3Vb7Nm1Pq4Rs6Tu0Wy5Ac2"
    assert found(f'headers = {{"Authorization": "Bearer {token}"}}') == [("pii.api_key", token)]
    assert found(f"password: {token}") == [("pii.api_key", token)]
    assert found(f"the build id is {token}") == []


@pytest.mark.parametrize("text", [
    'commit = "3f786850e387550fdab836ed7e6dc881de23001b"; token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
    'token = "550e8400-e29b-41d4-a716-446655440000"',
    '"qr_code": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAMgAAADICAYAAACtWK6eAAAACXBIWXMAAAsTAAALEwEAmpwYAAAKT2lD"',
    "token = SYSTEMCurrentControlSetServicesRasManPPPEAP",
    "secret_path = models/checkpoints/2024/run7/epoch12/weights.bin",
])
def test_hashes_uuids_base64_images_identifiers_and_paths_are_not_keys(text):
    assert "pii.api_key" not in codes(text)


def test_private_key_blocks_are_found_including_escaped_newlines_in_code():
    assert found(f"here:\n{PRIVATE_KEY}\nthanks") == [("pii.private_key", PRIVATE_KEY)]
    escaped = PRIVATE_KEY.replace("\n", "\\n")
    assert found(f'key = "{escaped}"') == [("pii.private_key", escaped)]


def test_private_key_header_in_parsing_code_is_not_a_key():
    code = ('if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):\n    parse(line)\n'
            'END = "-----END RSA PRIVATE KEY-----"\n# -----BEGIN PRIVATE KEY-----\n# ...\n# -----END PRIVATE KEY-----')
    assert found(code) == []


def test_digits_inside_a_key_are_not_reported_again_as_a_phone():
    key = "xoxb-13911458362-1234567890123-AbCdEfGhIjKlMnOp"
    assert codes(f"slack {key}") == {"pii.api_key"}


# --- masking and redaction ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [OPENAI, GITHUB, PRIVATE_KEY, VALID_ID, "4539 1488 0343 6467", "jane.roe@gmail.com",
                                  "+86 139 1145 8362", "52.14.200.7"])
def test_masks_never_show_the_whole_value(text):
    (hit,) = find_pii(text)
    shown = mask(hit)
    assert hit.value not in shown and len(shown) < len(hit.value) + 16


def test_secret_mask_shows_prefix_and_length():
    (hit,) = find_pii(OPENAI)
    assert mask(hit) == f"sk-pr…({len(OPENAI)} chars)"


def test_redact_replaces_exactly_the_flagged_spans_with_typed_placeholders():
    text = f"mail jane.roe@gmail.com, call 13911458362, key {GITHUB}, id {VALID_ID}, keep 2023-04-10 and ¥199."
    assert redact(text) == "mail [EMAIL], call [PHONE], key [API_KEY], id [CN_ID], keep 2023-04-10 and ¥199."
    assert find_pii(redact(text)) == []


SAMPLES = [OPENAI, GITHUB, PRIVATE_KEY, VALID_ID, "4539 1488 0343 6467", "jane.roe@gmail.com", "13911458362",
           "52.14.200.7", "password: 8fJ2kLq9Zx3Vb7Nm1Pq4Rs6Tu0Wy5Ac2", "+44 20 7946 0958"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SAMPLES), st.text(max_size=30),
                          st.sampled_from([" ", "\n", "，", "@", "-", ".", ":", "元", "[EMAIL]", "sk-", "1"])), max_size=12))
def test_redact_is_idempotent_and_leaves_nothing_to_flag(parts):
    text = "".join(parts)
    once = redact(text)
    assert redact(once) == once
    assert find_pii(once) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SAMPLES), st.text(max_size=30),
                          st.text(alphabet="0123456789 -+.@:abcXx:-_", max_size=25)), max_size=10))
def test_the_polars_hints_never_hide_a_hit(parts):
    text = "".join(parts)
    hinted = [d for d in DETECTORS if pl.Series([text]).str.contains(d.hint)[0]]
    assert find_pii(text, hinted) == find_pii(text)


# --- the rule family ---------------------------------------------------------------------------------

def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


CRAFTED = [
    {"instruction": "What is the capital of France?", "output": "Paris is the capital of France."},
    {"instruction": "Write to support", "output": "Email support at li.na@163.com or call 13911458362."},
    {"instruction": f"Use my token {GITHUB} to list repos", "output": "I will not use credentials shared in chat."},
    {"instruction": "Show a config", "output": f"Put this in ~/.ssh/id_rsa:\n{PRIVATE_KEY}"},
    {"instruction": "Verify my ID", "output": f"身份证号{VALID_ID}已核验，卡号4539 1488 0343 6467。"},
    {"instruction": "Email regex example", "output": "Test it on john@example.com and boss@company.com."},
]


def test_check_names_line_field_and_masked_excerpt(tmp_path):
    ds = load(write_jsonl(tmp_path / "d.jsonl", CRAFTED))
    found_ = PiiRules().check(ds, RuleContext())
    rows = {(r["line"], r["rule"], r["field"]) for r in found_.iter_rows(named=True)}
    assert rows == {(2, "pii.email", "response"), (2, "pii.phone", "response"), (3, "pii.api_key", "prompt"),
                    (4, "pii.private_key", "response"), (5, "pii.cn_id", "response"), (5, "pii.credit_card", "response")}
    report_text = found_.write_json()
    for secret in (GITHUB, PRIVATE_KEY.splitlines()[1], VALID_ID, "4539 1488 0343 6467", "li.na@163.com"):
        assert secret not in report_text
    key = found_.filter(pl.col("rule") == "pii.api_key").row(0, named=True)
    assert key["severity"] == "error" and key["excerpt"] == "ghp_1…(40 chars)" and "GitHub" in key["detail"]


def test_messages_and_fix_follow_the_configured_action(tmp_path):
    ds = load(write_jsonl(tmp_path / "d.jsonl", CRAFTED[1:2]))
    rules = PiiRules()
    redact_ctx = RuleContext(config=AuditConfig())
    reject_ctx = RuleContext(config=AuditConfig.model_validate({"pii": {"action": "reject"}}))
    email = code_info(rules, "pii.email")
    assert rules.fix_for(email, redact_ctx) == "repair" and rules.fix_for(email, reject_ctx) == "drop"
    assert all("[EMAIL]" in m or "[PHONE]" in m for m in run_rule(rules, ds, redact_ctx.config)[0]["message"])
    found_, summary = run_rule(rules, ds, reject_ctx.config)
    assert all("rejected file" in m for m in found_["message"])
    assert summary == {"action": "reject", "placeholders": {}}


def test_repair_of_every_text_leaves_no_finding(tmp_path):
    rules = PiiRules()
    repaired = [{k: rules.repair(v, RuleContext()) for k, v in r.items()} for r in CRAFTED]
    ds = load(write_jsonl(tmp_path / "fixed.jsonl", repaired))
    assert rules.check(ds, RuleContext()).height == 0
    assert repaired[1]["output"] == "Email support at [EMAIL] or call [PHONE]."
    assert repaired[5] == CRAFTED[5]


def test_bad_records_are_skipped_not_raised(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "x", "output": null}\nnot json\n{"instruction": 5}\n[1]\n'
                 '{"instruction": "mail", "output": "a.b@gmail.com"}\n', encoding="utf-8")
    found_ = PiiRules().check(load(p), RuleContext())
    assert found_["line"].to_list() == [5]


# --- end to end and real data ------------------------------------------------------------------------

def test_cli_audit_reports_each_pii_code_on_its_line_and_never_prints_a_secret(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", CRAFTED)
    proc, report = audit_json(tmp_path, str(data), "--only", "pii")
    assert proc.returncode == 1, proc.stderr  # secrets are errors
    assert lines_for(report, "pii.email") == [2] and lines_for(report, "pii.phone") == [2]
    assert lines_for(report, "pii.api_key") == [3] and lines_for(report, "pii.private_key") == [4]
    assert lines_for(report, "pii.cn_id") == [5] and lines_for(report, "pii.credit_card") == [5]
    everything = proc.stdout + json.dumps(report, ensure_ascii=False)
    for secret in (GITHUB, PRIVATE_KEY.splitlines()[1], VALID_ID):
        assert secret not in everything


def test_cli_fix_redacts_by_default_and_rejects_when_told(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", CRAFTED)
    clean = tmp_path / "clean.jsonl"
    proc = run_cli("fix", str(data), "-o", str(clean), "--only", "pii", "-q")
    assert proc.returncode == 0, proc.stderr
    fixed = [json.loads(line) for line in clean.read_text(encoding="utf-8").splitlines()]
    assert len(fixed) == len(CRAFTED) and fixed[1]["output"] == "Email support at [EMAIL] or call [PHONE]."
    assert fixed[3]["output"] == "Put this in ~/.ssh/id_rsa:\n[PRIVATE_KEY]" and fixed[0] == CRAFTED[0]
    _, report = audit_json(tmp_path, str(clean), "--only", "pii")
    assert report["findings"] == []

    proc = run_cli("fix", str(data), "-o", str(tmp_path / "kept.jsonl"), "--only", "pii", "--pii", "reject", "-q")
    assert proc.returncode == 0, proc.stderr
    rejected = [json.loads(line) for line in (tmp_path / "kept.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rejected] == [2, 3, 4, 5]
    assert {reason["fix"] for r in rejected for reason in r["reasons"]} == {"drop"}


def test_bundled_real_samples_have_almost_no_pii_and_the_real_phone_number_is_found(tmp_path):
    flagged, records = set(), 0
    for path in sorted(EXAMPLES.glob("*.json*")):
        ds = load(path)
        records += ds.frame.height
        flagged |= {(path.name, line, rule) for line, rule in PiiRules().check(ds, RuleContext()).select("line", "rule").iter_rows()}
    # The one hit is real: AlpacaEval asks to rewrite an ad that gives a business's phone number.
    assert flagged == {("alpaca_eval_sample.json", 237, "pii.phone")}
    assert len(flagged) / records < 0.005


def test_shared_real_data_false_positive_rate_is_low(shared_data):
    flagged, records = set(), 0
    for path in sorted(shared_data.glob("*/*.json*")):
        if path.name == "dataset_info.json":
            continue
        ds = load(path)
        records += ds.frame.height
        flagged |= {(path.name, line, rule) for line, rule in PiiRules().check(ds, RuleContext()).select("line", "rule").iter_rows()}
    assert ("alpaca_eval_outputs.json", 709, "pii.phone") in flagged  # the same business phone number
    assert ("seed_tasks.jsonl", 167, "pii.email") in flagged  # a bank's real alert sender address
    assert len(flagged) / records < 0.002


def test_placeholders_are_not_themselves_flagged():
    assert find_pii(" ".join(PLACEHOLDERS.values())) == []
    assert all(re.fullmatch(r"\[[A-Z_]+\]", p) for p in PLACEHOLDERS.values())
