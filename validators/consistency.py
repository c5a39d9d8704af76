"""consistency.*: do the answers speak with one voice: one register (您 or 你, plain or slang, emoji or none) and one
spelling of each term (email or e-mail, 登录 or 登陆, colour or color) across the dataset ("一致性: 风格统一、术语统一").

Per record, `state` keeps only the codes of the variants its answer uses (and whether it has English or Chinese text
at all); `finish` counts them, and a record using a variant that few answers use, where another dominates, is flagged.
Code blocks, inline code and URLs are left out: an identifier `email` or a host `wifi.example` is not a word choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from schemas.config import ConsistencyConfig
from schemas.dataset import Dataset
from schemas.findings import Severity, empty_findings, findings_frame
from validators.base import Rule, RuleCode, RuleContext, code_info, concat_findings, flag, message

I, W = Severity.info, Severity.warning
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"

# Terms with more than one spelling in use. Each variant lists its spellings, matched case-insensitively (Latin ones as
# whole words); a spelling under None is matched so that it shadows a shorter one (迷你 "mini" is not the pronoun 你)
# and is then ignored. `ConsistencyConfig.terms` adds groups or replaces one of the same name.
TERMS: dict[str, dict[str | None, list[str]]] = {
    "email": {"email": ["email", "emails", "emailed", "emailing"], "e-mail": ["e-mail", "e-mails", "e-mailed", "e-mailing"]},
    "Wi-Fi": {"Wi-Fi": ["wi-fi"], "WiFi": ["wifi"]},
    "online": {"online": ["online"], "on-line": ["on-line"]},
    "website": {"website": ["website", "websites"], "web site": ["web site", "web sites"]},
    "e-commerce": {"e-commerce": ["e-commerce"], "ecommerce": ["ecommerce"]},
    "dataset": {"dataset": ["dataset", "datasets"], "data set": ["data set", "data sets"]},
    "OK": {"OK": ["ok"], "okay": ["okay"]},
    "US/UK spelling": {
        "American spelling": ["color", "colors", "colored", "favorite", "favorites", "behavior", "behaviors", "organize", "organized",
                     "organizes", "organizing", "organization", "organizations", "realize", "realized", "realizes",
                     "analyze", "analyzed", "analyzing", "recognize", "recognized", "recognizes", "center",
                     "centers", "centered", "traveling", "traveled", "traveler", "labeled", "labeling", "modeling",
                     "theater", "defense", "catalog", "neighbor", "neighbors", "neighborhood", "humor", "flavor",
                     "labor", "honor", "optimize", "optimized", "optimization", "prioritize", "summarize", "summarized",
                     "apologize", "emphasize"],
        "British spelling": ["colour", "colours", "coloured", "favourite", "favourites", "behaviour", "behaviours", "organise",
                    "organised", "organises", "organising", "organisation", "organisations", "realise", "realised",
                    "realises", "analyse", "analysed", "analysing", "recognise", "recognised", "recognises",
                    "centre", "centres", "centred", "travelling", "travelled", "traveller", "labelled", "labelling",
                    "modelling", "theatre", "defence", "catalogue", "neighbour", "neighbours", "neighbourhood", "humour",
                    "flavour", "labour", "honour", "optimise", "optimised", "optimisation", "prioritise", "summarise",
                    "summarised", "apologise", "emphasise"],
    },
    "登录": {"登录": ["登录"], "登陆": ["登陆"]},
    "账号": {"账号": ["账号", "账户"], "帐号": ["帐号", "帐户"]},
    "mainland/Taiwan terms": {
        "mainland": ["软件", "网络", "打印", "屏幕", "内存", "鼠标", "程序员", "硬盘", "服务器"],
        "Taiwan": ["软体", "网路", "列印", "萤幕", "记忆体", "滑鼠", "程式设计师", "硬碟", "伺服器"],
    },
}

# Register: how the answers address and talk to the user. A one-sided group ("colloquial") has no spelling for its
# other side: the other side is every answer in that language without one of the markers.
REGISTER: dict[str, dict[str | None, list[str]]] = {
    "您/你": {"您 (formal)": ["您", "您们"], "你 (informal)": ["你", "你们"], None: ["迷你"]},
    "colloquial (English)": {"colloquial": ["gonna", "wanna", "gotta", "kinda", "sorta", "lol", "lmao", "omg", "btw", "tbh",
                                            "imho", "yeah", "yep", "nope", "dude", "y'all", "ain't", "thx", "pls", "plz"]},
    "colloquial (Chinese)": {"colloquial": ["哈哈", "嘿嘿", "呵呵", "嘻嘻", "咋", "啥", "木有", "酱紫", "神马", "肿么", "么么哒",
                                            "亲亲", "嗯嗯", "卧槽", "牛逼", "666"]},
}
EMOJI = r"[\x{1F300}-\x{1FAFF}\x{2600}-\x{27BF}\x{1F1E6}-\x{1F1FF}]"  # pictographs, symbols, dingbats, flags
ONE_SIDED = {"colloquial (English)": ("plain", "english"), "colloquial (Chinese)": ("plain", "chinese"),
             "emoji use": ("no emoji", "any")}
# Prompts that ask for a casual register (a tweet, a dialogue, a song, emoji): their answers' register is the task's.
WORD_EDGE = r"(?-u:\b)"  # an ASCII word boundary: "Instagram标题" ends a word where Unicode's \b sees none
CASUAL = (rf"(?i){WORD_EDGE}(?:tweets?|twitter|instagram|facebook|tiktok|social media|captions?|emojis?|dialog(?:ue)?s?|conversations?|"
          r"chat|text messages?|stor(?:y|ies)|poems?|songs?|lyrics|rap|script|jokes?|casual|informal|slang|role-?play|"
          rf"characters?){WORD_EDGE}|对话|故事|诗|歌词|推文|微博|朋友圈|社交媒体|笑话|幽默|口语|表情|剧本|聊天|段子|扮演")
QUOTED = r'"[^"\n]{1,200}"|“[^”\n]{1,200}”|「[^」\n]{1,200}」|『[^』\n]{1,200}』'  # quotations and titles


@dataclass(frozen=True)
class Variant:
    code: int
    group: str
    name: str
    kind: str  # "terminology" | "register"


@dataclass(frozen=True)
class Table:
    """The variant table of one audit: variants by code, and each spelling (lower-cased) to its code (-1: ignored)."""

    variants: tuple[Variant, ...]
    spellings: dict[str, int]

    @classmethod
    def of(cls, cfg: ConsistencyConfig) -> Table:
        groups = [(g, v, "terminology") for g, v in (TERMS | cfg.terms).items()]
        if cfg.check_register:
            groups += [(g, v, "register") for g, v in REGISTER.items()] + [("emoji use", {"emoji": []}, "register")]
        variants, spellings = [], {}
        for group, table, kind in groups:
            for name, words in table.items():
                code = -1
                if name is not None:
                    code = len(variants)
                    variants.append(Variant(code, group, name, kind))
                for word in words:
                    spellings.setdefault(word.lower(), code)
        return cls(tuple(variants), spellings)

    def pattern(self) -> str:
        """One alternation of every spelling, longest first (迷你 before 你); Latin spellings as whole words."""
        words = sorted(self.spellings, key=lambda w: (-len(w), w))
        latin = [_escape(w) for w in words if not _is_cjk(w)]
        cjk = [_escape(w) for w in words if _is_cjk(w)]
        parts = ([rf"{WORD_EDGE}(?:{'|'.join(latin)}){WORD_EDGE}"] if latin else []) + ([f"(?:{'|'.join(cjk)})"] if cjk else [])
        return "(?i)" + "|".join(parts) if parts else r"[^\s\S]"


def _codes(table: Table, text: pl.Expr) -> pl.Expr:
    """The codes of the variants a text uses (emoji included), unique; spellings shadowing others are dropped."""
    words = text.str.extract_all(table.pattern()).list.eval(
        pl.element().str.to_lowercase().str.replace_all(r"\s+", " ").replace_strict(table.spellings, default=-1,
                                                                                      return_dtype=pl.Int16))
    emoji = next((v.code for v in table.variants if v.group == "emoji use"), None)
    if emoji is not None:
        words = pl.concat_list(words, pl.when(text.str.contains(EMOJI)).then(pl.lit([emoji], pl.List(pl.Int16)))
                               .otherwise(pl.lit([], pl.List(pl.Int16))))
    return words.list.filter(pl.element() >= 0).list.unique()


def _is_cjk(word: str) -> bool:
    return any("\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" for ch in word)


def _escape(word: str) -> str:
    return "".join(f"\\{ch}" if not ch.isalnum() and ch != " " else ch for ch in word).replace(" ", r"\s+")


def prose(text: pl.Expr) -> pl.Expr:
    """The text without fenced or inline code, URLs and quoted spans: identifiers, titles and quotations are not the
    answer's own word choices."""
    return (text.fill_null("").str.replace_all(r"(?s)```.*?(?:```|$)", " ").str.replace_all(r"`[^`\n]*`", " ")
            .str.replace_all(r"(?i)\b(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.]+", " ")
            .str.replace_all(QUOTED, " "))


