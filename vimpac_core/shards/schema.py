"""The one shard schema (DATA.md) and the layout of an ingest output folder.

An output folder (any fsspec URL) holds::

    <root>/shards/<shard_id>.parquet      token rows, one per (video, view); written whole or not at all
    <root>/manifest/<shard_id>.parquet    one row per video per extraction attempt; written after the shard
    <root>/classes.json                   {"classes": [name, ...]}: label name -> index is its position
    <root>/ingest_plan.json               settings, tokenizer id and the videos of every shard

Shard ids derive from the inputs (the video list and the settings), never from the work left.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"
CLASSES_FILE = "classes.json"
PLAN_FILE = "ingest_plan.json"  # the ingest plan (settings + videos per shard), read by rerun-failed
RESULTS_DIR = "_prefect_results"  # persisted shard-task results (the orchestration's cache)
# Everything an ingest writes directly in its output folder (anything else there is someone else's).
INGEST_OUTPUT = (SHARDS_DIR, MANIFEST_DIR, CLASSES_FILE, PLAN_FILE, RESULTS_DIR)

SHARD_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("view", pa.string(), nullable=False),
        pa.field("label", pa.int32()),
        pa.field("split", pa.string()),
        pa.field("tokens", pa.list_(pa.uint16()), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("grid_h", pa.int32(), nullable=False),
        pa.field("grid_w", pa.int32(), nullable=False),
        pa.field("timestamps", pa.list_(pa.float32()), nullable=False),
        pa.field("fps", pa.float32(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("tokenizer", pa.string(), nullable=False),
    ]
)

# status: "ok" | "failed"; error_class: "retriable" | "permanent" | null.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_class", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("num_frames", pa.int32()),
        pa.field("rows", pa.int32(), nullable=False),
        pa.field("video_sha256", pa.string()),
        pa.field("video_bytes", pa.int64()),
        pa.field("download_s", pa.float32()),
        pa.field("probe_s", pa.float32()),
        pa.field("decode_s", pa.float32()),
        pa.field("encode_s", pa.float32()),
        pa.field("finished_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string()),
    ]
)


def tokens_to_grid(tokens: np.ndarray, num_frames: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Flat row-major (t, y, x) codes -> int64 grid [T, h, w]."""
    flat = np.asarray(tokens)
    expected = num_frames * grid_h * grid_w
    if flat.size != expected:
        raise ValueError(f"token row has {flat.size} codes, expected {num_frames}x{grid_h}x{grid_w}={expected}")
    return flat.astype(np.int64).reshape(num_frames, grid_h, grid_w)
