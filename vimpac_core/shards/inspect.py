"""What an ingest output folder holds (`vimpac inspect`): its plan, committed shards and rows, and
every video's latest outcome with failures counted by class/type. Reads Parquet/JSON only."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq

from vimpac_core.shards.manifest import ManifestRow, committed_shards, latest_attempts, read_all_manifests
from vimpac_core.shards.writer import shard_url
from vimpac_core.storage import get_fs


def inspect_output(out: str) -> dict:
    """Summary of the ingest output ``out``: tokenizer, fps, frame_size, views, classes, shards
    planned/committed, videos ok/failed (a video's state is its latest attempt), attempts, rows,
    failures by ``error_class/error_type`` and the failed videos with their last error."""
    from vimpac_core.ingest import load_plan

    plan = load_plan(out)
    history = read_all_manifests(out).to_pylist()
    manifest = [vars(r) for r in latest_attempts([ManifestRow(**m) for m in history])]
    committed = committed_shards(out)
    rows = 0
    for shard_id in committed:  # only shards whose manifest exists are done
        fs, path = get_fs(shard_url(out, shard_id))
        with fs.open(path, "rb") as f:
            rows += pq.ParquetFile(f).metadata.num_rows
    failed = [m for m in manifest if m["status"] == "failed"]
    return {
        "out": out,
        "tokenizer": plan.tokenizer_id,
        "fps": plan.config.fps,
        "frame_size": plan.config.frame_size,
        "views": plan.config.views,
        "classes": len(plan.classes),
        "shards_planned": len(plan.shards),
        "shards_committed": len(committed),
        "videos": len(manifest),
        "attempts": len(history),
        "videos_ok": len(manifest) - len(failed),
        "videos_failed": len(failed),
        "rows": rows,
        "failures": {f"{c}/{t}": n for (c, t), n in sorted(Counter((m["error_class"], m["error_type"]) for m in failed).items())},
        "failed_videos": [{"video_id": m["video_id"], "error": f"{m['error_type']}: {m['error_message']}",
                           "attempts": m["attempts"]} for m in failed],
    }


def format_inspection(info: dict, limit: int = 20) -> str:
    """`inspect_output`'s summary as the text `vimpac inspect` prints (at most ``limit`` failed videos)."""
    lines = [
        f"{info['out']}\n  tokenizer  {info['tokenizer']}\n  fps {info['fps']}  frame_size {info['frame_size']}"
        f"  views {info['views']}  classes {info['classes']}",
        f"  shards     {info['shards_committed']}/{info['shards_planned']} committed, {info['rows']} rows",
        f"  videos     {info['videos_ok']} ok, {info['videos_failed']} failed",
    ]
    lines += [f"    {key:<40} {n}" for key, n in info["failures"].items()]
    lines += [f"    - {v['video_id']} (attempts {v['attempts']}): {v['error'][:160]}" for v in info["failed_videos"][:limit]]
    return "\n".join(lines)
