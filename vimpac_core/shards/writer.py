"""Write and read token shards: one Parquet file (zstd) per shard, committed atomically.

A shard is built in memory (token rows are small: T*h*w uint16 codes per video x view),
serialised to bytes, then written with one atomic write, so a reader sees all of it or nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vimpac_core.shards.schema import SHARD_SCHEMA, SHARDS_DIR
from vimpac_core.storage import atomic_write_bytes, get_fs, join, read_parquet


@dataclass
class TokenRow:
    """One (video, view) row of a shard; ``codes`` int [T, h, w], ``timestamps`` float seconds [T]."""

    video_id: str
    view: str
    label: int | None
    split: str | None
    codes: np.ndarray
    timestamps: np.ndarray
    fps: float
    source_uri: str
    tokenizer: str

    def to_record(self) -> dict:
        codes = np.asarray(self.codes)
        if codes.ndim != 3:
            raise ValueError(f"codes of {self.video_id}/{self.view} must be [T, h, w], got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() > np.iinfo(np.uint16).max):
            raise ValueError(f"codes of {self.video_id}/{self.view} do not fit uint16 (vocab too large?)")
        t, h, w = codes.shape
        return {
            "video_id": self.video_id,
            "view": self.view,
            "label": self.label,
            "split": self.split,
            "tokens": codes.astype(np.uint16).reshape(-1),
            "num_frames": t,
            "grid_h": h,
            "grid_w": w,
            "timestamps": np.asarray(self.timestamps, dtype=np.float32),
            "fps": float(self.fps),
            "source_uri": self.source_uri,
            "tokenizer": self.tokenizer,
        }


def shard_url(out: str, shard_id: str) -> str:
    return join(out, SHARDS_DIR, f"{shard_id}.parquet")


def rows_to_table(rows: Sequence[TokenRow | dict]) -> pa.Table:
    """TokenRows (or records already in schema form) -> a table with SHARD_SCHEMA."""
    records = [r.to_record() if isinstance(r, TokenRow) else r for r in rows]
    columns = {f.name: [r[f.name] for r in records] for f in SHARD_SCHEMA}
    return pa.Table.from_pydict(columns, schema=SHARD_SCHEMA)


def table_to_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_shard(out: str, shard_id: str, rows: Sequence[TokenRow | dict]) -> str:
    """Commit a shard atomically (whole or nothing); returns its URL. An empty shard is valid."""
    url = shard_url(out, shard_id)
    atomic_write_bytes(url, table_to_bytes(rows_to_table(rows)))
    return url


def read_shard(out: str, shard_id: str) -> pa.Table | None:
    """The committed shard, or None when it was never committed."""
    fs, path = get_fs(shard_url(out, shard_id))
    if not fs.exists(path):
        return None
    return read_parquet(shard_url(out, shard_id), schema=SHARD_SCHEMA)
