"""Audit configuration: one sub-model per rule family; every default says which rule it serves and why.

Plain data: passed to each rule as the few settings it uses (no global mutable argument object).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.patterns import check_pattern

# A user's regular expression: compiled and probed when the config is read (schemas.patterns), so one that would
# hang the audit is a config error naming its key and index.
UserPattern = Annotated[str, AfterValidator(check_pattern)]


def _usable_in_polars(pattern: str) -> str:
    """hygiene pre-selects records with polars' regex engine, which has no look-around and no back-references."""
    import polars as pl

    try:
        pl.Series([""]).str.contains(pattern)
    except pl.exceptions.ComputeError as e:
        why = next((ln for ln in str(e).splitlines() if ln.startswith("error:")), str(e).splitlines()[0])
        raise ValueError(f"pattern {pattern!r} is not a usable regular expression ({why.removeprefix('error: ')})") from None
    return pattern


MarkerPattern = Annotated[UserPattern, AfterValidator(_usable_in_polars)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormatConfig(_Section):
    require_assistant_last: bool = Field(
        True, description="format.not_ending_with_assistant: a conversation whose last turn is not the assistant's teaches nothing to answer.")
    allow_mixed_formats: bool = Field(
        False, description="format.mixed_formats: one file mixing record formats usually means two sources were concatenated by mistake.")


class EmptyConfig(_Section):
    check_instruction: bool = Field(True, description="empty.instruction: a record with no instruction trains the model to answer nothing.")


class LengthConfig(_Section):
    max_tokens: int = Field(
        2048, ge=1, description="length.too_long: records over the training max length are truncated or dropped by trainers (default 2048).")
    min_response_tokens: int = Field(
        3, ge=0, description="length.too_short: answers this short are rarely complete ('完整性', completeness).")
    tokenizer: str | None = Field(
        None, description="length.*: directory of a local Hugging Face tokenizer; default is tiktoken's cl100k encoding, bundled offline.")


class HygieneConfig(_Section):
    template_markers: list[MarkerPattern] = Field(
        default_factory=lambda: [
            r"###\s*(?:Instruction|Input|Response|Assistant|Human)\s*:",
            r"###\s*(?:指令|输入|回答|回复)\s*[:：]",
            r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id)\|>",
            r"\[/?INST\]",
        ],
        description="hygiene.template_marker: leftover prompt-template markers leak the template into what the model learns; "
        "`datakit fix` strips them.")
    placeholders: list[MarkerPattern] = Field(
        default_factory=lambda: [r"\{\{\s*\w+\s*\}\}"],
        description="hygiene.template_marker: unfilled placeholders such as {{name}} teach the model to say them; reported with "
        "the markers, but `datakit fix` cannot invent the value, so they are left for you to fill.")


class DuplicateConfig(_Section):
    check_conflicting_outputs: bool = Field(
        True, description="duplicate.conflicting_output: the same instruction with different answers teaches the model two truths.")


class NearDuplicateConfig(_Section):
    threshold: float = Field(0.8, gt=0, le=1, description="near_duplicate.cluster: estimated Jaccard similarity at or above which two records count as near-duplicates.")
    num_perm: int = Field(128, ge=16, description="near_duplicate.cluster: MinHash permutations; more is more precise and slower.")
    shingles: Literal["characters", "words"] = Field(
        "characters", description="near_duplicate.cluster: what texts are compared on. characters: every text as a "
        "sequence of characters (spaces dropped), char_ngram at a time, as Data-Juicer's MinHash deduplicator does; an "
        "English copy with 2 words edited in 60 keeps a Jaccard near 0.95. words (before 2026-12): space-separated text "
        "as word_ngram-word shingles, CJK text by characters; 2 edits in 60 words drop the Jaccard to about 0.7, so "
        "such copies were missed at threshold 0.8 (83% of the copies planted in 50K bench records found, against 99%).")
    word_ngram: int = Field(5, ge=1, description="near_duplicate.cluster: word shingle size for space-separated text "
                            "(shingles = words).")
    char_ngram: int = Field(
        5, ge=1, description="near_duplicate.cluster: character shingle size (every text with shingles = characters, CJK text "
        "with words); 5 characters span 2-3 Chinese words or about one English word.")
    seed: int = Field(1, description="near_duplicate.cluster: MinHash permutation seed; 1 is datasketch's default, so signatures equal datasketch.MinHash()'s.")
    scheme: Literal["affine32", "legacy"] = Field(
        "affine32", description="near_duplicate.cluster: datasketch's permutation scheme: affine32 (its default since 2.0: unbiased, faster) "
        "or legacy (mod 2^61-1, as datasketch < 2.0 computed it).")


