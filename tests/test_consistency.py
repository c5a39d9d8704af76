"""consistency.*: minority spellings and registers flagged where one variant dominates (English and Chinese), splits
reported as mixed, echoed and task-asked variants left alone, real clean sets almost silent, batching irrelevant."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.audit import Audit
from datakit.config import build_config
from datakit.normalise import load
from schemas.config import AuditConfig, ConsistencyConfig
from tests.conftest import EXAMPLES, SHARED_DATA, audit_json, lines_for, run_rule
from validators.consistency import ConsistencyRules

TOPICS = ["your order", "the invoice", "a refund", "the password", "your account", "the delivery", "a receipt",
          "the newsletter", "your booking", "the warranty", "a voucher", "the subscription"]


def write(tmp_path: Path, pairs: list[tuple[str, str]]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"instruction": p, "output": o}, ensure_ascii=False) + "\n" for p, o in pairs),
                    encoding="utf-8")
    return path


def check(path: Path, config: AuditConfig | None = None) -> tuple[list[dict], dict]:
    found, summary = run_rule(ConsistencyRules(), load(path), config)
    return found.to_dicts(), summary


def share(summary: dict, group: str, variant: str) -> float:
    return next(v["share"] for v in summary["variants"] if v["group"] == group and v["variant"] == variant)


def test_a_rare_spelling_of_a_term_is_flagged_on_its_records(tmp_path):
    pairs = [(f"How do I get {t} sent to me?", f"We send {t} by email within a day; check the email folder.") for t in TOPICS * 2]
    pairs[3] = ("How do I get my bill?", "Your bill arrives by e-mail within a day.")
    pairs[17] = ("Where is my ticket?", "The ticket was sent by e-mail; look in your inbox.")
    found, summary = check(write(tmp_path, pairs))
    flagged = [f for f in found if f["rule"] == "consistency.terminology"]
    assert [f["line"] for f in flagged] == [4, 18]
    assert flagged[0]["severity"] == "warning" and flagged[0]["field"] == "response"
    assert "writes 'e-mail' (email)" in flagged[0]["message"] and "Write 'email'" in flagged[0]["message"]
    assert share(summary, "email", "email") == pytest.approx(22 / 24, abs=1e-3)
    assert share(summary, "email", "e-mail") == pytest.approx(2 / 24, abs=1e-3)


def test_an_even_split_is_mixed_not_a_minority(tmp_path):
    pairs = [(f"Tell me about {t}.", f"Details on {t} are on our {'website' if i % 2 else 'web site'} today.")
             for i, t in enumerate(TOPICS * 2)]
    found, summary = check(write(tmp_path, pairs))
    assert [f["rule"] for f in found] == ["consistency.mixed"]
    assert found[0]["line"] is None and "split on website" in found[0]["message"]
    assert share(summary, "website", "website") == 0.5


def test_one_spelling_everywhere_raises_nothing(tmp_path):
    pairs = [(f"Tell me about {t}.", f"Details on {t} are on our website, updated online daily.") for t in TOPICS * 2]
    found, summary = check(write(tmp_path, pairs))
    assert found == []
    assert share(summary, "website", "website") == 1.0


def test_informal_address_among_formal_chinese_answers_is_a_register_finding(tmp_path):
    formal = [(f"如何处理{t}？", f"您好，关于{t}，您可以在个人中心查看并提交申请。") for t in ["订单", "发票", "退款", "密码", "账号", "物流",
                                                                     "收据", "预约", "保修", "优惠券", "订阅", "积分"]]
    pairs = formal + formal[:6] + [("怎么改地址？", "你可以在设置里修改收货地址。"), ("迷你款有货吗？", "您好，迷你款目前有货，您可以直接下单。")]
    found, summary = check(write(tmp_path, pairs))
    assert [(f["rule"], f["line"], f["severity"]) for f in found] == [("consistency.register", 19, "info")]
    assert "'你 (informal)' (您/你)" in found[0]["message"]
    assert share(summary, "您/你", "你 (informal)") == pytest.approx(1 / 20, abs=1e-3)  # 迷你 ("mini") is not 你


def test_slang_and_emoji_where_the_prompt_asks_for_them_are_not_flagged(tmp_path):
    plain = [(f"Explain {t}.", f"Here is how {t} works: it is handled by the service team in two working days.") for t in TOPICS * 2]
    pairs = plain + [("Write a tweet about our sale 🎉", "Big sale today 🎉 gonna be huge, don't miss it! 🚀"),
                     ("Explain the refund policy.", "Yeah, refunds are kinda slow lol, gonna take a week. 😅")]
    found, _ = check(write(tmp_path, pairs))
    assert sorted((f["rule"], f["line"]) for f in found) == [("consistency.register", 26), ("consistency.register", 26)]
    assert {f["detail"].split(":")[0] for f in found} == {"colloquial (English)", "emoji use"}


def test_a_spelling_the_prompt_uses_is_the_users_and_not_counted(tmp_path):
    pairs = [(f"Tell me about {t}.", f"We send {t} by email.") for t in TOPICS * 2]
    pairs.append(("Please reword this e-mail to my landlord.", "Here is the e-mail, reworded politely."))
    found, _ = check(write(tmp_path, pairs))
    assert found == []


def test_identifiers_in_code_and_urls_are_not_word_choices(tmp_path):
    pairs = [(f"Tell me about {t}.", f"We send {t} by email.") for t in TOPICS * 2]
    pairs.append(("Show the model field.", "Use `e_mail = models.EmailField()` and see https://e-mail.example.org/docs."))
    pairs.append(("Show the SQL.", "```sql\nSELECT \"e-mail\" FROM users;\n```"))
    found, _ = check(write(tmp_path, pairs))
    assert found == []


def test_terms_from_config_extend_the_table(tmp_path):
    pairs = [(f"How do I open {t}?", f"Log in to see {t}.") for t in TOPICS * 2] + [("How?", "Login to see it.")]
    config = AuditConfig(consistency=ConsistencyConfig(terms={"log in": {"log in": ["log in"], "login": ["login"]}}))
    found, summary = check(write(tmp_path, pairs), config)
    assert [(f["rule"], f["line"]) for f in found] == [("consistency.terminology", 25)]
    assert share(summary, "log in", "login") == pytest.approx(1 / 25, abs=1e-3)


def test_too_few_uses_are_not_judged(tmp_path):
    pairs = [("Send it.", "Sent by email."), ("Send that.", "Sent by email too."), ("And this?", "Sent by e-mail.")]
    found, summary = check(write(tmp_path, pairs))
    assert found == [] and not any(v["minority"] for v in summary["variants"])


CLEAN_SETS = [EXAMPLES / "alpaca_en_sample.json", EXAMPLES / "alpaca_zh_sample.json", EXAMPLES / "belle_sample.jsonl",
              EXAMPLES / "alpaca_eval_sample.json", SHARED_DATA / "llamafactory" / "alpaca_en_demo.json",
              SHARED_DATA / "llamafactory" / "alpaca_zh_demo.json", SHARED_DATA / "belle" / "eval_set.json",
              SHARED_DATA / "alpaca_eval" / "alpaca_eval_outputs.json", SHARED_DATA / "self_instruct" / "seed_tasks.jsonl"]


@pytest.mark.parametrize("path", CLEAN_SETS, ids=lambda p: p.name)
def test_clean_real_sets_flag_at_most_three_percent(path):
    if not path.exists():
        pytest.skip(f"{path} is absent")
    found, summary = check(path)
    flagged = {f["record_id"] for f in found if f["record_id"] is not None}
    assert len(flagged) <= 0.03 * summary["answers"]


def test_cli_reports_each_variants_share(tmp_path):
    pairs = [(f"Tell me about {t}.", f"Details on {t} are on our website.") for t in TOPICS * 2]
    pairs.append(("And the shop?", "The shop has a web site too."))
    proc, report = audit_json(tmp_path, str(write(tmp_path, pairs)), "--only", "consistency", "--no-html")
    assert proc.returncode == 0, proc.stderr
    assert lines_for(report, "consistency.terminology") == [25]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "consistency")
    assert {(v["variant"], v["records"]) for v in summary["variants"] if v["group"] == "website"} == {("website", 24),
                                                                                                        ("web site", 1)}


def test_batches_do_not_change_the_findings(tmp_path):
    pairs = [(f"Tell me about {t}.", f"Details on {t} are on our website, by email.") for t in TOPICS * 4]
    pairs[5], pairs[40] = ("Shop?", "See the web site."), ("Mail?", "Send an e-mail.")
    path = write(tmp_path, pairs)

    def rows(batch_records: int) -> tuple[list, dict]:
        with Audit(path, build_config(only=["consistency"]), batch_records=batch_records) as run:
            return (sorted(map(str, run.findings_frame().to_dicts())),
                    next(f.summary for f in run.report.families if f.family == "consistency"))

    assert rows(7) == rows(10_000)
    assert len(rows(7)[0]) == 2
