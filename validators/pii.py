"""pii.*: personal data and secrets in prompts and responses, found by pattern plus checksum, redacted by `datakit fix`.

One detector list (`find_pii`) serves both the check and the repair, so `repair` redacts exactly the
spans `check` flags. Every detector pairs a pattern with a validation (checksum, Luhn, calendar date,
entropy, placeholder lists) because the bare pattern alone flags prices, years, hashes and examples.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal

import polars as pl

from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext

E, W = Severity.error, Severity.warning

PLACEHOLDERS = {
    "pii.email": "[EMAIL]",
    "pii.phone": "[PHONE]",
    "pii.cn_id": "[CN_ID]",
    "pii.credit_card": "[CREDIT_CARD]",
    "pii.ip_address": "[IP_ADDRESS]",
    "pii.api_key": "[API_KEY]",
    "pii.private_key": "[PRIVATE_KEY]",
}
SECRETS = {"pii.api_key", "pii.private_key"}


@dataclass(frozen=True)
class Hit:
    """One detected value: its code, its span in the text, and a label (the key provider, if any)."""

    code: str
    start: int
    end: int
    value: str
    label: str = ""


# --- private keys -------------------------------------------------------------------------------------

# A whole block up to its END line, or (truncated) the run of key material after the header; `\n` as
# written inside a string literal in code counts as a line break.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:(?P<body>[^\x00]*?)-----END \1-----|(?P<open>(?:[A-Za-z0-9+/=\r\n]|\\[nrt])*))")
_KEY_BODY = re.compile(r"(?:[A-Za-z0-9+/=\s]|\\[nrt]|(?:Proc-Type|DEK-Info|Comment|Version):[^\n\\]*)*")


def _private_key(m: re.Match) -> str | None:
    """A header alone (code that parses key files, '...' in docs) is no secret: the body must be key material."""
    body = m.group("body") if m.group("body") is not None else m.group("open")
    if not _KEY_BODY.fullmatch(body):
        return None  # code between a BEGIN and an END string, not a key
    return "" if len(re.findall(r"[A-Za-z0-9+/]", body)) >= 40 else None


# --- API keys and tokens ------------------------------------------------------------------------------

_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("Anthropic", r"sk-ant-[A-Za-z0-9]+-[A-Za-z0-9_-]{20,}"),
    ("OpenAI", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("Stripe", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("GitHub", r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"),
    ("AWS", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    ("Slack", r"xox[baprs]-[A-Za-z0-9-]{10,}"),
    ("Google", r"AIza[0-9A-Za-z_-]{35}"),
    ("Hugging Face", r"hf_[A-Za-z0-9]{30,}"),
    ("GitLab", r"glpat-[A-Za-z0-9_-]{20,}"),
)
_PROVIDER_KEY = re.compile(
    r"(?<![A-Za-z0-9_-])(?:" + "|".join(f"(?P<p{i}>{p})" for i, (_, p) in enumerate(_PROVIDERS)) + r")(?![A-Za-z0-9_-])")
# Documentation keys (AWS's AKIAIOSFODNN7EXAMPLE, "sk-your-key-here") are not secrets.
_PLACEHOLDER_WORDS = re.compile(r"(?i)example|your|xxxx|placeholder|redacted|dummy|fake|here|insert|replace|sample")
# A generic token counts only next to a word that says it is a credential (gitleaks' generic rule):
# hashes, base64 images and identifiers in code are long and random-looking too, but are not called keys.
# Keyword and key on one line: a repair, which sees one field at a time, then redacts exactly what was flagged.
_GENERIC_KEY = re.compile(
    r"(?i:api[_-]?key|secret|token|passw(?:or)?d|pwd|auth(?:orization)?|credential|access[_-]?key|bearer)"
    r"[\"' \t]*[:=]?[\"' \t]*(?:bearer[ \t]+|token[ \t]+)?"
    r"(?P<key>(?<![A-Za-z0-9+/_.-])[A-Za-z0-9+/=_.-]{20,200}(?![A-Za-z0-9+/=_-]))")


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def _min_entropy(length: int) -> float:
    """Bits per character a random key of this length reaches: ~1st percentile of random base62 strings
    (4.0 at 32 characters, 4.7 at 64); English identifiers and repeated patterns stay below."""
    return 0.7 * math.log2(min(length, 128)) + 0.5


def _provider_key(m: re.Match) -> str | None:
    value = m.group()
    provider = next(name for i, (name, _) in enumerate(_PROVIDERS) if m.group(f"p{i}"))
    if _PLACEHOLDER_WORDS.search(value) or _entropy(value) < 3.0 or not re.search(r"\d", value):
        return None  # placeholders and hyphenated words (sk-learn-...) are not keys
    if provider != "Slack" and not re.search(r"[A-Z]", value):
        return None  # every provider but Slack issues mixed-case base62 keys
    return provider


def _generic_key(m: re.Match) -> str | None:
    key = m.group("key").rstrip(".=")
    if len(key) < 20 or _PLACEHOLDER_WORDS.search(key) or re.fullmatch(r"[0-9a-fA-F-]+", key):
        return None  # placeholders; hex is a hash or a UUID far more often than a key
    if not (re.search(r"\d", key) and re.search(r"[A-Za-z]", key)) or key.count("/") >= 2:
        return None  # a word or a path
    return "generic" if _entropy(key) >= _min_entropy(len(key)) else None


# --- personal data ------------------------------------------------------------------------------------

_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """GB 11643 resident ID: a real calendar birth date and the ISO 7064 MOD 11-2 check character."""
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS))
    return "10X98765432"[total % 11] == number[17].upper()


def _cn_id(m: re.Match) -> str | None:
    return "" if cn_id_valid(m.group()) else None


_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d]|[.,]\d)")
# Published test numbers (Visa, Mastercard, Amex, Discover, JCB, UnionPay test cards) are in tutorials, not wallets.
_TEST_CARDS = {"4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556", "5555555555554444",
               "5105105105105100", "2223003122003222", "378282246310005", "371449635398431", "6011111111111117",
               "6011000990139424", "3530111333300000", "3566002020360505", "6200000000000005", "4222222222222"}
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|[245])|35")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(m: re.Match) -> str | None:
    raw = m.group()
    seps = set(re.findall(r"[ -]", raw))
    digits = re.sub(r"[ -]", "", raw)
    if len(seps) > 1 or not 13 <= len(digits) <= 19 or digits in _TEST_CARDS:
        return None
    if not _CARD_PREFIX.match(digits) or len(set(digits)) < 3:
        return None
    return "" if luhn_valid(digits) else None


# ASCII-only boundaries: Chinese text runs straight into an address (邮箱是a@b.cn。), and `\w` would block it.
# Followed by ':' it is an ssh remote (git@github.com:user/repo.git), not a mailbox.
_EMAIL = re.compile(r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                    r"(?P<domain>(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})(?![A-Za-z0-9_@:-]|\.[A-Za-z])")
# RFC 2606/6761 reserved names and the domains examples are written with; file names like icon@2x.png.
_EXAMPLE_DOMAIN = re.compile(
    r"(?i)(?:^|\.)(?:example[\w-]*|your[\w-]*|my(?:domain|company|site|website|email)|domain|email|company|test|sample|"
    r"website|acme)\.[a-z]+$|\.(?:test|invalid|localhost|example|local|png|jpe?g|gif|svg|webp)$")


def _email(m: re.Match) -> str | None:
    return None if _EXAMPLE_DOMAIN.search(m.group("domain")) else ""


# Numbers next to a currency sign or unit are prices and amounts, not phone numbers.
_NOT_BEFORE = r"(?<![0-9A-Za-z_.,+\-/$¥￥€£#])"
_NOT_AFTER = r"(?![0-9A-Za-z_]|[.,-]\d|\s*(?:元|块|美元|人民币|%|yuan|dollars|USD|RMB|CNY))"
_PHONE = re.compile(
    _NOT_BEFORE + r"(?:"
    r"(?P<intl>\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5})"  # E.164-ish: +country code, 8-15 digits in all
    r"|(?P<cn>(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2})"  # Chinese mobile 1[3-9]xxxxxxxxx
    r"|(?P<nanp>(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4})"  # North American (555) 123-4567 / 555-123-4567
    r")" + _NOT_AFTER)
_FAKE_DIGITS = re.compile(r"1234567|7654321|(\d)\1{5}")


def _phone(m: re.Match) -> str | None:
    """Placeholders are not anyone's number: 123-456-7890, 13812345678, 000000, and North America's 555."""
    digits = re.sub(r"\D", "", m.group())
    if m.group("intl") and not 8 <= len(digits) <= 15:
        return None
    if _FAKE_DIGITS.search(digits):
        return None
    north_american = m.group("nanp") or (m.group("intl") and digits.startswith("1") and len(digits) == 11)
    return None if north_american and "555" in (digits[-10:-7], digits[-7:-4]) else ""


_IPV4 = re.compile(r"(?<![A-Za-z0-9_.])(?:\d{1,3}\.){3}\d{1,3}(?![A-Za-z0-9_]|\.\d)")
_IPV6 = re.compile(r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![A-Za-z0-9_:])")
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|version|ver\.?|release|build|版本|python|node|java|chrome|firefox)\s*[:=]?\s*$")
# Public resolvers everybody configures are infrastructure, not anyone's address.
_PUBLIC_RESOLVERS = {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222",
                     "208.67.220.220", "114.114.114.114", "223.5.5.5", "223.6.6.6", "180.76.76.76", "119.29.29.29"}


def _ip(m: re.Match) -> str | None:
    """Only global addresses: private, loopback and documentation ranges (RFC 5737) identify nobody."""
    value = m.group()
    if value in _PUBLIC_RESOLVERS or _VERSION_BEFORE.search(m.string[max(0, m.start() - 12):m.start()]):
        return None
    if ":" in value and (len([g for g in value.split(":") if g]) < 3 or ("::" not in value and value.count(":") != 7)):
        return None  # times (12:30:45), MAC addresses and C++ scopes are not IPv6 addresses
    if ":" not in value and all(len(o) == 1 for o in value.split(".")):
        return None  # 1.2.3.4 is a section or version number far more often than an address
    try:
        return "" if ipaddress.ip_address(value).is_global else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Detector:
    """A pattern, its validation (None rejects the match, else a label), and a cheap Rust-regex `hint` that every
    text the pattern can match contains: polars tests the hints on whole columns, Python runs only what they allow."""

    code: str
    pattern: re.Pattern
    validate: Callable[[re.Match], str | None]
    hint: str


# Order is priority: a span claimed by an earlier detector is not reported again by a later one
# (a UnionPay-looking resident ID is an ID; the digits inside a key are not a phone number).
DETECTORS: tuple[Detector, ...] = (
    Detector("pii.private_key", _PRIVATE_KEY, _private_key, r"-----BEGIN"),
    Detector("pii.api_key", _PROVIDER_KEY, _provider_key,
             r"sk-|[sr]k_(?:live|test)_|gh[pousr]_|github_pat_|AKIA|ASIA|xox[baprs]-|AIza|hf_|glpat-"),
    Detector("pii.api_key", _GENERIC_KEY, _generic_key,
             r"(?i)api[_-]?key|secret|token|passw(?:or)?d|pwd|auth|credential|access[_-]?key|bearer"),
    Detector("pii.cn_id", _CN_ID, _cn_id, r"\d{17}[\dXx]"),
    Detector("pii.credit_card", _CARD, _card, r"\d(?:[ -]?\d){12}"),
    Detector("pii.email", _EMAIL, _email, r"@[A-Za-z0-9-]+\."),
    Detector("pii.ip_address", _IPV4, _ip, r"\d\.\d{1,3}\.\d{1,3}\.\d"),
    Detector("pii.ip_address", _IPV6, _ip, r":[0-9A-Fa-f]{0,4}:"),
    Detector("pii.phone", _PHONE, _phone, r"\+\d|1[3-9]\d[ -]?\d{4}|\d{3}[-.]\d{4}"),
)


def find_pii(text: str, detectors: Sequence[Detector] = DETECTORS) -> list[Hit]:
    """Every validated hit in `text`, by position, without overlaps (the earlier detector wins)."""
    hits: list[Hit] = []
    for d in detectors:
        for m in d.pattern.finditer(text):
            key = m.groupdict().get("key")
            start, end = (m.start("key"), m.start("key") + len(key.rstrip(".="))) if key else m.span()
            if any(h.start < end and start < h.end for h in hits):
                continue
            label = d.validate(m)
            if label is not None:
                hits.append(Hit(d.code, start, end, text[start:end], label))
    return sorted(hits, key=lambda h: h.start)


def redact(text: str) -> str:
    """`text` with every hit replaced by its typed placeholder, until nothing is left to flag (idempotent).

    Placeholders match no detector. One pass redacts exactly what `find_pii` flags; a second is needed
    only when a value was hidden by its neighbour (a number glued to a key: `…4a+44 20 7946 0958`) and
    becomes a hit once the neighbour is a placeholder.
    """
    for _ in range(8):
        hits = find_pii(text)
        if not hits:
            break
        out, last = [], 0
        for h in hits:
            out += [text[last:h.start], PLACEHOLDERS[h.code]]
            last = h.end
        text = "".join(out) + text[last:]
    return text


def mask(hit: Hit) -> str:
    """What a report may show of a hit: enough to find it, never the whole value."""
    v = hit.value
    if hit.code == "pii.private_key":
        return v[:v.index("-----", 5) + 5] + f"…({len(v)} chars)"
    if hit.code == "pii.email":
        local, domain = v.split("@", 1)
        return f"{local[:1]}…@{domain}"
    if hit.code == "pii.credit_card":
        return f"…{re.sub(r'[ -]', '', v)[-4:]} ({len(re.sub(r'[ -]', '', v))} digits)"
    if hit.code == "pii.ip_address":
        sep = ":" if ":" in v else "."
        return sep.join(v.split(sep)[:2]) + f"{sep}…"
    if hit.code == "pii.phone":
        return f"{v[:4]}…{v[-2:]}"
    return f"{v[:5]}…({len(v)} chars)"


_WHAT = {
    "pii.email": ("an email address", "personal data the model can memorise and repeat to anyone"),
    "pii.phone": ("a phone number", "personal data the model can memorise and repeat to anyone"),
    "pii.cn_id": ("a Chinese resident ID number with a valid checksum",
                  "sensitive personal information (PIPL) that identifies one person for life"),
    "pii.credit_card": ("a payment card number that passes the Luhn check", "financial data usable for fraud"),
    "pii.ip_address": ("a public IP address", "it can locate a person or expose infrastructure"),
    "pii.api_key": ("an API key or token", "a live credential that grants access to whoever reads it"),
    "pii.private_key": ("a private key", "a live credential that grants access to whoever reads it"),
}


class PiiRules(Rule):
    family: ClassVar[str] = "pii"
    needs: ClassVar[tuple[str, ...]] = ()
    # `fix` states the default action (pii.action = "redact"); `fix_for` gives the configured one.
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("pii.email", W, "Email addresses in training data are memorised and regurgitated to other users.",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.phone", W, "Phone numbers (international, Chinese mobile, North American) are personal data the model can leak.",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.cn_id", E, "A checksum-valid Chinese resident ID is sensitive personal information under PIPL.",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.credit_card", E, "A Luhn-valid payment card number is financial data usable for fraud (PCI DSS).",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.ip_address", W, "Public IP addresses can locate a person or expose infrastructure.",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.api_key", E, "API keys and tokens in data are exposed credentials; a model trained on them can emit them.",
                 "pii.action = redact", fix="repair"),
        RuleCode("pii.private_key", E, "A private key in data is an exposed credential; revoke it and remove it.",
                 "pii.action = redact", fix="repair"),
    )

    def check(self, batch: Dataset, ctx: RuleContext) -> pl.DataFrame:
        action = ctx.config.pii.action
        found: list[dict] = []
        for field in ("prompt", "response"):
            text = pl.col(field).fill_null("")
            hinted = batch.valid.select("id", "source", "line", text, *(text.str.contains(d.hint).alias(f"hint{i}")
                                                                         for i, d in enumerate(DETECTORS)))
            rows = hinted.filter(pl.any_horizontal(pl.col("^hint\\d+$")))
            for rid, source, line, value, *hints in rows.iter_rows():
                by_code: dict[str, list[Hit]] = {}
                for h in find_pii(value, [d for d, on in zip(DETECTORS, hints) if on]):
                    by_code.setdefault(h.code, []).append(h)
                for code, hits in by_code.items():
                    found.append(self._finding(code, hits, field, action) | {"source": source, "line": line, "record_id": rid})
        return findings_frame(sorted(found, key=lambda f: (f["record_id"], f["field"], f["rule"])))

    def _finding(self, code: str, hits: list[Hit], field: str, action: str) -> dict:
        what, why = _WHAT[code]
        n = len(hits)
        shown = ", ".join(dict.fromkeys(mask(h) for h in hits[:3]))
        todo = (f"`datakit fix` replaces it with {PLACEHOLDERS[code]}" if action == "redact"
                else "`datakit fix` moves the record to the rejected file (pii.action = reject)")
        if code in SECRETS:
            todo += "; revoke the credential, it is exposed wherever this file has been"
        labels = sorted({h.label for h in hits if h.label})
        detail = f"{n} match{'es' if n > 1 else ''}" + (f"; provider: {', '.join(labels)}" if labels else "")
        severity = next(c.severity for c in self.codes if c.code == code)
        return {"rule": code, "severity": severity.value, "field": field, "excerpt": shown, "detail": detail,
                "template": "{} holds " + what + "{}: " + why + ". " + todo + ".",
                "values": [field, f" ({n} in all)" if n > 1 else ""]}

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        """What `datakit fix` will do with what this family found (the counts are in the rule results)."""
        action = ctx.config.pii.action
        return empty_findings(), {"action": action, "placeholders": PLACEHOLDERS if action == "redact" else {}}

    def repair(self, text: str, ctx: RuleContext) -> str:
        return redact(text)

    def fix_for(self, code: RuleCode, ctx: RuleContext) -> Literal["repair", "drop"] | None:
        """The configured fix: redact in place (the default), or drop the record when pii.action = "reject"."""
        return "drop" if ctx.config.pii.action == "reject" else code.fix