class BalanceConfig(_Section):
    max_imbalance_ratio: float = Field(
        3.0, gt=1, description="balance.imbalanced: largest/smallest class above this is unbalanced (80/15/5 is; aim for roughly even shares).")
    min_per_class: int = Field(10, ge=1, description="balance.class_too_small: each class needs at least 10-100 samples to be learnt.")


class DiversityConfig(_Section):
    max_leading_share: float = Field(
        0.3, gt=0, le=1, description="diversity.leading_phrase: one opening phrase on more than 30% of prompts makes the model brittle to other phrasings.")
    leading_words: int = Field(
        2, ge=1, description="diversity.leading_phrase: how many leading words make a phrasing. Chinese and Japanese have no "
        "spaces: there it is that many characters, or a whole common opening (如何, 为什么, 请), so '如何...' is one phrasing.")
    min_distinct_2: float = Field(
        0.3, gt=0, le=1, description="diversity.low_distinct: share of distinct word pairs (distinct-2; a CJK character is a word) "
        "in a sample of prompts below which they repeat themselves. Varied real sets score 0.6-0.85 (AlpacaEval, BELLE, "
        "Alpaca zh/en, self-instruct seeds); FastChat's templated dummy conversations 0.05.")
    distinct_sample_tokens: int = Field(
        5000, ge=100, description="diversity.low_distinct: distinct-n falls as text grows, so it is measured on every k-th prompt, "
        "about this many tokens, to mean the same for 100 records as for 100,000.")
    max_template_share: float = Field(
        0.05, gt=0, le=1, description="diversity.repeated_template: share of prompts one fill-in template (quoted text, numbers "
        "and names masked) may cover. Real sets stay under 2%; templated ones reach 6-8% for a single template.")


class LanguageConfig(_Section):
    expected: list[str] | None = Field(
        None, description="language.off_language: langdetect codes the dataset should be in (en, zh-cn; 'zh' covers zh-cn and "
        "zh-tw); default is the dataset's own main language(s).")
    min_share_for_main: float = Field(
        0.2, gt=0, le=1, description="language.off_language: a language on at least this share of the judged responses is a main language.")
    min_letters: int = Field(
        50, ge=1, description="language.*: texts in an alphabetic script with fewer letters outside code are not judged. On real "
        "English prompts langdetect names another European language for 15% of texts under 30 letters, 2-3% at 30-50 and "
        "under 1% from 50 (AlpacaEval, Alpaca, FastChat, glaive, self-instruct).")
    min_cjk_chars: int = Field(
        4, ge=1, description="language.*: Chinese, Japanese and Korean texts with fewer CJK characters are not judged. Their script "
        "pins the language down (only Japanese has kana, only Korean Hangul), so short texts are reliable: on real Chinese "
        "texts of 3-9 characters langdetect's only other answer is Korean (10%), which a text without Hangul is not.")
    seed: int = Field(0, description="language.*: langdetect is randomised; a fixed seed makes it deterministic.")


class ConsistencyConfig(_Section):
    minority_share: float = Field(
        0.2, gt=0, lt=0.5, description="consistency.terminology, consistency.register: a variant used by fewer than this share "
        "of the answers that use its group, while another variant holds at least half, is flagged on each record using it; "
        "a second variant at or above it makes the group mixed (consistency.mixed).")
    min_records: int = Field(
        10, ge=2, description="consistency.*: answers that must use a group (a term, or a register marker) before its shares "
        "are judged: 1 of 3 says nothing about a house style.")
    check_register: bool = Field(
        True, description="consistency.register: judge the register too (您/你, slang, emoji), not only terminology.")
    terms: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="consistency.terminology: more terms and their spellings, added to the built-in "
        "table (validators/consistency.py TERMS; a term of the same name replaces it), e.g. "
        "{\"log in\": {\"log in\": [\"log in\"], \"login\": [\"login\"]}}. Spellings match case-insensitively, Latin ones "
        "as whole words.")


