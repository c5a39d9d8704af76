"""language.*: records outside the dataset's main language(s), and answers in another language than the question.

The `language` measurement holds langdetect's answer for every prompt and response. Here a text's
language is only *judged* when that answer can be trusted:

- the text is long enough: `min_letters` letters outside code for alphabetic scripts, where langdetect
  confuses related languages on short texts; `min_cjk_chars` CJK characters, whose script pins the
  language down;
- at least half of its letters are outside code: langdetect reads code as some European language;
- it is mostly in one script (`SINGLE_SCRIPT`, a CJK character counting `CJK_WEIGHT` letters): a
  Chinese instruction to translate an English passage is neither Chinese nor English;
- the answer fits that script: langdetect calls ~10% of short Chinese texts Korean, and Chinese texts
  with some English or code in them Norwegian or Vietnamese (real BELLE and Alpaca-zh records), which
  a text without Hangul, or mostly in Han characters, cannot be.

Texts not judged count as "unknown" and are never flagged. One exception: a prompt too short to name its
language ("Explain X") still has a script, and a judged answer in another script (Chinese) is a mismatch.
"""
from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import numpy as np
import polars as pl

from schemas.config import LanguageConfig
from schemas.dataset import Dataset
from schemas.findings import Severity
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

W = Severity.warning
CJK_WEIGHT = 4  # a Chinese, Japanese or Korean character carries about as much as 4 letters of an alphabet
SINGLE_SCRIPT = 0.75  # share of a text's (weighted) letters its main script needs for the text to be judged
CODE = r"(?s)```.*?(?:```|$)|`[^`\n]*`"  # fenced and inline code (markdown)
# A prompt that asks for a translation or names a language: its answer may well be in another script.
NAMES_A_LANGUAGE = (r"(?i)translat|\b(english|chinese|mandarin|cantonese|japanese|korean|pinyin|romaji|hanzi|kanji)\b"
                    r"|翻译|翻譯|译成|译为|英文|英语|英語|中文|汉语|漢語|华语|普通话|日文|日语|韩文|韩语|拼音")
SCRIPT_NAMES = {"latin": "Latin", "cyrillic": "Cyrillic", "arabic": "Arabic", "cjk": "Chinese/Japanese/Korean",
                "other": "another"}
NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian",
    "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi", "ne": "Nepali", "nl": "Dutch",
    "no": "Norwegian", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sk": "Slovak", "sl": "Slovenian", "so": "Somali", "sq": "Albanian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "zh-cn": "Chinese (simplified)", "zh-tw": "Chinese (traditional)",
}
# The script each of langdetect's languages is written in; "other" covers the scripts only one or a few
# of them use (Greek, Hebrew, Thai, Devanagari and the other Indic scripts).
SCRIPTS = ("latin", "cyrillic", "arabic", "cjk", "other")
LANG_SCRIPT = {
    **dict.fromkeys(["af", "ca", "cs", "cy", "da", "de", "en", "es", "et", "fi", "fr", "hr", "hu", "id", "it", "lt", "lv", "nl", "no", "pl", "pt", "ro", "sk", "sl", "so", "sq", "sv", "sw", "tl", "tr", "vi"], "latin"),
    **dict.fromkeys(["bg", "mk", "ru", "uk"], "cyrillic"),
    **dict.fromkeys(["ar", "fa", "ur"], "arabic"),
    **dict.fromkeys(["zh-cn", "zh-tw", "ja", "ko"], "cjk"),
}


LETTERS = ("latin", "cyrillic", "arabic", "han", "kana", "hangul", "other")
SCRIPT_RANGES = {  # Unicode blocks of each script (its letters only count)
    "latin": [(0x41, 0x5A), (0x61, 0x7A), (0xAA, 0xAA), (0xBA, 0xBA), (0xC0, 0x2AF), (0x1E00, 0x1EFF), (0x2C60, 0x2C7F),
              (0xA720, 0xA7FF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)],
    "cyrillic": [(0x400, 0x52F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)],
    "arabic": [(0x600, 0x6FF), (0x750, 0x77F), (0x870, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)],
    "han": [(0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)],
    "kana": [(0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)],
    "hangul": [(0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)],
}