class ConsistencyRules(Rule):
    family: ClassVar[str] = "consistency"
    needs: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[RuleCode, ...]] = (
        RuleCode("consistency.terminology", W, "One term spelt two ways (email/e-mail, 登录/登陆, colour/color) across the "
                 "answers teaches the model both; the rare spelling is usually the one to change.",
                 "minority_share = 0.2 where one variant dominates, min_records = 10"),
        RuleCode("consistency.register", I, "Answers that address the user differently (您 vs 你) or drop into slang or emoji "
                 "where the rest do not make the model's tone unpredictable.", "minority_share = 0.2, min_records = 10"),
        RuleCode("consistency.mixed", I, "No variant dominates: the answers are split between two spellings or registers, "
                 "so there is no house style for the model to learn.", "second variant on at least minority_share"),
    )

    def state(self, batch: Dataset, found: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
        """Per valid record: the codes of the variants its answer uses, and which languages it has enough text in.

        A spelling the prompt also uses is the user's wording, echoed; an answer to a prompt asking for a tweet, a
        dialogue or a song is judged on terminology only (its register is the task's)."""
        table = ctx.prepared("consistency.table", lambda: Table.of(ctx.config.consistency))
        register = [v.code for v in table.variants if v.kind == "register"]
        rows = batch.valid.select("id", "line", prose(pl.col("response")).alias("text"),
                                  pl.col("prompt").fill_null("").str.contains(CASUAL).alias("casual"),
                                  _codes(table, prose(pl.col("prompt"))).alias("asked"))
        codes = pl.col("code").list.set_difference("asked")
        codes = pl.when(pl.col("casual")).then(codes.list.filter(~pl.element().is_in(register))).otherwise(codes)
        plain = ~pl.col("casual")
        return rows.with_columns(_codes(table, pl.col("text")).alias("code")).select(
            "id", "line", codes.list.sort().alias("code"),
            (plain & pl.col("text").str.contains(r"[A-Za-z]{2,}\W+[A-Za-z]{2,}\W+[A-Za-z]{2,}")).alias("english"),
            (plain & pl.col("text").str.contains(r"\p{Han}{4}")).alias("chinese"),
            (plain & pl.col("text").str.contains(r"[\p{L}\p{N}]")).alias("any"))

    def finish(self, state: pl.LazyFrame | None, ctx: RuleContext) -> tuple[pl.DataFrame, dict]:
        cfg = ctx.config.consistency
        table = Table.of(cfg)
        if state is None:
            return empty_findings(), {"answers": 0, "variants": [], "records_flagged": 0}
        totals = state.select(pl.len().alias("answers"), pl.col("english").sum(), pl.col("chinese").sum(),
                              pl.col("any").sum()).collect(engine="streaming").row(0, named=True)
        used = dict(state.select(pl.col("code").explode().drop_nulls()).group_by("code").len()
                    .collect(engine="streaming").iter_rows())
        shares = _shares(table, used, totals, cfg.minority_share)
        minority = [s for s in shares if s["minority"] and s["users"] >= cfg.min_records]
        flagged = self._records(state, minority, ctx)
        mixed = [self._mixed(ctx, group, rows) for group, rows in _by_group(shares).items()
                 if rows[0]["users"] >= cfg.min_records and len(rows) > 1 and rows[1]["share"] >= cfg.minority_share]
        summary = {
            "answers": totals["answers"],
            "variants": [{"group": s["group"], "variant": s["variant"], "kind": s["kind"], "records": s["records"],
                          "share": s["share"], "minority": s["minority"] and s["users"] >= cfg.min_records} for s in shares],
            "records_flagged": flagged["record_id"].n_unique() if flagged.height else 0,
        }
        return concat_findings([flagged, findings_frame(mixed)]), summary

    def _records(self, state: pl.LazyFrame, minority: list[dict], ctx: RuleContext) -> pl.DataFrame:
        """One finding per record and minority variant it uses."""
        if not minority:
            return empty_findings()
        info = pl.DataFrame(minority).select(
            pl.col("code").cast(pl.Int16), "group", "variant", "kind", "records", "share", "dominant", "dominant_share")
        rows = (state.select("id", "line", "code").explode("code").join(info.lazy(), on="code", how="inner")
                .sort("id", "code").collect(engine="streaming").with_columns(ctx.source_of().alias("source")))
        detail = pl.format("{}: {} {} vs {} {}", pl.col("group"), pl.col("variant"), _pct(pl.col("share")),
                           pl.col("dominant"), _pct(pl.col("dominant_share")))
        terminology = message(
            "this answer writes '{}' ({}) where {} of the answers using the term write '{}' and only {} ({} records) '{}': "
            "the model learns both spellings. Write '{}' (or add your own spelling table under `consistency.terms`).",
            pl.col("variant"), pl.col("group"), _pct(pl.col("dominant_share")), pl.col("dominant"), _pct(pl.col("share")),
            pl.col("records"), pl.col("variant"), pl.col("dominant"))
        register = message(
            "this answer's register is '{}' ({}) where {} of the answers are '{}' and only {} ({} records) '{}': the tone "
            "the model learns changes from answer to answer. Rewrite it as the others are ('{}'), or set "
            "`consistency.check_register = false` if the mix is intended.",
            pl.col("variant"), pl.col("group"), _pct(pl.col("dominant_share")), pl.col("dominant"), _pct(pl.col("share")),
            pl.col("records"), pl.col("variant"), pl.col("dominant"))
        return concat_findings([
            flag(rows.filter(pl.col("kind") == "terminology"), code_info(self, "consistency.terminology"), terminology,
                 field="response", detail=detail),
            flag(rows.filter(pl.col("kind") == "register"), code_info(self, "consistency.register"), register,
                 field="response", detail=detail)])

    def _mixed(self, ctx: RuleContext, group: str, rows: list[dict]) -> dict:
        info = code_info(self, "consistency.mixed")
        split = ", ".join(f"'{r['variant']}' {r['share']:.0%} ({r['records']})" for r in rows)
        return {"rule": info.code, "severity": info.severity.value, "source": ctx.path, "line": None, "record_id": None,
                "field": "response", "detail": f"{group}: {split}",
                "message": f"the answers are split on {group}: {split}; no variant dominates, so the model learns no house "
                           "style. Pick one and rewrite the others (the records using each are listed by "
                           "`datakit audit --json` under consistency.variants)."}


def _shares(table: Table, used: dict[int, int], totals: dict, limit: float) -> list[dict]:
    """Every variant in use with its records, its share of the records using its group and the group's dominant
    variant; a variant under `limit` while another holds at least half is a minority. A one-sided group's other side
    is every answer in its language without a marker."""
    out = []
    for group in dict.fromkeys(v.group for v in table.variants):
        members = [v for v in table.variants if v.group == group]
        counts = {v.name: used.get(v.code, 0) for v in members}
        if not any(counts.values()):
            continue
        if group in ONE_SIDED:
            other, eligible = ONE_SIDED[group]
            counts[other] = max(0, totals[eligible] - sum(counts.values()))
        users = sum(counts.values())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        dominant, top = ranked[0]
        codes = {v.name: v.code for v in members}
        for name, count in ranked:
            if count:
                out.append({"group": group, "variant": name, "kind": members[0].kind, "records": count, "users": users,
                            "share": round(count / users, 4), "code": codes.get(name, -1), "dominant": dominant,
                            "dominant_share": round(top / users, 4),
                            "minority": name != dominant and name in codes and count / users < limit and top / users >= 0.5})
    return out


def _by_group(shares: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for s in shares:
        groups.setdefault(s["group"], []).append(s)
    return groups


def _pct(share: pl.Expr) -> pl.Expr:
    return pl.format("{}%", (share * 100).round(1))