class CorrespondenceConfig(_Section):
    sample_prompts: int = Field(
        2000, ge=10, description="correspondence.*: other prompts each answer is compared with (every k-th prompt of the "
        "dataset, plus the records next to it, where a shifted column puts its true prompt).")
    min_relevance: float = Field(
        0.5, gt=0, le=1, description="correspondence.unrelated_answer: share of another prompt's weighted words (TF-IDF, "
        "words and CJK character pairs) found in the answer before that prompt counts as the answer's better match.")
    ratio: float = Field(
        3.0, gt=1, description="correspondence.unrelated_answer: how many times more of the other prompt than of its own the "
        "answer must contain to be flagged.")
    shifted_share: float = Field(
        0.2, gt=0, le=1, description="correspondence.columns_shifted: share of answers flagged (or of answers no closer to "
        "their own prompt than to others) above which the columns look shifted or shuffled.")
    score_model: str | None = Field(
        None, description="correspondence.high_ifd: a local causal LM folder (--score-model) that scores every answer's "
        "perplexity given its instruction and its IFD = loss(answer | instruction) / loss(answer) (Li et al., NAACL 2024); "
        "GPU when there is one, else CPU. Needs the train extra.")
    max_ifd: float = Field(
        1.0, gt=0, description="correspondence.high_ifd: IFD at or above which the instruction does not help predict the "
        "answer (1: no help at all).")

    keep_top_ifd: float | None = Field(
        None, gt=0, le=1, description="correspondence.*: `datakit fix --keep-top-ifd FRACTION` keeps this share of the "
        "records with IFD under max_ifd, the highest IFD first (the most instructive, as Li et al. select them), and rejects "
        "the rest and every record at or above max_ifd. Needs score_model.")

    @model_validator(mode="after")
    def _ranking_needs_scores(self) -> CorrespondenceConfig:
        if self.keep_top_ifd is not None and self.score_model is None:
            raise ValueError("keep_top_ifd ranks records by IFD, which needs a model: give --score-model DIR too")
        return self

    @field_validator("score_model")
    @classmethod
    def _model_folder(cls, value: str | None) -> str | None:
        from pathlib import Path

        if value is not None and not (Path(value) / "config.json").is_file():
            raise ValueError(f"{value} is not a model folder (no config.json in it); give a local causal LM saved with "
                             "save_pretrained")
        return value


# What an answer cites when it cites internal material by name (leakage.internal_patterns).
_INTERNAL_SOURCE = (r"(?:knowledge ?base|kb|wiki(?: page)?|doc(?:ument(?:ation)?)?s?|memo(?:randum)?s?|polic(?:y|ies)|"
                    r"reports?|guidelines?|handbook|manual|records?|database|portal|intranet|confluence(?: page)?|"
                    r"sharepoint(?: site)?|playbook|runbook|faq|spreadsheet|slide deck|deck)")


