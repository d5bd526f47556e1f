"""Manifests: one Parquet file per shard, one row per video per extraction attempt.

The manifest is written after its shard commits and is what "done" means: a shard is
committed when its manifest exists. ``attempts`` numbers a video's attempts (1, 2, ...); a rerun
appends a row for each video it retried and keeps the earlier rows as history, so a video's
state is its latest row (``latest_attempts``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from vimpac_core.shards.schema import MANIFEST_DIR, MANIFEST_SCHEMA
from vimpac_core.storage import atomic_write_bytes, get_fs, join, list_names, read_parquet


@dataclass
class ManifestRow:
    """The outcome of extracting one video (times in seconds)."""

    shard_id: str
    video_id: str
    source_uri: str
    status: str  # "ok" | "failed"
    attempts: int = 1
    rows: int = 0
    num_frames: int | None = None
    video_sha256: str | None = None  # of the video's bytes, as fetched (None when it could not be read)
    video_bytes: int | None = None
    error_class: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    download_s: float | None = None
    probe_s: float | None = None
    decode_s: float | None = None
    encode_s: float | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    run_id: str | None = None

    @classmethod
    def failure(cls, shard_id: str, video_id: str, uri: str, exc: BaseException, **kw) -> ManifestRow:
        """A failed row; the error class comes from ``exc.retriable`` (unknown errors: permanent)."""
        retriable = bool(getattr(exc, "retriable", False)) or isinstance(exc, TimeoutError)
        return cls(
            shard_id=shard_id,
            video_id=video_id,
            source_uri=uri,
            status="failed",
            error_class="retriable" if retriable else "permanent",
            error_type=type(exc).__name__,
            error_message=str(exc)[:2000],
            **kw,
        )


def latest_attempts(rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """The latest attempt of each video (highest ``attempts``), in order of first appearance."""
    latest: dict[str, ManifestRow] = {}
    for row in rows:
        current = latest.get(row.video_id)
        if current is None or row.attempts >= current.attempts:
            latest[row.video_id] = row
    return list(latest.values())


def manifest_url(out: str, shard_id: str) -> str:
    return join(out, MANIFEST_DIR, f"{shard_id}.parquet")


def write_manifest(out: str, shard_id: str, rows: Sequence[ManifestRow]) -> str:
    """Write the manifest of a committed shard atomically; returns its URL."""
    columns = {f.name: [asdict(r)[f.name] for r in rows] for f in MANIFEST_SCHEMA}
    table = pa.Table.from_pydict(columns, schema=MANIFEST_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    url = manifest_url(out, shard_id)
    atomic_write_bytes(url, buf.getvalue())
    return url


def read_manifest(out: str, shard_id: str) -> list[ManifestRow] | None:
    """The manifest rows of a shard, or None when the shard is not committed."""
    fs, path = get_fs(manifest_url(out, shard_id))
    if not fs.exists(path):
        return None
    table = read_parquet(manifest_url(out, shard_id), schema=MANIFEST_SCHEMA)
    return [ManifestRow(**rec) for rec in table.to_pylist()]


def committed_shards(out: str) -> list[str]:
    """Ids of the shards whose manifest exists (sorted)."""
    return [n[: -len(".parquet")] for n in list_names(join(out, MANIFEST_DIR), ".parquet")]


def read_all_manifests(out: str) -> pa.Table:
    """Every manifest row (every attempt) of an output folder as one table (empty table when none)."""
    tables = []
    for shard_id in committed_shards(out):
        tables.append(read_parquet(manifest_url(out, shard_id), schema=MANIFEST_SCHEMA))
    return pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
