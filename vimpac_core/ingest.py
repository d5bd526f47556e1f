"""Ingest, library level: plan shards from a video list and process one shard.

One shard: for each video, stage (download) -> probe -> select frames at the target FPS ->
decode the views in bounded windows; a producer thread does this while the caller's thread
encodes batches of frames with the tokenizer (decode overlapped with encode). Then the shard is
written atomically, then its manifest (the done marker). A bad video never fails its shard: it
becomes a manifest row with its error class, type and message.

Prefect-free on purpose: ``vimpac_tasks/ingest.py`` wraps these functions.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from vimpac_core import interrupts
from vimpac_core.config import IngestConfig
from vimpac_core.download import SharedStaging, drop_stored_copy
from vimpac_core.errors import ConfigError, Interrupted, SegmentError, VideoError, VimpacError
from vimpac_core.ingest_conflicts import plan_conflict
from vimpac_core.inputs import VideoEntry, read_video_list
from vimpac_core.shards.manifest import (
    ManifestRow,
    latest_attempts,
    manifest_url,
    read_manifest,
    write_manifest,
)
from vimpac_core.shards.schema import CLASSES_FILE, PLAN_FILE
from vimpac_core.shards.writer import TokenRow, read_shard, shard_url, write_shard
from vimpac_core.storage import atomic_write_bytes, exists, join, read_bytes, remove_stale_temps

_QUEUE_WINDOWS = 4  # decoded windows buffered between decode and encode (bounds memory)


class ShardPlan(BaseModel):
    """The videos of one shard; ``shard_id`` derives from them, the settings and the tokenizer."""

    model_config = ConfigDict(frozen=True)

    shard_id: str = Field(description="Stable id <index:05d>-<12 hex> of the videos, settings and tokenizer.")
    entries: tuple[VideoEntry, ...] = Field(description="The shard's videos, in list order.")


class IngestPlan(BaseModel):
    """What an output folder holds: written once as ``ingest_plan.json`` next to the shards."""

    config: IngestConfig = Field(description="The ingest settings the folder was written with.")
    tokenizer_id: str = Field(description="Id of the tokenizer (weights and precision) that made the tokens.")
    classes: list[str] = Field(description="Class names; a label is its index here.")
    shards: list[ShardPlan] = Field(description="Every shard of the folder, in order.")


def shard_id_for(index: int, entries: Iterable[VideoEntry], settings: dict, tokenizer_id: str) -> str:
    """``"<index:05d>-<12 hex>"``: stable for the same videos, settings and tokenizer."""
    payload = json.dumps(
        {"videos": [e.identity() for e in entries], "settings": settings, "tokenizer": tokenizer_id},
        sort_keys=True,
    )
    return f"{index:05d}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def plan_shards(entries: list[VideoEntry], config: IngestConfig, tokenizer_id: str) -> list[ShardPlan]:
    """Cut the list, in order, into shards of ``config.shard_size`` videos."""
    settings = config.extraction_settings()
    chunks = [entries[i : i + config.shard_size] for i in range(0, len(entries), config.shard_size)]
    return [ShardPlan(shard_id=shard_id_for(i, c, settings, tokenizer_id), entries=tuple(c)) for i, c in enumerate(chunks)]


def plan_ingest(config: IngestConfig, tokenizer_id: str) -> IngestPlan:
    """Read the list and plan the shards, writing nothing: every input error that can be found
    without decoding (list format, columns, rows, duplicate ids, labels, an output folder holding
    another ingest) raises ConfigError here, in one line.

    Raises ConfigError when ``config.out`` already holds another ingest (other list or settings):
    shards of two plans must never mix in one folder.
    """
    entries, classes = read_video_list(config.inputs, root=config.root, list_format=config.list_format,
                                       class_index=config.class_index)
    plan = IngestPlan(config=config, tokenizer_id=tokenizer_id, classes=classes,
                      shards=plan_shards(entries, config, tokenizer_id))
    plan_url = join(config.out, PLAN_FILE)
    if exists(plan_url):
        old = IngestPlan.model_validate_json(read_bytes(plan_url))
        if [s.shard_id for s in old.shards] != [s.shard_id for s in plan.shards] or old.classes != classes:
            raise ConfigError(plan_conflict(config.out, old, plan))
    return plan


def prepare_output(config: IngestConfig, tokenizer_id: str) -> IngestPlan:
    """:func:`plan_ingest`, then write ``classes.json`` + the plan into ``config.out``."""
    plan = plan_ingest(config, tokenizer_id)
    atomic_write_bytes(join(config.out, CLASSES_FILE), json.dumps({"classes": plan.classes}, indent=1).encode())
    atomic_write_bytes(join(config.out, PLAN_FILE), plan.model_dump_json(indent=1).encode())
    return plan


def load_plan(out: str) -> IngestPlan:
    """The plan an earlier ``prepare_output`` wrote into ``out``."""
    url = join(out, PLAN_FILE)
    if not exists(url):
        raise ConfigError(f"{out} holds no {PLAN_FILE}: run `vimpac ingest` into it first")
    return IngestPlan.model_validate_json(read_bytes(url))


def failed_video_ids(out: str, shard: ShardPlan, *, include_permanent: bool = False) -> set[str] | None:
    """Videos of a committed shard to retry; None when the shard never committed (redo it all)."""
    rows = read_manifest(out, shard.shard_id)
    if rows is None:
        return None
    rows = latest_attempts(rows)
    wanted = {"retriable", "permanent"} if include_permanent else {"retriable"}
    return {r.video_id for r in rows if r.status == "failed" and r.error_class in wanted}


@lru_cache(maxsize=4)
def get_tokenizer(spec: str, device: str = "cpu", batch_size: int = 64, precision: str = "fp32"):
    """The tokenizer of ``spec``, loaded once per process (tasks of one worker share it)."""
    from vimpac_core.tokenizers import load_tokenizer

    return load_tokenizer(spec, device=device, batch_size=batch_size, precision=precision)


@dataclass
class _VideoResult:
    entry: VideoEntry
    timestamps: np.ndarray | None = None
    codes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    error: BaseException | None = None
    video_sha256: str | None = None
    video_bytes: int | None = None
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("download_s", "probe_s", "decode_s", "encode_s"), 0.0))


def _decode_video(entry: VideoEntry, config: IngestConfig, views, res: _VideoResult,
                  sources: SharedStaging) -> Iterator[dict[str, np.ndarray]]:
    """Stage, probe, select (inside the entry's segment, if any) and decode one video; yields
    windows {view: uint8 [n, S, S, 3]}. Segments of one file share its staged copy."""
    from vimpac_core.video import read_fps_frames

    staged, fetched = sources.acquire(entry.uri, entry.source_id)
    res.timings["download_s"] = staged.download_s if fetched else 0.0
    res.video_sha256, res.video_bytes = staged.sha256, staged.num_bytes
    t = time.perf_counter()
    try:
        try:
            frames = read_fps_frames(staged.path, config.fps, views, segment=entry.window,
                                     probe_timeout_s=config.probe_timeout_s, window=config.decode_window,
                                     decode_timeout_s=config.decode_timeout_s)
        finally:
            res.timings["probe_s"] = time.perf_counter() - t
        res.timestamps = frames.timestamps
        t = time.perf_counter()
        for window in frames.windows:
            res.timings["decode_s"] += time.perf_counter() - t
            yield window
            t = time.perf_counter()
    finally:
        sources.release(entry.uri)


def _produce(entries, config, views, results, out_q: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: put ("frames", i, window) / ("done", i) / ("end", exc) on ``out_q``."""
    sources = SharedStaging([e.uri for e in entries], config.download)
    try:
        for i, entry in enumerate(entries):
            interrupts.check_stop(f"before {entry.uri}")
            try:
                for window in _decode_video(entry, config, views, results[i], sources):
                    if stop.is_set():
                        return
                    out_q.put(("frames", i, window))
            except Interrupted:
                raise  # stopped from outside: not this video's failure; the shard is dropped whole
            except Exception as exc:  # any per-video failure is recorded, never fatal for the shard
                results[i].error = exc
            out_q.put(("done", i, None))
        out_q.put(("end", None, None))
    except BaseException as exc:  # noqa: BLE001 - hand it to the consumer thread
        out_q.put(("end", None, exc))
    finally:
        sources.close()


def _encode_pending(tokenizer, pending: list[tuple[int, str, np.ndarray]], results) -> None:
    """Encode the buffered windows as one batch and append the codes to their videos."""
    frames = np.concatenate([p[2] for p in pending])
    t = time.perf_counter()
    codes = tokenizer.encode(frames)
    spent = time.perf_counter() - t
    start = 0
    for i, view, arr in pending:
        n = len(arr)
        results[i].codes.setdefault(view, []).append(codes[start : start + n])
        results[i].timings["encode_s"] += spent * n / len(frames)
        start += n
    pending.clear()


def extract_videos(entries: list[VideoEntry], config: IngestConfig, tokenizer, *, desc: str = "") -> list[_VideoResult]:
    """Decode (producer thread) and encode (this thread) every video; results in entry order."""
    from vimpac_core.video import view_set

    views = view_set(config.views, config.frame_size, flip=config.flip)
    results = [_VideoResult(e) for e in entries]
    q: queue.Queue = queue.Queue(maxsize=_QUEUE_WINDOWS)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(entries, config, views, results, q, stop), daemon=True)
    producer.start()
    pending: list[tuple[int, str, np.ndarray]] = []
    buffered = 0
    bar = tqdm(total=len(entries), desc=desc or "videos", unit="video", leave=False, disable=None)
    try:
        while True:
            kind, i, payload = q.get()
            if kind == "end":
                if payload is not None:
                    raise payload
                break
            if kind == "done":
                bar.update(1)
                continue
            for view_name, arr in payload.items():
                pending.append((i, view_name, arr))
                buffered += len(arr)
            if buffered >= config.batch_size:
                interrupts.check_stop(desc)
                _encode_pending(tokenizer, pending, results)
                buffered = 0
        if pending:
            _encode_pending(tokenizer, pending, results)
    finally:
        stop.set()
        bar.close()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                producer.join(timeout=0.05)
    return results