class LeakageConfig(_Section):
    against: list[str] = Field(default_factory=list, description="leakage.eval_*: eval/test files the training data must not contain.")
    ngram: int = Field(13, ge=3, description="leakage.eval_overlap: shared word n-gram length counted as contamination (13 as in GPT-3's decontamination).")
    cjk_ngram: int = Field(
        20, ge=3, description="leakage.eval_overlap: the same for Chinese/Japanese eval texts, in characters: about 1.5 characters "
        "carry what one English word does, so 20 characters match the 13-word evidence; 13 characters flag common phrases.")
    near_threshold: float = Field(0.8, gt=0, le=1, description="leakage.eval_near: MinHash Jaccard at or above which a training record near-copies an eval record.")
    answer_in_prompt_share: float = Field(
        0.8, gt=0, le=1, description="leakage.answer_in_prompt: share of the answer already present in the prompt above which the model learns to copy.")
    answer_run: int = Field(
        5, ge=1, description="leakage.answer_in_prompt: an answer token counts as copied when it sits in a run of this many tokens "
        "also in the prompt; single shared words are normal (a rewrite reuses its input's words, not its sentences).")
    answer_min_tokens: int = Field(
        5, ge=1, description="leakage.answer_in_prompt: answers shorter than this many tokens (words, or CJK characters) are not "
        "checked: 'Yes', '4' or a class label inside the prompt says nothing about copying.")
    internal_patterns: list[UserPattern] = Field(
        default_factory=lambda: [
            (r"(?i)\b(?:according to|per|see|as (?:stated|described|noted|outlined) in|refer to|based on|from|check) "
            r"(?:our|the company'?s|my company'?s|the team'?s) internal (?:doc(?:ument(?:ation)?)?s?|wiki|memos?|"
            r"polic(?:y|ies)|reports?|guidelines?|knowledge base|handbook|records?|data(?:base)?|systems?)\b"),
            (r"(?i)\b(?:(?:according to|per|as (?:stated|described|noted|outlined|mentioned|specified|documented|shown|listed|"
            r"explained) (?:in|by)|refer(?:ring)? to|see|based on|consult(?:ing)?|citing|cited in|sourced from|taken from) "
            r"(?:the |this |that )?internal " + _INTERNAL_SOURCE + r"\b(?! (?:obtained|seen|leaked|reviewed|published|released|"
            r"reported) by)|(?:the|our) internal " + _INTERNAL_SOURCE + r" (?:says|said|states|stated|shows|showed|notes|noted|"
            r"explains|indicates|describes|mentions|specifies|requires|lists|confirms|puts it)\b)"),
            (r"(?i:\b(?:for )?internal use only\b|\b(?:company|strictly|highly) confidential\b|"
            r"\bdo not (?:distribute|share) (?:externally|outside)\b)|\bCONFIDENTIAL\b"),
            r"(?i)\b(?:our|the company'?s) (?:internal )?(?:wiki|confluence|intranet|sharepoint)(?: page| site| space)?\b",
            r"(?:根据|参见|参考|详见|按照|依据|见)(?:我们|本公司|公司|我司|集团)?的?内部(?:文档|资料|文件|规定|制度|知识库|wiki|Wiki|系统|邮件)",
            (r"(?<![根依数证占])据(?:我们|本公司|公司|我司|集团)?的?内部(?:知识库|文档|资料|文件|手册|[Ww]iki)"
            r"|内部(?:知识库|文档|资料|文件|手册|[Ww]iki)(?:中|里|上)?(?:所述|所示|所说|所写|显示|记载|指出|提到|写道|表明)"),
            r"(?:内部|公司)机密|仅供内部(?:使用|参考|传阅)|请勿外传",
            (r"(?:(?<![A-Za-z])(?i:internal|confidential)|内部|机密|保密|绝密)"
            r"[^\s\"'<>|，。；！？、（）“”‘’《》【】,;!?()]{0,200}?\.(?i:docx?|xlsx?|pptx?|pdf)\b"),
            r"(?i)https?://(?:[\w-]+\.)*(?:intranet|internal)[\w-]*(?:\.[\w-]+)+|https?://(?:[\w-]+\.)+(?:corp|lan|intra|internal|intranet)\b(?!\.)",
            (r"(?<![\w/\\])(?:/home/|/Users/|[A-Za-z]:\\+Users\\+)(?!(?i:user(?:name)?|your[\w-]*|you|me|name|admin|ubuntu|runner|"
            r"root|example|test|guest|public|shared|default|<[^>]+>|\$\w+|%\w+%|\{[^}]+\})[/\\])[\w.-]+[/\\]"),
            r"(?i)\bsandbox:/mnt/data/|(?<![\w/])/mnt/data/[\w.-]+\.(?:csv|xlsx?|json|txt|pdf|png|docx?|zip)\b",
        ],
        description="leakage.internal_reference: answers that cite internal documents (ours or 'the internal wiki/knowledge "
        "base', 据内部文档, 内部知识库显示), name an office or PDF file in an internal or confidential folder or with such a name "
        "(confidential/salaries.xlsx, 内部/员工手册.docx), carry confidentiality markings, link intranet hosts or name a "
        "person's home directory (or ChatGPT's sandbox:/mnt/data) cannot be verified and may leak internal material. "
        "Python regular expressions, searched in responses. Bare words such as 'internal' or 'confidential' and system "
        "paths like /etc are not flagged: answers use them legitimately all the time.")