def name(code: str) -> str:
    return f"{NAMES.get(code, code)} ({code})"


def letter_counts(texts: pl.Series) -> pl.DataFrame:
    """Letters per script in each text (columns of `LETTERS`, and `letters` in all), counted on code points, a slice
    of texts at a time (each code point takes ~30 bytes while counted)."""
    parts = [_letter_counts(texts.slice(lo, _SLICE)) for lo in range(0, texts.len(), _SLICE)]
    return pl.concat(parts) if parts else _letter_counts(texts)


_SLICE = 2_000


def _letter_counts(texts: pl.Series) -> pl.DataFrame:
    joined = "".join(texts.fill_null("").to_list())
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64)
    owner = np.repeat(np.arange(texts.len()), texts.fill_null("").str.len_chars().to_numpy())
    table = _letter_table()
    cls = table[np.minimum(cp, table.size - 1)]
    beyond = cp >= table.size
    if beyond.any():  # outside the Basic Multilingual Plane: CJK extensions are Han, other letters "other"
        cls[beyond] = [LETTERS.index("han") + 1 if 0x20000 <= c <= 0x3FFFF else (len(LETTERS) if chr(c).isalpha() else 0)
                       for c in cp[beyond].tolist()]
    counts = np.bincount(owner * (len(LETTERS) + 1) + cls, minlength=texts.len() * (len(LETTERS) + 1))
    counts = counts.reshape(texts.len(), len(LETTERS) + 1)[:, 1:]
    return pl.DataFrame({**{k: counts[:, i] for i, k in enumerate(LETTERS)}, "letters": counts.sum(axis=1)})


@lru_cache(maxsize=1)
def _letter_table() -> np.ndarray:
    """Script class (1 + index in `LETTERS`; 0: not a letter) of every Basic Multilingual Plane character."""
    letter = np.array([chr(c).isalpha() for c in range(0x10000)])  # isalpha: Unicode category L*
    table = np.where(letter, len(LETTERS), 0)
    for script, ranges in SCRIPT_RANGES.items():
        for lo, hi in ranges:
            table[lo: hi + 1] = np.where(letter[lo: hi + 1], LETTERS.index(script) + 1, 0)
    return table


def _scripts(counts: str) -> tuple[pl.Expr, pl.Expr]:
    """The weighted letters per script (a list in `SCRIPTS` order) and the main script's name, from the struct
    column `counts`."""
    n = lambda k: pl.col(counts).struct.field(k)
    scripts = pl.concat_list([n("latin"), n("cyrillic"), n("arabic"), CJK_WEIGHT * (n("han") + n("kana") + n("hangul")),
                              n("other")])
    return scripts, scripts.list.arg_max().replace_strict(dict(enumerate(SCRIPTS)), return_dtype=pl.String)


def _clear(counts: str) -> pl.Expr:
    """Whether a text is mostly prose in one script: its letters outside code are at least half of all its letters
    and its main script holds `SINGLE_SCRIPT` of them."""
    scripts, _ = _scripts(counts)
    n = lambda k: pl.col(counts).struct.field(k)
    return (n("letters") > 0) & (scripts.list.max() >= SINGLE_SCRIPT * scripts.list.sum()) & (2 * n("letters") >= n("all_letters"))


def script_of(counts: str) -> pl.Expr:
    """The script a text is written in, however short, where it is mostly prose in one script; else null."""
    return pl.when(_clear(counts)).then(_scripts(counts)[1])


def judged(counts: str, lang: str, cfg: LanguageConfig) -> pl.Expr:
    """The language in column `lang` where the text's letter counts (struct column `counts`, outside code, and
    `all_letters`, code included) say it can be trusted; else null."""
    n = lambda k: pl.col(counts).struct.field(k)
    han, kana, hangul = n("han"), n("kana"), n("hangul")
    cjk = han + kana + hangul
    script = _scripts(counts)[1]
    code = pl.col(lang)
    fits = (pl.when(code == "ja").then((script == "cjk") & (kana > 0))
            .when(code == "ko").then((script == "cjk") & (hangul > 0))
            .when(code.str.starts_with("zh")).then((script == "cjk") & (han > 0) & (kana == 0) & (hangul == 0))
            .otherwise(code.replace_strict(LANG_SCRIPT, default="other", return_dtype=pl.String) == script))
    enough = pl.when(script == "cjk").then(cjk >= cfg.min_cjk_chars).otherwise(n("letters") >= cfg.min_letters)
    return pl.when(code.is_not_null() & enough & _clear(counts) & fits).then(code)