def _rows_of(res: _VideoResult, view_names: list[str], config: IngestConfig, tokenizer_id: str) -> list[TokenRow]:
    return [
        TokenRow(video_id=res.entry.video_id, view=name, label=res.entry.label, split=res.entry.split,
                 codes=np.concatenate(res.codes[name]), timestamps=res.timestamps, fps=config.fps,
                 source_uri=res.entry.uri, tokenizer=tokenizer_id)
        for name in view_names
    ]


def _check_complete(res: _VideoResult, view_names: list[str]) -> None:
    n = 0 if res.timestamps is None else len(res.timestamps)
    got = {v: sum(len(c) for c in res.codes.get(v, [])) for v in view_names}
    if any(count != n for count in got.values()):
        raise VideoError(f"{res.entry.uri}: decoded {got} frames per view, expected {n}; the file may be truncated")


def _video_outcome(shard_id: str, res: _VideoResult, attempts: int, view_names: list[str], config: IngestConfig,
                   tokenizer_id: str, run_id: str | None) -> tuple[list[TokenRow], ManifestRow]:
    """The shard rows (one per view; none on failure) and the manifest row of one extracted video."""
    entry = res.entry
    if res.error is None:
        try:
            _check_complete(res, view_names)
        except VimpacError as exc:
            res.error = exc
    common = dict(attempts=attempts, run_id=run_id, video_sha256=res.video_sha256, video_bytes=res.video_bytes,
                  **{k: float(v) for k, v in res.timings.items()})
    if res.error is not None:
        return [], ManifestRow.failure(shard_id, entry.video_id, entry.uri, res.error, **common)
    rows = _rows_of(res, view_names, config, tokenizer_id)
    return rows, ManifestRow(shard_id=shard_id, video_id=entry.video_id, source_uri=entry.uri, status="ok",
                             rows=len(rows), num_frames=len(res.timestamps), **common)