class SpellingConfig(_Section):
    check_prompts: bool = Field(
        True, description="spelling.prompt: list misspellings in prompts too (info only: real users misspell, a model should cope).")
    ignore_words: list[str] = Field(
        default_factory=list, description="spelling.*: words never flagged, whatever the lists say (your domain's jargon or names).")
    extra_en: dict[str, str] = Field(
        default_factory=dict, description="spelling.*: more English misspellings and their one correction, added to codespell's "
        "dictionary.txt, e.g. {\"recieveing\": \"receiving\"}.")
    zh_typos: dict[str, str] = Field(
        default_factory=dict, description="spelling.*: more Chinese wrong forms (错别字) and their correction, added to "
        "validators/data/zh_typos.tsv, e.g. {\"一股作气\": \"一鼓作气\"}. Choose forms that are not words themselves.")
    task_words: list[str] = Field(
        default_factory=lambda: ["spell", "typo", "misspel", "proofread", "grammar", "grammatical", "mistake", "errors in",
                                 "correct the", "correct any", "correct this", "correct it", "correct all", "corrected",
                                 "correction", "fix the", "错别字", "错字", "改错", "纠正", "纠错", "病句", "拼写", "校对",
                                 "语法错误", "找出错误", "修改错误", "改正"],
        description="spelling.*: a record whose prompt holds one of these (case-insensitive, literal) asks to find or fix "
        "mistakes: its misspellings are the subject, not errors, so the record is not checked.")


class CompletenessConfig(_Section):
    min_closed_share: float = Field(
        0.8, gt=0, le=1, description="completeness.no_end_punctuation: judged only when at least this share of the dataset's "
        "prose answers end with closing punctuation; calibrated on the dataset itself, so code-only, label-only or verse "
        "datasets are not flagged wholesale. Real sets: 96-100% (Alpaca en/zh, AlpacaEval, BELLE, glaive, self-instruct); "
        "0.8 still judges a set where a fifth of the answers were cut.")
    min_prose_answers: int = Field(
        20, ge=1, description="completeness.no_end_punctuation: prose answers the dataset needs before its usual ending is trusted.")
    dangling_words: list[str] = Field(
        default_factory=lambda: ["a", "an", "the", "and", "or", "but", "nor", "of", "to", "with", "for", "from", "into", "onto",
                                 "because", "although", "than", "whose", "whether", "my", "your", "our", "their", "its",
                                 "such", "including", "via",
                                 "和", "以及", "并且", "而且", "但是", "因为", "所以", "如果", "或者", "比如", "例如", "包括",
                                 "由于", "虽然", "然而", "以便", "从而", "甚至"],
        description="completeness.dangling_word: words a sentence cannot end with (English, as written in lower case; Chinese "
        "at the end of a text, 温和-like compounds excepted). An answer that stops on one without closing punctuation was cut "
        "off. 的 is not listed: 是…的 sentences end with it (no_end_punctuation still catches a cut there).")