def _judge(batch: Dataset, cfg: LanguageConfig) -> pl.DataFrame:
    """Valid records with `p` and `r`, the judged prompt and response languages (null: not judged), `ps` and `rs`,
    their scripts however short (null: mixed or mostly code), whether the prompt names a language (`asks_language`),
    and whether each text holds anything but whitespace."""
    valid = batch.valid
    counts = {}
    for side in ("prompt", "response"):
        texts = valid[side].fill_null("")
        outside = letter_counts(texts.str.replace_all(CODE, " "))
        inside = letter_counts(texts.str.extract_all(CODE).list.join(""))["letters"]  # mostly empty: cheap
        counts[side] = outside.with_columns(all_letters=outside["letters"] + inside).to_struct(side + "_counts")
    said = lambda c: pl.col(c).fill_null("").str.contains(r"\S")
    return valid.select("id", "line", "prompt", "response", "prompt_lang", "response_lang").with_columns(
        *counts.values()).select("id", "line", said("prompt").alias("prompt_said"), said("response").alias("response_said"),
                                 judged("prompt_counts", "prompt_lang", cfg).alias("p"),
                                 judged("response_counts", "response_lang", cfg).alias("r"),
                                 script_of("prompt_counts").alias("ps"), script_of("response_counts").alias("rs"),
                                 pl.col("prompt").fill_null("").str.contains(NAMES_A_LANGUAGE).alias("asks_language"))


def main_languages(rows: pl.DataFrame, cfg: LanguageConfig) -> list[str]:
    """config.language.expected, else the languages of at least `min_share_for_main` of the judged responses (of
    the judged prompts when no response is judged, as in an eval set of questions)."""
    if cfg.expected:
        return list(cfg.expected)
    side = rows["r"].drop_nulls() if rows["r"].drop_nulls().len() else rows["p"].drop_nulls()
    if side.len() == 0:
        return []
    counts = side.value_counts(sort=True)
    return sorted(k for k, n in counts.iter_rows() if n / side.len() >= cfg.min_share_for_main)


def _outside(code: pl.Expr, main: list[str]) -> pl.Expr:
    """Judged and not among the main languages (none: nothing is outside); an expected 'zh' covers zh-cn and zh-tw."""
    if not main:
        return pl.lit(False)
    inside = pl.lit(False)
    for m in main:
        inside = inside | (code == m) | code.str.starts_with(m + "-")
    return code.is_not_null() & ~inside


def _base(code: pl.Expr) -> pl.Expr:
    """The language without its region: zh-cn and zh-tw are both Chinese to a reader."""
    return code.str.split("-").list.first()


