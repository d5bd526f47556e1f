"""Shard files: schema round trip, uint16 codes, atomic commit, object stores."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from vimpac_core.shards.schema import SHARD_SCHEMA, tokens_to_grid
from vimpac_core.shards.writer import TokenRow, read_shard, shard_url, write_shard


def _row(vid: str, t: int = 3, seed: int = 0) -> TokenRow:
    rng = np.random.default_rng(seed)
    return TokenRow(video_id=vid, view="s32-center-noflip", label=1, split="train",
                    codes=rng.integers(0, 8192, size=(t, 4, 4)), timestamps=np.arange(t) * 0.5,
                    fps=2.0, source_uri=f"/v/{vid}.mp4", tokenizer="vqvae:" + "0" * 64)


def test_round_trip_keeps_codes_and_shape(tmp_path):
    rows = [_row("a", 3, 0), _row("b", 5, 1)]
    url = write_shard(str(tmp_path), "00000-abc", rows)
    assert url.endswith("shards/00000-abc.parquet")
    table = read_shard(str(tmp_path), "00000-abc")
    assert table.schema.equals(SHARD_SCHEMA)
    for rec, row in zip(table.to_pylist(), rows, strict=True):
        grid = tokens_to_grid(rec["tokens"], rec["num_frames"], rec["grid_h"], rec["grid_w"])
        np.testing.assert_array_equal(grid, row.codes)
        np.testing.assert_allclose(rec["timestamps"], row.timestamps)
        assert rec["label"] == 1 and rec["fps"] == 2.0
    assert read_shard(str(tmp_path), "nope") is None
    meta = pq.ParquetFile(url).metadata  # DATA.md: zstd, every column
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}


def test_empty_shard_and_rewrite(tmp_path):
    write_shard(str(tmp_path), "s", [])
    assert read_shard(str(tmp_path), "s").num_rows == 0
    write_shard(str(tmp_path), "s", [_row("a")])
    assert read_shard(str(tmp_path), "s").num_rows == 1
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["s.parquet"]


def test_bad_codes_are_refused_before_anything_is_written(tmp_path):
    bad = _row("a")
    bad.codes = np.full((2, 4, 4), 70000)
    with pytest.raises(ValueError, match="uint16"):
        write_shard(str(tmp_path), "s", [_row("ok"), bad])
    assert not (tmp_path / "shards" / "s.parquet").exists()


def test_s3_shard(s3_bucket):
    out = f"s3://{s3_bucket}/tokens"
    write_shard(out, "s", [_row("a")])
    assert shard_url(out, "s") == f"s3://{s3_bucket}/tokens/shards/s.parquet"
    assert read_shard(out, "s").column("video_id").to_pylist() == ["a"]
