"""Near-duplicate detection: signatures equal datasketch's, English and Chinese near-copies are found, unrelated
texts are not, clusters keep the stated record, and the CLI reports exact lines."""
from __future__ import annotations

import json
import re
import unicodedata

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

import datakit.measure.minhash as mh
from datakit.measure import ensure, lsh
from datakit.normalise import load
from schemas.config import AuditConfig, NearDuplicateConfig
from tests.conftest import EXAMPLES, audit_json, lines_for, run_rule
from validators.near_duplicate import NearDuplicateRules

CJK = "\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
WORD = re.compile(f"[{CJK}]|[^ {CJK}]+")

# Record-sized texts (a near-copy at Jaccard 0.8 on 5-grams needs about 25 shingles per changed word).
EN = ("The quick brown fox jumps over the lazy dog near the river bank while the farmer watches from his porch "
      "and drinks a cup of hot coffee before starting the long day of work in the wheat fields behind the barn. "
      "His daughter feeds the chickens, collects the eggs in a wicker basket and carries them to the kitchen, where "
      "her grandmother is already baking bread for the market that opens at nine. The old tractor needs new tyres "
      "and the fence along the northern pasture has a gap that the sheep found last week, so the afternoon will be "
      "spent on repairs. In the evening the family sits together, counts the money from the market and plans the "
      "next season: which fields to plant with barley, which to leave fallow, and whether to buy a second cow.")
EN_NEAR = EN.replace("hot coffee", "hot tea").replace("second cow", "second goat")
EN_OTHER = ("Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen as a "
            "by-product; it takes place in the chloroplasts of plant cells and some bacteria and algae. The light "
            "reactions split water and produce ATP and NADPH, which the Calvin cycle then uses to fix carbon dioxide "
            "into three-carbon sugars that the plant builds into starch, cellulose and other molecules it needs.")
ZH = ("光合作用是绿色植物利用太阳光能，把二氧化碳和水合成储存能量的有机物，并且释放出氧气的过程。"
      "这个过程为地球上几乎所有的生命提供了能量来源，也维持了大气中氧气和二氧化碳的平衡。"
      "光合作用主要在叶绿体中进行，分为光反应和暗反应两个阶段：光反应在类囊体膜上进行，把光能转化为化学能，"
      "生成ATP和NADPH；暗反应在叶绿体基质中进行，利用这些能量把二氧化碳固定为糖类。"
      "影响光合作用的因素包括光照强度、二氧化碳浓度、温度和水分等，农业生产中常常通过调节这些条件来提高作物产量。")
ZH_NEAR = ZH.replace("绿色植物", "绿色的植物").replace("提高作物产量", "增加作物产量")
ZH_OTHER = ("长城是中国古代的军事防御工程，修筑历史可以追溯到西周时期，秦朝统一六国后把各国的长城连接起来，"
            "明朝又进行了大规模的修缮，今天我们看到的大部分长城都是明长城。长城东起山海关，西至嘉峪关，"
            "沿途经过许多省份，是世界上最著名的古代建筑之一，一九八七年被列入世界文化遗产名录。")


