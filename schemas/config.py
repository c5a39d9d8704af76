"""Audit configuration: one sub-model per rule family; every default says which rule it serves and why.

Plain data: passed to each rule as the few settings it uses (no global mutable argument object).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
    template_markers: list[str] = Field(
        default_factory=lambda: [
            r"###\s*(?:Instruction|Input|Response|Assistant|Human)\s*:",
            r"###\s*(?:指令|输入|回答|回复)\s*[:：]",
            r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id)\|>",
            r"\[/?INST\]",
            r"\{\{\s*\w+\s*\}\}",
        ],
        description="hygiene.template_marker: leftover prompt-template markers and unfilled placeholders leak the template into what the model learns.")


class DuplicateConfig(_Section):
    check_conflicting_outputs: bool = Field(
        True, description="duplicate.conflicting_output: the same instruction with different answers teaches the model two truths.")


class NearDuplicateConfig(_Section):
    threshold: float = Field(0.8, gt=0, le=1, description="near_duplicate.cluster: estimated Jaccard similarity at or above which two records count as near-duplicates.")
    num_perm: int = Field(128, ge=16, description="near_duplicate.cluster: MinHash permutations; more is more precise and slower.")
    word_ngram: int = Field(5, ge=1, description="near_duplicate.cluster: word shingle size for space-separated text.")
    char_ngram: int = Field(5, ge=1, description="near_duplicate.cluster: character shingle size for CJK text, which has no spaces.")


class BalanceConfig(_Section):
    max_imbalance_ratio: float = Field(
        3.0, gt=1, description="balance.imbalanced: largest/smallest class above this is unbalanced (80/15/5 is; aim for roughly even shares).")
    min_per_class: int = Field(10, ge=1, description="balance.class_too_small: each class needs at least 10-100 samples to be learnt.")


class DiversityConfig(_Section):
    max_leading_share: float = Field(
        0.3, gt=0, le=1, description="diversity.leading_phrase: one opening phrase on more than 30% of prompts makes the model brittle to other phrasings.")
    leading_words: int = Field(2, ge=1, description="diversity.leading_phrase: how many leading words (or CJK characters x2) make a phrasing.")


class LanguageConfig(_Section):
    expected: list[str] | None = Field(
        None, description="language.off_language: ISO codes the dataset should be in; default is the dataset's own main language(s).")
    min_share_for_main: float = Field(0.2, gt=0, le=1, description="language.off_language: a language on at least this share of records is a main language.")
    seed: int = Field(0, description="language.*: langdetect is randomised; a fixed seed makes it deterministic.")


class LeakageConfig(_Section):
    against: list[str] = Field(default_factory=list, description="leakage.eval_overlap: eval/test files the training data must not contain.")
    ngram: int = Field(13, ge=3, description="leakage.eval_overlap: shared word n-gram length counted as contamination (13 as in GPT-3's decontamination).")
    near_threshold: float = Field(0.8, gt=0, le=1, description="leakage.eval_near: MinHash Jaccard at or above which a training record near-copies an eval record.")
    answer_in_prompt_share: float = Field(
        0.8, gt=0, le=1, description="leakage.answer_in_prompt: share of the answer already present in the prompt above which the model learns to copy.")
    internal_patterns: list[str] = Field(
        default_factory=lambda: [
            r"(?i)\b(?:according to|per|see|as stated in) (?:our|the) internal (?:doc(?:ument)?|wiki|memo|policy|report)s?\b",
            r"(?i)\binternal (?:use only|document|wiki|confluence|jira)\b",
            r"根据(?:我们|公司)?的?内部(?:文档|资料|文件|规定|wiki)",
            r"内部(?:文档|资料)",
            r"(?i)\bconfidential\b",
            r"(?:[A-Za-z]:\\(?:[^\\\s]+\\)+[^\\\s]+|(?<![\w/])/(?:home|Users|etc|var|opt|srv|mnt)/[^\s]+)",
            r"(?i)https?://[\w.-]*(?:\.internal|\.corp|\.local|\.lan|intranet)[\w./-]*",
        ],
        description="leakage.internal_reference: outputs that cite internal material cannot be verified and may leak it.")


class PiiConfig(_Section):
    action: Literal["redact", "reject"] = Field("redact", description="pii.*: what `datakit fix` does with a record holding PII or secrets.")


class VolumeConfig(_Section):
    task_type: Literal["style", "classification", "knowledge", "reasoning"] | None = Field(
        None, description="volume.too_few: recommended minimum records depend on the task (style 50-100, classification 100-200, knowledge 500-1000, reasoning 1000+).")


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
    pii: PiiConfig = Field(default_factory=PiiConfig)
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