class LanguageRules(Rule):
    family: ClassVar[str] = "language"
    needs: ClassVar[tuple[str, ...]] = ("language",)
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("language.off_language", W, "Records in another language than the rest teach the model to switch "
                 "language unprompted.", "expected = the dataset's languages on >= 20% of responses"),
        RuleCode("language.mismatch", W, "An answer in another language than its question teaches the model to reply in "
                 "the wrong language.", "texts under 50 letters or 4 CJK characters are not judged, except a prompt in "
                 "another script than its judged answer"),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        return _judge(batch, ctx.config.language)

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.language
        rows = state.collect(engine="streaming") if state is not None else pl.DataFrame(schema=_JUDGED)
        main = main_languages(rows, cfg)
        off, mismatch = _classify(rows.with_columns(ctx.source_of().alias("source")), main)
        name_p = pl.col("p").replace_strict(NAMES, default=pl.col("p"), return_dtype=pl.String)
        name_r = pl.col("r").replace_strict(NAMES, default=pl.col("r"), return_dtype=pl.String)
        found = concat_findings([
            flag(off, code_info(self, "language.off_language"),
                 message("{} is in {} ({}) while the dataset is in {}: records in another language teach the model to "
                         "switch language unprompted. Translate or drop it; if the language belongs, list it in "
                         "language.expected.", pl.col("side"),
                         pl.when(pl.col("side") == "response").then(name_r).otherwise(name_p),
                         pl.when(pl.col("side") == "response").then(pl.col("r")).otherwise(pl.col("p")),
                         ", ".join(name(m) for m in main)),
                 field=pl.col("side"),
                 detail=pl.format("prompt {}, response {}", pl.col("p").fill_null("unknown"), pl.col("r").fill_null("unknown"))),
            flag(mismatch, code_info(self, "language.mismatch"),
                 message("prompt is in {} but the response in {}: the model learns to answer in another language than "
                         "it is asked in. Expected for translation tasks; otherwise translate the answer or drop the record.",
                         _language_or_script(name_p, "p", "ps"), _language_or_script(name_r, "r", "rs")),
                 field="response", detail=pl.format("prompt {}, response {}", pl.coalesce("p", pl.col("ps") + " script"),
                                                    pl.coalesce("r", pl.col("rs") + " script"))),
        ])
        responses, prompts = _counts(rows, "r", "response_said"), _counts(rows, "p", "prompt_said")
        return found, {
            "languages": responses,
            "prompt_languages": prompts,
            "main": main,
            "expected": cfg.expected,
            "off_language": off.height,
            "mismatches": mismatch.height,
            "min_letters": cfg.min_letters,
            "names": {k: NAMES[k] for k in sorted({*responses, *prompts}) if k in NAMES},
            "detector": f"langdetect's profiles and seeded draws, seed {cfg.seed} (datakit.measure.language)",
        }


_JUDGED = {"id": pl.Int64, "line": pl.Int64, "prompt_said": pl.Boolean, "response_said": pl.Boolean, "p": pl.String,
           "r": pl.String, "ps": pl.String, "rs": pl.String, "asks_language": pl.Boolean}


def _language_or_script(language_name: pl.Expr, lang: str, script: str) -> pl.Expr:
    """The judged language's name, else the script of a text too short to name its language."""
    script_name = pl.col(script).replace_strict(SCRIPT_NAMES, default="another", return_dtype=pl.String)
    return pl.when(pl.col(lang).is_not_null()).then(language_name).otherwise(
        pl.format("{} script (too short to name the language)", script_name))


def _counts(rows: pl.DataFrame, lang: str, said: str) -> dict[str, int]:
    """Records per judged language, most first: "unknown" where the text was not judged, "(empty)" where there is none."""
    key = pl.when(pl.col(said)).then(pl.col(lang).fill_null("unknown")).otherwise(pl.lit("(empty)"))
    return dict(rows.select(key.alias("k"))["k"].value_counts(sort=True).iter_rows())


def _classify(rows: pl.DataFrame, main: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Off-language records (with the `side` found outside the main languages, the response's first) and
    mismatched ones (off-language records are not repeated): prompt and response judged in different languages, or
    a judged response to a prompt, however short, in another script ("Explain X" answered in Chinese: a script
    cannot be mistaken, so the prompt needs no letter minimum) unless the prompt asks for a translation or names a
    language. A short *response* in another script is left alone: it is usually a name, a label or a word asked about
    (real Alpaca-zh answers "IronyQueen_Sarah", "DelishDish")."""
    off_p, off_r = _outside(pl.col("p"), main), _outside(pl.col("r"), main)
    off = rows.filter(off_p | off_r).with_columns(
        pl.when(off_r).then(pl.lit("response")).otherwise(pl.lit("prompt")).alias("side"))
    both = pl.col("p").is_not_null() & pl.col("r").is_not_null() & (_base(pl.col("p")) != _base(pl.col("r")))
    scripts = (pl.col("r").is_not_null() & pl.col("ps").is_not_null() & (pl.col("ps") != pl.col("rs"))
               & ~pl.col("asks_language"))
    mismatch = rows.filter(~(off_p | off_r) & (both | scripts))
    return off, mismatch