def reference_shingles(text: str, cfg: NearDuplicateConfig) -> list[str]:
    """The shingling rule written plainly, one text at a time: the oracle the vectorised code must match."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()
    words = WORD.findall(text)
    cjk = len(re.findall(f"[{CJK}]", text))
    if cfg.shingles == "characters" or cjk and 2 * cjk >= len(words):
        units, n, sep = list(text.replace(" ", "")), cfg.char_ngram, ""
    else:
        units, n, sep = words, cfg.word_ngram, " "
    if len(units) < n:
        return [sep.join(units)]
    return [sep.join(units[i:i + n]) for i in range(len(units) - n + 1)]


def datasketch_minhash(text: str, cfg: NearDuplicateConfig) -> MinHash:
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=cfg.scheme)
    for s in reference_shingles(text, cfg):
        m.update(s.encode("utf-8"))
    return m


def sample_texts() -> list[str]:
    real = []
    for name in ("alpaca_en_sample.json", "alpaca_zh_sample.json", "identity.json"):
        real += [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in json.loads((EXAMPLES / name).read_text())[:40]]
    edge = ["", "   ", "short", "a b c d", "使用Python编写一个函数", "hello 你好 world, this mixes 中文 and English words",
            "日本語のテキストです。カタカナもある", "ＦＵＬＬＷＩＤＴＨ ﬁ ligature  and\ttabs\nnewlines", "𠀀𠀁𠀂 astral 𠀃𠀄𠀅𠀆",
            "word " * 300, EN, EN_NEAR, ZH, ZH_NEAR]
    return real + edge


def sim(a: str, b: str, cfg: NearDuplicateConfig | None = None) -> float:
    cfg = cfg or NearDuplicateConfig()
    s = mh.signatures([a, b], cfg)
    return float(np.mean(s[0] == s[1]))


@pytest.mark.parametrize("scheme,shingles", [("affine32", "characters"), ("legacy", "characters"), ("affine32", "words")])
def test_signatures_equal_datasketch_minhash_hashvalues(scheme, shingles):
    cfg = NearDuplicateConfig(scheme=scheme, shingles=shingles)
    texts = sample_texts()
    sigs = mh.signatures(texts, cfg)
    assert sigs.dtype == np.uint64 and sigs.shape == (len(texts), cfg.num_perm)
    for text, sig in zip(texts, sigs):
        assert np.array_equal(sig, datasketch_minhash(text, cfg).hashvalues.astype(np.uint64)), text[:40]


@pytest.mark.parametrize("shingles", ["characters", "words"])
def test_signatures_equal_datasketch_with_other_ngram_sizes_and_seed(shingles):
    cfg = NearDuplicateConfig(word_ngram=3, char_ngram=2, seed=7, num_perm=64, shingles=shingles)
    texts = sample_texts()
    for text, sig in zip(texts, mh.signatures(texts, cfg)):
        assert np.array_equal(sig, datasketch_minhash(text, cfg).hashvalues.astype(np.uint64)), text[:40]


def test_signatures_do_not_depend_on_batching_or_worker_processes(monkeypatch):
    texts = sample_texts() * 3
    cfg = NearDuplicateConfig()
    whole = mh.signatures(texts, cfg)
    monkeypatch.setattr(mh, "BATCH_CODE_POINTS", 2_000)  # many batches, run in forked workers
    assert np.array_equal(mh.signatures(texts, cfg), whole)


def test_colliding_fingerprints_fall_back_to_exact_grouping(monkeypatch):
    texts = sample_texts()
    cfg = NearDuplicateConfig()
    expected = mh.signatures(texts, cfg)
    monkeypatch.setattr(mh, "mix64", lambda x: np.zeros(np.shape(x), dtype=np.uint64))  # every fingerprint collides
    assert np.array_equal(mh.signatures(texts, cfg), expected)


def test_signatures_are_deterministic_across_calls():
    texts = sample_texts()
    assert np.array_equal(mh.signatures(texts, NearDuplicateConfig()), mh.signatures(texts, NearDuplicateConfig()))


def test_every_text_is_shingled_by_characters_by_default_and_only_chinese_with_words():
    texts = [EN, ZH, "使用Python编写一个函数", "Use 中文 in an English sentence here"]
    assert mh.signatures_and_modes(texts, NearDuplicateConfig())[1].tolist() == [True] * 4
    assert mh.signatures_and_modes(texts, NearDuplicateConfig(shingles="words"))[1].tolist() == [False, True, True, False]


def test_an_english_copy_with_two_words_edited_in_sixty_is_a_near_duplicate():
    """Word 5-grams lose five shingles per edit (Jaccard ~0.7 here, missed at 0.8); character 5-grams a few per cent."""
    words = EN.split()[:60]
    edited = words[:20] + words[21:40] + [words[41], words[40]] + words[42:]  # one word dropped, two swapped
    one, two = " ".join(words), " ".join(edited)
    assert sim(one, two) >= 0.85
    assert sim(one, two, NearDuplicateConfig(shingles="words")) < 0.8


def test_english_near_copy_with_a_few_words_changed_is_found_at_default_threshold():
    assert 0.8 <= sim(EN, EN_NEAR) < 1.0


def test_chinese_near_copy_with_a_few_characters_changed_is_found_at_default_threshold():
    assert 0.8 <= sim(ZH, ZH_NEAR) < 1.0


def test_unrelated_texts_are_not_near_duplicates():
    assert sim(EN, EN_OTHER) < 0.2
    assert sim(ZH, ZH_OTHER) < 0.2
    assert sim(EN, ZH) < 0.05


def test_exact_copies_after_normalisation_have_similarity_one():
    assert sim(EN, EN) == 1.0
    assert sim(ZH, "  " + ZH.replace("，", ",") + "\n") == 1.0  # NFKC maps the full-width comma; spaces collapse
    assert sim("Hello   World", "hello world") == 1.0


def test_clusters_join_near_copies_and_keep_the_preferred_row():
    texts = [EN, EN_OTHER, EN_NEAR, ZH, ZH_OTHER, ZH_NEAR, EN]
    sigs = mh.signatures(texts, NearDuplicateConfig())
    found = lsh.near_duplicate_clusters(sigs, 0.8)
    assert found.rows.tolist() == [0, 2, 3, 5, 6]
    assert found.cluster.tolist() == [0, 0, 1, 1, 0]
    assert found.representative.tolist() == [0, 3]  # default: the earliest row
    assert found.kept.tolist() == [0, 0, 3, 3, 0]
    assert found.similarity[4] == 1.0 and 0.8 <= found.similarity[1] < 1.0
    assert found.sizes.tolist() == [3, 2]
    preferred = lsh.near_duplicate_clusters(sigs, 0.8, prefer=np.array([5, 0, 1, 5, 0, 0, 5]))
    assert preferred.representative.tolist() == [2, 5]
    groups = found.groups(len(texts))
    assert groups[0] == groups[2] == groups[6] and len(set(groups.tolist())) == 4


def test_thousands_of_copies_form_one_cluster_without_pair_explosion():
    sigs = mh.signatures([EN] * 3000 + [EN_OTHER], NearDuplicateConfig())
    found = lsh.near_duplicate_clusters(sigs, 0.8)
    assert found.sizes.tolist() == [3000]
    assert 3000 not in found.rows
    keys = lsh.band_keys(sigs, *lsh.lsh_params(0.8, 128))
    assert lsh.candidate_pairs((keys[:, b] for b in range(keys.shape[1])), len(sigs))[0].size <= 3000 * lsh.BUCKET_WINDOW


def test_lsh_parameters_are_datasketchs_with_recall_weighted_bands():
    for threshold, num_perm in [*lsh.DEFAULT_LSH_PARAMS, (0.7, 64), (0.9, 256)]:
        theirs = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=lsh.LSH_WEIGHTS)
        assert lsh.lsh_params(threshold, num_perm) == (theirs.b, theirs.r)
    bands, rows = lsh.lsh_params(0.8, 128)
    assert 1 - (1 - 0.8 ** rows) ** bands > 0.9  # a pair right at the threshold is nearly always a candidate


def test_near_matches_pairs_query_rows_with_index_rows_only():
    cfg = NearDuplicateConfig()
    train = mh.signatures([EN_OTHER, EN_NEAR, ZH, "unrelated words about nothing in particular at all today"], cfg)
    evals = mh.signatures([EN, ZH_NEAR, ZH_OTHER], cfg)
    matches = lsh.near_matches(train, evals, 0.8)
    assert [(q, i) for q, i, _ in matches] == [(1, 0), (2, 1)]
    assert all(0.8 <= s < 1.0 for _, _, s in matches)
    assert lsh.near_matches(train, evals[:0], 0.8) == []


def test_minhash_measurement_is_null_for_invalid_rows(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"instruction": "hi", "output": "hello there"}) + "\nnot json\n", encoding="utf-8")
    ds = load(path)
    ensure(ds, ["near_dup"], AuditConfig())  # a cross-record measurement: its per-record part is the signature
    assert ds.frame["minhash"].null_count() == 1 and ds.frame["minhash"][0].len() == 128


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                    encoding="utf-8")


def test_cli_flags_every_member_but_the_kept_record_with_its_line(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [
        {"instruction": "Describe the morning", "input": "", "output": EN},            # 1
        {"instruction": "Explain photosynthesis", "input": "", "output": EN_OTHER},    # 2
        {"instruction": "Describe the morning", "input": "", "output": EN_NEAR + " Then he rests."},  # 3: longest, kept
        "{broken json",                                                                 # 4
        {"instruction": "解释光合作用", "input": "", "output": ZH},                      # 5: kept (earliest, same length)
        {"instruction": "介绍长城", "input": "", "output": ZH_OTHER},                    # 6
        {"instruction": "解释光合作用", "input": "", "output": ZH_NEAR[:len(ZH)]},       # 7
        {"instruction": "Describe the morning", "input": "", "output": EN},            # 8
    ])
    proc, report = audit_json(tmp_path, str(path), "--only", "near_duplicate")
    assert proc.returncode == 0, proc.stderr
    assert lines_for(report, "near_duplicate.cluster") == [1, 7, 8]
    related = {f["line"]: f["related_line"] for f in report["findings"]}
    assert related == {1: 3, 7: 5, 8: 3}
    by_line = {f["line"]: f for f in report["findings"]}
    assert "line 3" in by_line[1]["message"] and "similarity" in by_line[1]["detail"]
    summary = next(f["summary"] for f in report["families"] if f["family"] == "near_duplicate")
    assert summary["clusters"] == 2 and summary["records_in_clusters"] == 5
    assert summary["size_distribution"] == {"2": 1, "3": 1}
    assert summary["largest"][0] == {"size": 3, "kept_line": 3, "lines": [1, 3, 8]}
    assert summary["shingled_by_characters"] == 7


def test_findings_are_identical_across_fresh_runs(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"instruction": "q", "output": t} for t in (EN, EN_NEAR, ZH, ZH_NEAR, EN_OTHER, EN)])
    runs = [run_rule(NearDuplicateRules(), load(path))[0] for _ in range(2)]
    assert runs[0].height == 3 and runs[0].equals(runs[1])


def test_bundled_samples_without_copies_have_no_near_duplicates():
    for name in ("alpaca_en_sample.json", "alpaca_zh_sample.json", "belle_sample.jsonl"):
        found, summary = run_rule(NearDuplicateRules(), load(EXAMPLES / name))
        assert found.height == 0 and summary["clusters"] == 0, name


def test_real_chinese_set_clusters_are_its_duplicated_records(shared_data):
    path = shared_data / "llamafactory" / "alpaca_zh_demo.json"
    if not path.exists():
        pytest.skip("alpaca_zh_demo.json is absent")
    ds = load(path)
    ensure(ds, ["minhash"], AuditConfig())
    frame = ds.frame
    assert frame["minhash_cjk"].mean() > 0.9  # Chinese: shingled by characters
    texts = mh.normalise_texts(mh.record_texts(frame))
    found = lsh.near_duplicate_clusters(np.stack(frame["minhash"].to_numpy()), 0.8)
    # the 8 records this set repeats verbatim, and nothing else, even at 0.8
    assert len(set(found.cluster.tolist())) == 8 and found.rows.size == 16
    for row, kept in zip(found.rows.tolist(), found.kept.tolist()):
        assert texts[row] == texts[kept]
