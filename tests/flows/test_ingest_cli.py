"""`vimpac ingest | inspect | rerun-failed` end to end as subprocesses (real Prefect server,
moto S3, localhost http), and a kill -9 in the middle of an ingest followed by `rerun-failed`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.ingest.conftest import write_csv

pytestmark = pytest.mark.slow
COMMON = ["--fps", "4", "--frame-size", "32", "--batch-size", "8", "--download-retries", "1"]


def vimpac(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "vimpac_cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"vimpac {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def test_cli_ingest_inspect_rerun_failed_on_s3(prefect_server, s3_bucket, clips, tiny_tokenizer, http_server):
    import s3fs

    base, handler = http_server
    fs = s3fs.S3FileSystem()
    for c in clips[:2]:
        fs.put(str(c), f"{s3_bucket}/videos/{c.name}")
    fs.pipe(f"{s3_bucket}/videos/readme.mp4", b"not a video")
    flaky = f"/flaky/{clips[2].name}"
    handler.flaky_left[flaky] = 4
    lines = [f"{clips[0].name} 0", f"{clips[1].name} 1", "readme.mp4 1", f"{base}{flaky} 0"]
    fs.pipe(f"{s3_bucket}/lists/train.txt", ("\n".join(lines) + "\n").encode())
    out = f"s3://{s3_bucket}/tokens"

    proc = vimpac("ingest", f"s3://{s3_bucket}/lists/train.txt", "--root", f"s3://{s3_bucket}/videos", "--out", out,
                  "--tokenizer", tiny_tokenizer, "--shard-size", "2", *COMMON)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["shards"], summary["ok"], summary["failed"]) == (2, 2, 2)

    info = json.loads(vimpac("inspect", out, "--json").stdout)
    assert (info["shards_committed"], info["rows"], info["videos_failed"]) == (2, 2, 2)
    assert info["failures"] == {"permanent/VideoError": 1, "retriable/TransientDownloadError": 1}
    assert info["tokenizer"].startswith("vqvae:") and info["fps"] == 4.0 and info["classes"] == 2

    handler.flaky_left[flaky] = 0
    rerun = json.loads(vimpac("rerun-failed", out).stdout.strip().splitlines()[-1])
    assert (rerun["shards"], rerun["extracted_videos"], rerun["ok"], rerun["failed"]) == (1, 1, 1, 1)
    text = vimpac("inspect", out).stdout
    assert "2/2 committed, 3 rows" in text and "3 ok, 1 failed" in text and "readme" in text
    fs.invalidate_cache()
    assert fs.exists(f"{s3_bucket}/tokens/_prefect_results")  # persisted task results live beside the shards


def _valid_parquet_files(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.glob("*.parquet")):
        pq.read_table(path)  # a partial file would not parse
        names.append(path.stem)
    return names


def test_kill_9_mid_ingest_then_rerun_failed_completes_without_duplicates(prefect_server, tmp_path, sample_videos,
                                                                   tiny_tokenizer):
    rows = [{"uri": str(p), "video_id": f"{name}-{k}"} for k in range(2) for name, p in sorted(sample_videos.items())]
    lst = write_csv(tmp_path / "list.csv", rows)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vimpac_cli", "ingest", str(lst), "--out", str(out), "--tokenizer",
            tiny_tokenizer, "--shard-size", "1", "--max-workers", "1", "--fps", "25", "--frame-size", "64",
            "--batch-size", "16"]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    try:
        while not list((out / "manifest").glob("*.parquet")):
            assert proc.poll() is None, "ingest ended before its first shard committed"
            assert time.monotonic() < deadline, "no shard committed in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decode workers, mid-run
        proc.wait()
    committed = _valid_parquet_files(out / "manifest")
    assert 1 <= len(committed) < len(rows), "the kill must land mid-ingest"
    assert set(committed) <= set(_valid_parquet_files(out / "shards"))  # manifest only after its shard

    rerun = json.loads(vimpac("rerun-failed", str(out)).stdout.strip().splitlines()[-1])
    assert rerun["shards"] == len(rows) - len(committed)  # only the shards that never committed
    info = json.loads(vimpac("inspect", str(out), "--json").stdout)
    assert (info["shards_committed"], info["videos_ok"], info["rows"]) == (len(rows), len(rows), len(rows))
    ids = [r for name in _valid_parquet_files(out / "shards")
           for r in pq.read_table(out / "shards" / f"{name}.parquet").column("video_id").to_pylist()]
    assert sorted(ids) == sorted(r["video_id"] for r in rows)  # complete, no duplicates
    for name in committed:  # shards committed before the kill were skipped, not redone
        assert pq.read_table(out / "manifest" / f"{name}.parquet").column("attempts").to_pylist() == [1]
    assert not [p.name for sub in ("shards", "manifest") for p in (out / sub).iterdir() if p.name.startswith(".")]
