"""ShardIndex and RowGroupCache over local and S3 (moto) shards."""

from __future__ import annotations

import numpy as np
import pytest

from vimpac_core.shards.reader import RowGroupCache, ShardIndex, ShardReadError
from vimpac_core.shards.synthetic import token_rows, write_token_shards


def _check_roundtrip(url: str, rows: list[dict], **storage_options) -> ShardIndex:
    index = ShardIndex.build(url, storage_options=storage_options or None)
    assert len(index) == len({r["video_id"] for r in rows})
    cache = RowGroupCache(index, capacity=2)
    for row in rows:
        ref = index[row["video_id"]].views[row["view"]]
        grid = cache.grid(ref)
        assert grid.shape == (row["num_frames"], row["grid_h"], row["grid_w"])
        assert grid.dtype == np.int64
        np.testing.assert_array_equal(grid.ravel(), np.asarray(row["tokens"]))
    return index


def test_index_maps_every_view_to_its_row(tmp_path):
    rows = token_rows(11, views=("a", "b"), frames=[3, 5, 8])
    write_token_shards(str(tmp_path), rows, rows_per_shard=6, row_group_size=4)
    index = _check_roundtrip(str(tmp_path), rows)
    assert index.views() == ["a", "b"]
    assert index.num_labels() == 3
    assert [v.video_id for v in index.videos] == sorted({r["video_id"] for r in rows})


def test_cache_reads_each_row_group_once_in_order(tmp_path):
    rows = token_rows(16)
    write_token_shards(str(tmp_path), rows, rows_per_shard=8, row_group_size=4)
    index = ShardIndex.build(str(tmp_path))
    cache = RowGroupCache(index, capacity=1)
    for entry in index.videos:
        cache.grid(next(iter(entry.views.values())))
    assert cache.reads == 4  # 2 files x 2 row groups, never re-read, at most one held


def test_split_filter_and_flat_folder(tmp_path):
    rows = token_rows(4)
    rows[0]["split"] = "test"
    write_token_shards(str(tmp_path), rows)
    flat = tmp_path / "shards"
    assert [v.video_id for v in ShardIndex.build(str(flat), split="test").videos] == ["vid00000"]
    assert len(ShardIndex.build(str(tmp_path), split="train")) == 3


def test_missing_folder_and_bad_schema_are_named(tmp_path):
    with pytest.raises(ShardReadError, match="no shard files"):
        ShardIndex.build(str(tmp_path))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"video_id": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ShardReadError, match="lacks columns"):
        ShardIndex.build(str(tmp_path))


def test_reads_from_s3(s3_bucket):
    rows = token_rows(6, frames=[4, 7])
    write_token_shards(f"s3://{s3_bucket}/out", rows, rows_per_shard=4, row_group_size=2)
    index = _check_roundtrip(f"s3://{s3_bucket}/out", rows)
    assert all(f.startswith("s3://") for f in index.files)


def test_ingest_output_counts_only_committed_shards(tmp_path, caplog):
    """A shard file whose manifest was never written (a crash in between) is not done: left out."""
    rows = token_rows(8)
    write_token_shards(str(tmp_path), rows, rows_per_shard=4)
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "shard-0001.parquet").write_bytes(b"")  # only the second shard committed
    index = ShardIndex.build(str(tmp_path))
    assert {v.video_id for v in index.videos} == {r["video_id"] for r in rows[4:]}
    assert "1 shard file(s) without a manifest left out" in caplog.text