class AccuracyConfig(_Section):
    hedges: list[str] = Field(
        default_factory=lambda: [
            "I could be wrong", "I might be wrong", "I may be wrong", "I could be mistaken", "I may be mistaken",
            "if I remember correctly", "if I recall correctly", "if memory serves", "correct me if I'm wrong",
            "I'm not sure", "I am not sure", "I'm not entirely sure", "I'm not 100% sure", "I'm not certain",
            "I am not certain", "I'm not positive", "don't quote me", "take this with a grain of salt", "I'm guessing",
            "my best guess", "I have no idea", "I don't know for sure", "I'm unsure", "IIRC", "AFAIK",
            "I don't remember exactly", "I can't remember exactly", "I'm not 100% certain", "not entirely certain",
            "好像是这样", "好像是吧", "应该是吧", "可能是吧", "大概是吧", "也许是吧", "我不太确定", "我也不太确定", "我也不确定",
            "我不是很确定", "我记得好像", "如果我没记错", "要是我没记错", "我没记错的话", "不敢保证", "我也不是很清楚", "我也不太清楚",
            "我不太清楚", "我猜", "大概是这样吧", "可能是这样吧", "说不准", "不一定对", "我记不太清", "记不清了"],
        description="accuracy.hedged: phrases of an unsure answer (the documents' \"好像是这样...\"); literal, case-insensitive, "
        "whole words for English. Quoted text, code and the lines of a written dialogue (A: ... B: ...) are not searched. "
        "A bare 我不确定 is not listed: '我不确定我做错了什么' is an apology, not a hedge.")
    deferrals: list[str] = Field(
        default_factory=lambda: [
            "consult a professional", "consult a lawyer", "consult an attorney", "consult a doctor", "consult your doctor",
            "consult a specialist", "consult an expert", "seek professional advice", "seek professional help",
            "speak to a professional", "talk to a professional", "contact customer service", "ask an expert",
            "I can't answer", "I cannot answer", "I am unable to answer", "I'm unable to answer", "I don't know",
            "I do not know",
            "建议咨询律师", "建议咨询医生", "建议咨询专业人士", "请咨询律师", "请咨询医生", "请咨询专业人士", "建议您咨询",
            "请咨询相关部门", "请向专业人士咨询", "建议寻求专业", "建议去医院", "请咨询客服", "联系客服", "我无法回答", "无法回答这个问题",
            "我不知道"],
        description="accuracy.deferral: phrases that send the user elsewhere (\"建议咨询律师\"); flagged when, without the "
        "sentences holding them, almost nothing of the answer is left.")
    deferral_rest: int = Field(
        25, ge=0, description="accuracy.deferral: letters and digits (CJK characters count two) left in the answer once its "
        "deferring sentences are taken out, under which the answer defers instead of answering.")
    opinion_prompts: list[str] = Field(
        default_factory=lambda: [
            "your opinion", "what do you think", "do you think", "in your view", "your thoughts", "do you believe",
            "guess", "predict", "probability", "how likely", "likelihood",
            "what are the chances", "what are the odds", "speculate",
            "你觉得", "你认为", "你怎么看", "你的看法", "你的观点", "你的意见", "猜一猜", "猜猜", "猜测", "预测", "概率",
            "可能性有多大", "几率", "你相信"],
        description="accuracy.*: a prompt holding one of these asks for an opinion, a guess or a probability: an unsure answer "
        "is the honest one, so the record is not flagged. Kept specific: a bare 看法 or 'estimate' also names a topic.")


class PiiConfig(_Section):
    action: Literal["redact", "reject"] = Field("redact", description="pii.*: what `datakit fix` does with a record holding PII or secrets.")


class VolumeConfig(_Section):
    task_type: Literal["style", "classification", "knowledge", "reasoning"] | None = Field(
        None, description="volume.too_few: recommended minimum records depend on the task (style 50-100, classification 100-200, knowledge 500-1000, reasoning 1000+).")


class FixConfig(_Section):
    over_length: Literal["drop", "truncate"] = Field(
        "drop", description="length.too_long: what `datakit fix` does with an over-length record: move it to the rejected file, "
        "or cut its last answer to fit max_tokens (a cut answer teaches an unfinished reply; drop is the safe default).")


class AuditConfig(_Section):
    """Everything `datakit audit` can be told; the defaults are the documents' recommendations."""

    label_field: str | None = Field(None, description="balance.*, volume.per_class: record field holding the class/category label.")
    only: list[str] | None = Field(None, description="Run only these rule families.")
    skip: list[str] = Field(default_factory=list, description="Do not run these rule families.")
    fail_on: Literal["error", "warning", "never"] = Field("error", description="Exit 1 when a finding at or above this severity exists.")
    max_examples: int = Field(3, ge=0, description="Examples per rule shown in summaries.")
    format: FormatConfig = Field(default_factory=FormatConfig)
    empty: EmptyConfig = Field(default_factory=EmptyConfig)
    length: LengthConfig = Field(default_factory=LengthConfig)
    hygiene: HygieneConfig = Field(default_factory=HygieneConfig)
    duplicate: DuplicateConfig = Field(default_factory=DuplicateConfig)
    near_duplicate: NearDuplicateConfig = Field(default_factory=NearDuplicateConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    consistency: ConsistencyConfig = Field(default_factory=ConsistencyConfig)
    correspondence: CorrespondenceConfig = Field(default_factory=CorrespondenceConfig)
    spelling: SpellingConfig = Field(default_factory=SpellingConfig)
    completeness: CompletenessConfig = Field(default_factory=CompletenessConfig)
    accuracy: AccuracyConfig = Field(default_factory=AccuracyConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    fix: FixConfig = Field(default_factory=FixConfig)


def builtin_patterns(section: type[_Section], field: str) -> list[str]:
    """The shipped value of a pattern list: these were reviewed, so they run without the per-call time limit."""
    return section.model_fields[field].get_default(call_default_factory=True)