def _committed(out: str, shard_id: str) -> tuple[list[ManifestRow], dict[str, list[dict]]] | None:
    """(every manifest row, shard records per video) of a committed shard; None when not committed."""
    manifest = read_manifest(out, shard_id)
    table = read_shard(out, shard_id)
    if not manifest or table is None:
        return None
    return manifest, _group_by_video(table.to_pylist())


def process_shard(shard: ShardPlan, config: IngestConfig, tokenizer, *, retry_ids: set[str] | None = None,
                  run_id: str | None = None) -> dict:
    """Extract a shard and commit it (shard file, then manifest); returns its stats.

    Args:
        retry_ids: None: extract every video (a fresh shard). A set: the shard is committed;
            re-extract only these videos, keep the other rows, rewrite shard and manifest whole
            (no duplicate token rows, nothing lost; each retried video gets a new manifest row
            with ``attempts`` one higher, its earlier rows stay as history). A shard
            that never committed is extracted whole whatever ``retry_ids`` says.
    Returns:
        {"shard_id", "videos", "ok", "failed", "rows", "frames", "seconds", "extracted"} (extracted: videos decoded and encoded by this call).
    """
    from vimpac_core.video import view_set

    start = time.perf_counter()
    view_names = [v.name for v in view_set(config.views, config.frame_size, flip=config.flip)]
    committed = _committed(config.out, shard.shard_id) if retry_ids is not None else None
    history, old_rows = committed or ([], {})
    previous = {r.video_id: r for r in latest_attempts(history)}
    todo = [e for e in shard.entries if committed is None or e.video_id in retry_ids]
    results = {r.entry.video_id: r for r in extract_videos(todo, config, tokenizer, desc=shard.shard_id)}
    token_rows: list = []
    manifest: list[ManifestRow] = list(history)  # earlier attempts stay as history
    for entry in shard.entries:  # list order, so a rerun writes rows where a clean run would
        res = results.get(entry.video_id)
        if res is None:  # not retried: keep its committed rows as they are
            token_rows.extend(old_rows.get(entry.video_id, []))
            continue
        before = previous.get(entry.video_id)
        rows, row = _video_outcome(shard.shard_id, res, before.attempts + 1 if before else 1, view_names,
                                   config, tokenizer.tokenizer_id, run_id)
        if row.status == "failed" and row.error_class == "permanent" and not isinstance(res.error, SegmentError):
            drop_stored_copy(entry.uri, entry.source_id, config.download)  # a later retry fetches the source again
        token_rows.extend(rows)
        manifest.append(row)
    for url in (shard_url(config.out, shard.shard_id), manifest_url(config.out, shard.shard_id)):
        remove_stale_temps(url)  # this task owns the shard: what a killed earlier attempt left is garbage
    # A stop request drops the shard in flight: it is not committed (its manifest is the marker).
    interrupts.check_stop(f"shard {shard.shard_id}")
    write_shard(config.out, shard.shard_id, token_rows)  # no stop between these two: a retried shard's
    write_manifest(config.out, shard.shard_id, manifest)  # new rows must meet their manifest at once
    return shard_stats(shard.shard_id, latest_attempts(manifest), time.perf_counter() - start, extracted=len(todo))


def _group_by_video(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for rec in records:
        grouped.setdefault(rec["video_id"], []).append(rec)
    return grouped


def shard_stats(shard_id: str, manifest: list[ManifestRow], seconds: float, *, extracted: int) -> dict:
    """Per-shard figures for logs and the Prefect table artifact."""
    ok = [r for r in manifest if r.status == "ok"]
    return {
        "shard_id": shard_id,
        "videos": len(manifest),
        "ok": len(ok),
        "failed": len(manifest) - len(ok),
        "rows": sum(r.rows for r in ok),
        "frames": sum((r.num_frames or 0) * r.rows for r in ok),
        "seconds": round(seconds, 3),
        "extracted": extracted,
    }


def committed_stats(out: str, shard_id: str) -> dict | None:
    """Stats of an already committed shard (None when its manifest is absent)."""
    rows = read_manifest(out, shard_id)
    return None if rows is None else shard_stats(shard_id, latest_attempts(rows), 0.0, extracted=0)
