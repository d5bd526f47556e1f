"""Synthetic token shards (SHARD_SCHEMA rows written directly with pyarrow, to any fsspec URL): the
tests', benchmarks' and examples' stand-in for an ingest output."""

from __future__ import annotations

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vimpac_core.shards.schema import SHARD_SCHEMA, SHARDS_DIR


def token_rows(
    num_videos: int,
    *,
    grid: int = 4,
    frames: int | list[int] = 8,
    views: tuple[str, ...] = ("s32-center-noflip",),
    vocab_size: int = 64,
    num_labels: int = 3,
    seed: int = 0,
    prefix: str = "vid",
    structured: bool = False,
) -> list[dict]:
    """Rows of SHARD_SCHEMA. ``structured`` codes encode (video, frame) so tests can check clips:
    code = (video * 16 + t) % vocab_size at every position of frame t."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(num_videos):
        n = frames[v % len(frames)] if isinstance(frames, list) else frames
        for view in views:
            if structured:
                codes = np.repeat((v * 16 + np.arange(n)) % vocab_size, grid * grid)
            else:
                codes = rng.integers(0, vocab_size, size=n * grid * grid)
            rows.append(
                {
                    "video_id": f"{prefix}{v:05d}",
                    "view": view,
                    "label": v % num_labels,
                    "split": "train",
                    "tokens": codes.astype(np.uint16).tolist(),
                    "num_frames": n,
                    "grid_h": grid,
                    "grid_w": grid,
                    "timestamps": (np.arange(n) / 2.0).astype(np.float32).tolist(),
                    "fps": 2.0,
                    "source_uri": f"file:///videos/{prefix}{v:05d}.mp4",
                    "tokenizer": "test-random",
                }
            )
    return rows


def write_token_shards(
    url: str, rows: list[dict], *, rows_per_shard: int = 8, row_group_size: int = 4, **storage_options
) -> list[str]:
    """Write ``rows`` into ``<url>/shards/shard-XXXX.parquet`` files; returns their URLs."""
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    root = root.rstrip("/")
    fs.makedirs(f"{root}/{SHARDS_DIR}", exist_ok=True)
    written = []
    for i in range(0, len(rows), rows_per_shard):
        table = pa.Table.from_pylist(rows[i : i + rows_per_shard], schema=SHARD_SCHEMA)
        path = f"{root}/{SHARDS_DIR}/shard-{i // rows_per_shard:04d}.parquet"
        with fs.open(path, "wb") as handle:
            pq.write_table(table, handle, row_group_size=row_group_size, compression="zstd")
        written.append(path)
    return written
