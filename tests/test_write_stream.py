"""Records are written as they come: Parquet one row group at a time (later groups cast to the first group's columns
where that loses nothing, else a clear error), several files filled in one pass, each appearing only when complete."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import datakit.io.write as write_module
from datakit.io.read import read_raw
from datakit.io.write import record_writer, write_records


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(write_module, "ROW_GROUP_ROWS", 4)


def test_parquet_is_written_a_row_group_at_a_time(tmp_path, small_groups, monkeypatch):
    pulled = 0
    written_after: list[int] = []
    real = pq.ParquetWriter.write_table

    def spy(self, table, *args, **kwargs):
        written_after.append(pulled)
        return real(self, table, *args, **kwargs)

    def rows():
        nonlocal pulled
        for i in range(10):
            pulled += 1
            yield {"instruction": f"q{i}", "output": "a"}

    monkeypatch.setattr(pq.ParquetWriter, "write_table", spy)
    assert write_records(tmp_path / "out.parquet", rows(), "parquet") == 10
    assert written_after == [4, 8, 10]  # never more than one group held
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 3
    assert [r.obj for r in read_raw(tmp_path / "out.parquet").records] == [{"instruction": f"q{i}", "output": "a"}
                                                                         for i in range(10)]


def test_later_groups_take_the_first_groups_columns_as_one_table_would(tmp_path, small_groups):
    rows = [{"a": i, "b": "text", "c": 1.5} for i in range(4)]
    rows += [{"a": 4, "b": None, "c": 2}, {"a": 5}, {"c": 3, "b": "x", "a": 6}]  # nulls, a missing key, ints, key order
    write_records(tmp_path / "out.parquet", rows, "parquet")
    back = [r.obj for r in read_raw(tmp_path / "out.parquet").records]
    assert back[4:] == [{"a": 4, "b": None, "c": 2.0}, {"a": 5, "b": None, "c": None}, {"a": 6, "b": "x", "c": 3.0}]


def test_a_group_that_does_not_fit_the_first_is_a_clear_error_and_nothing_is_written(tmp_path, small_groups):
    rows = [{"a": i} for i in range(4)] + [{"a": 4, "new": "column"}]
    with pytest.raises(ValueError, match=r"from row 5 on, column\(s\) new \(String\) do not fit.*Write JSON Lines"):
        write_records(tmp_path / "out.parquet", rows, "parquet")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.parquet", "out.parquet.gz", "out.jsonl.gz", "out.json"])
def test_the_same_records_give_the_same_bytes(tmp_path, small_groups, name):
    rows = [{"instruction": f"问题 {i}", "output": "答案", "score": i / 3} for i in range(11)]
    container, packed = write_module.container_of(name)
    for folder in ("a", "b"):
        write_records(tmp_path / folder / name, iter(rows), container, packed)
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert [r.obj for r in read_raw(tmp_path / "a" / name).records] == rows


def test_two_files_filled_in_one_pass_appear_only_when_both_are_complete(tmp_path):
    with record_writer(tmp_path / "kept.json", "json") as kept, record_writer(tmp_path / "rejected.jsonl") as rejected:
        for i in range(6):
            (kept if i % 3 else rejected).write([{"i": i}])
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
    assert (kept.count, rejected.count) == (4, 2)
    assert [r.obj["i"] for r in read_raw(tmp_path / "kept.json").records] == [1, 2, 4, 5]
    with pytest.raises(RuntimeError), record_writer(tmp_path / "kept.json", "json") as again:
        again.write([{"i": 99}])
        raise RuntimeError("crash mid-way")
    assert [r.obj["i"] for r in read_raw(tmp_path / "kept.json").records] == [1, 2, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "rejected.jsonl"]
