"""The results table of a sweep output: ``<output>/results.parquet``, one row per run per sweep.

Columns: the sweep (``sweep_id``, ``sweep_started_at``), the run (``run_id``, ``run_key``,
``task``, ``config`` as canonical JSON (the fields as written), plus one column per swept field), the checkpoint
(``checkpoint``, ``checkpoint_digest``, ``checkpoint_source``), the outcome (``status`` ok / failed
/ skipped, ``error``, ``top1``, ``top5``, ``mean_class_accuracy``, ``wall_time_s``, ``output``).

The run key is the digest of (checkpoint digest, task, canonical config): an ``ok`` row with a run's key
means that run is done, and a later sweep records it as ``skipped`` (carrying the earlier row's
metrics and output) instead of fine-tuning again. Failed runs are not done: the next sweep
retries them. Appending rewrites the whole file atomically (storage.atomic_write_bytes), so a
reader sees the table before or after a row, never half of one; only one writer at a time
(the sweep deployment allows one run at once).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vimpac_core.storage import atomic_write_bytes, exists, join, read_parquet
from vimpac_core.sweep.grid import RunSpec, canonical_json, digest

RESULTS_NAME = "results.parquet"
METRICS = ("top1", "top5", "mean_class_accuracy")
STATUSES = ("ok", "failed", "skipped")
FIXED_SCHEMA = pa.schema([
    ("sweep_id", pa.string()),
    ("sweep_started_at", pa.timestamp("us", tz="UTC")),
    ("run_id", pa.string()),
    ("run_key", pa.string()),
    ("task", pa.string()),
    ("config", pa.string()),
    ("checkpoint", pa.string()),
    ("checkpoint_digest", pa.string()),
    ("checkpoint_source", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("top1", pa.float64()),
    ("top5", pa.float64()),
    ("mean_class_accuracy", pa.float64()),
    ("wall_time_s", pa.float64()),
    ("output", pa.string()),
])


def results_url(output: str) -> str:
    return join(output, RESULTS_NAME)


def run_key(checkpoint_digest: str, run: RunSpec) -> str:
    """What makes two runs the same work: the weights they start from and their whole config."""
    return digest({"checkpoint": checkpoint_digest, "task": run.task, "config": run.canonical})


def read_results(output: str) -> pa.Table | None:
    """The results table of sweep output ``output``, or None before the first row."""
    url = results_url(output)
    return read_parquet(url) if exists(url) else None


def completed_runs(table: pa.Table | None) -> dict[str, dict[str, Any]]:
    """run key -> the latest ``ok`` row with it."""
    if table is None:
        return {}
    return {row["run_key"]: row for row in table.to_pylist() if row["status"] == "ok"}


def _cell(value: Any) -> Any:
    """Swept values as table cells: scalars as they are, anything else as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else canonical_json(value)


def result_row(
    *, sweep_id: str, started_at: datetime, run: RunSpec, key: str, checkpoint: str, checkpoint_digest: str,
    checkpoint_source: str, status: str, output: str, swept: Sequence[str], metrics: dict[str, Any] | None = None,
    wall_time_s: float | None = None, error: str | None = None,
) -> dict[str, Any]:
    """One row of the results table (``swept``: the table's swept-field columns)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    metrics = metrics or {}
    row = {
        "sweep_id": sweep_id, "sweep_started_at": started_at, "run_id": run.run_id, "run_key": key,
        "task": run.task, "config": canonical_json(run.config), "checkpoint": checkpoint,
        "checkpoint_digest": checkpoint_digest, "checkpoint_source": checkpoint_source, "status": status,
        "error": error, "wall_time_s": wall_time_s, "output": output,
        **{m: None if metrics.get(m) is None else float(metrics[m]) for m in METRICS},
    }
    for name in swept:
        row[name] = _cell(run.canonical.get(name, run.config.get(name)))
    return row


def _as_table(rows: list[dict[str, Any]]) -> pa.Table:
    fixed = pa.Table.from_pylist([{k: r[k] for k in FIXED_SCHEMA.names} for r in rows], schema=FIXED_SCHEMA)
    for name in (k for k in rows[0] if k not in FIXED_SCHEMA.names):
        fixed = fixed.append_column(name, pa.array([r.get(name) for r in rows]))
    return fixed


def _concat(old: pa.Table, new: pa.Table) -> pa.Table:
    """Rows of both; a swept column whose type changed between sweeps becomes JSON text in both."""
    for name in set(old.column_names) & set(new.column_names):
        a, b = old.schema.field(name).type, new.schema.field(name).type
        numbers = (pa.types.is_integer(a) or pa.types.is_floating(a)) and (pa.types.is_integer(b) or pa.types.is_floating(b))
        if a != b and not pa.types.is_null(a) and not pa.types.is_null(b) and not numbers:
            old = old.set_column(old.column_names.index(name), name, _texts(old[name]))
            new = new.set_column(new.column_names.index(name), name, _texts(new[name]))
    return pa.concat_tables([old, new], promote_options="permissive")


def _texts(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in column.to_pylist()],
                    type=pa.string())


def append_results(output: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Add ``rows`` to ``<output>/results.parquet`` (created on first use); returns the whole table."""
    if not rows:
        return read_results(output) or FIXED_SCHEMA.empty_table()
    new = _as_table(rows)
    old = read_results(output)
    table = new if old is None else _concat(old, new)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(results_url(output), buffer.getvalue())
    return table
