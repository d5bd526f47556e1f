"""process_shard end to end on real clips: bad input never crashes a shard, reruns, s3."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from vimpac_core.config import DownloadConfig, IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.ingest import failed_video_ids, get_tokenizer, load_plan, prepare_output, process_shard
from vimpac_core.shards.manifest import read_manifest
from vimpac_core.shards.writer import read_shard
from vimpac_core.tokenizers import load_tokenizer
from vimpac_core.video import probe, write_synthetic_video

from .conftest import make_bad_files, write_csv


def _config(lst, out, tokenizer, **kw) -> IngestConfig:
    base = dict(inputs=str(lst), out=str(out), tokenizer=tokenizer, fps=4.0, frame_size=32, batch_size=8,
                decode_window=4, shard_size=50, download=DownloadConfig(retries=1, backoff_s=0.01, timeout_s=5))
    return IngestConfig(**{**base, **kw})


def _run_all(cfg: IngestConfig) -> list[dict]:
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    plan = prepare_output(cfg, tok.tokenizer_id)
    return [process_shard(s, cfg, tok) for s in plan.shards]


def _rows_by_video(out: str) -> dict:
    plan = load_plan(out)
    rows = {}
    for shard in plan.shards:
        table = read_shard(out, shard.shard_id)
        for rec in table.to_pylist():
            key = (rec["video_id"], rec["view"])
            assert key not in rows, f"duplicate row {key}"
            rows[key] = rec
    return rows


def test_bad_inputs_become_manifest_rows_and_good_rows_match_a_clean_run(tmp_path, clips, tiny_tokenizer, http_server):
    base, _ = http_server
    bad = make_bad_files(tmp_path / "bad", clips[0])
    good = [{"uri": str(c), "label": f"class{i % 2}"} for i, c in enumerate(clips[:3])]
    bad_rows = [{"uri": str(p), "label": "class0"} for p in bad.values()]
    bad_rows += [{"uri": f"{base}/gone.mp4", "label": "class1"}, {"uri": f"{base}/notvideo.mp4", "label": "class1"}]
    mixed = [bad_rows[0], good[0], *bad_rows[1:4], good[1], *bad_rows[4:], good[2]]
    clean_out, mixed_out = tmp_path / "clean", tmp_path / "mixed"
    _run_all(_config(write_csv(tmp_path / "clean.csv", good), clean_out, tiny_tokenizer))
    stats = _run_all(_config(write_csv(tmp_path / "mixed.csv", mixed), mixed_out, tiny_tokenizer, shard_size=6))
    assert sum(s["ok"] for s in stats) == 3 and sum(s["failed"] for s in stats) == len(bad_rows)
    manifest = {r.video_id: r for s in stats for r in read_manifest(str(mixed_out), s["shard_id"])}
    errors = {vid: (r.error_class, r.error_type) for vid, r in manifest.items() if r.status == "failed"}
    assert errors == {
        "zero": ("permanent", "VideoError"), "text": ("permanent", "VideoError"),
        "truncated": ("permanent", "VideoError"), "missing": ("permanent", "DownloadError"),
        "one_frame": ("permanent", "VideoError"), "bad_codec": ("permanent", "VideoError"),
        "audio_only": ("permanent", "VideoError"), "gone": ("permanent", "DownloadError"),
        "notvideo": ("permanent", "VideoError"),
    }
    assert all(manifest[v].error_message for v in errors)
    clean_rows, mixed_rows = _rows_by_video(str(clean_out)), _rows_by_video(str(mixed_out))
    assert clean_rows.keys() == mixed_rows.keys()
    for key, rec in clean_rows.items():
        assert mixed_rows[key]["tokens"] == rec["tokens"], key
        assert mixed_rows[key]["timestamps"] == rec["timestamps"]
    classes = json.loads((mixed_out / "classes.json").read_text())["classes"]
    assert classes == ["class0", "class1"]


def test_real_sample_clips_rows_follow_fps_selection(tmp_path, sample_videos, tiny_tokenizer):
    names = ["carphone_pristine", "carphone_distorted"]
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(sample_videos[n]), "label": n} for n in names])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer, fps=2.0, views="test")
    (stats,) = _run_all(cfg)
    assert stats["ok"] == 2 and stats["rows"] == 6  # 2 videos x 3 test views
    rows = _rows_by_video(cfg.out)
    tokenizer_id = load_tokenizer(tiny_tokenizer).tokenizer_id
    assert tokenizer_id.startswith("vqvae:") and len(tokenizer_id) == len("vqvae:") + 64
    for name in names:
        _, expected_times = probe(sample_videos[name]).select(2.0)
        for view in ("s32-top-noflip", "s32-center-noflip", "s32-bottom-noflip"):
            rec = rows[(name, view)]
            assert rec["num_frames"] == len(expected_times) == 8  # 4.004 s at 2 fps
            assert (rec["grid_h"], rec["grid_w"]) == (4, 4)
            np.testing.assert_allclose(rec["timestamps"], expected_times)
            assert rec["tokenizer"] == tokenizer_id and rec["label"] == names.index(name) ^ 1
    import hashlib

    for row in read_manifest(cfg.out, stats["shard_id"]):  # the fetched bytes are recorded
        data = sample_videos[row.video_id].read_bytes()
        assert (row.video_sha256, row.video_bytes) == (hashlib.sha256(data).hexdigest(), len(data))


def test_retry_ids_reprocess_only_failed_videos_without_duplicates(tmp_path, clips, tiny_tokenizer, http_server):
    base, handler = http_server
    flaky = f"/flaky/{clips[1].name}"
    handler.flaky_left[flaky] = 2  # more 503s than one download retry: the first attempt fails
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(clips[0])}, {"uri": base + flaky}, {"uri": str(clips[2])}])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer)
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    (shard,) = prepare_output(cfg, tok.tokenizer_id).shards
    first = process_shard(shard, cfg, tok)
    assert (first["ok"], first["failed"]) == (2, 1)
    assert failed_video_ids(cfg.out, shard) == {"clip1"}
    before = read_shard(cfg.out, shard.shard_id).to_pylist()
    second = process_shard(shard, cfg, tok, retry_ids={"clip1"})
    assert (second["ok"], second["failed"], second["extracted"]) == (3, 0, 1)
    after = read_shard(cfg.out, shard.shard_id).to_pylist()
    assert [r["video_id"] for r in after] == ["clip0", "clip1", "clip2"]  # list order, no duplicates
    assert [r for r in after if r["video_id"] != "clip1"] == before
    history = [(r.video_id, r.attempts, r.status) for r in read_manifest(cfg.out, shard.shard_id)]
    # one manifest row per video per attempt: the failed first attempt stays as history
    assert history == [("clip0", 1, "ok"), ("clip1", 1, "failed"), ("clip2", 1, "ok"), ("clip1", 2, "ok")]
    assert failed_video_ids(cfg.out, shard) == set()


def test_plan_ids_are_stable_and_an_out_folder_holds_one_plan(tmp_path, clips, tiny_tokenizer):
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(c)} for c in clips])
    tok_id = get_tokenizer(tiny_tokenizer).tokenizer_id
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer, shard_size=3)
    ids = [s.shard_id for s in prepare_output(cfg, tok_id).shards]
    assert ids == [s.shard_id for s in prepare_output(cfg, tok_id).shards]
    assert [i.split("-")[0] for i in ids] == ["00000", "00001"]
    other = cfg.model_copy(update={"fps": 1.0})
    with pytest.raises(ConfigError, match="new --out"):
        prepare_output(other, tok_id)
    moved = other.model_copy(update={"out": str(tmp_path / "out2")})
    assert not set(ids) & {s.shard_id for s in prepare_output(moved, tok_id).shards}


def test_s3_inputs_and_s3_output(tmp_path, s3_bucket, clips, tiny_tokenizer):
    import s3fs

    fs = s3fs.S3FileSystem()
    for c in clips[:2]:
        fs.put(str(c), f"{s3_bucket}/videos/{c.name}")
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"{c.name} {i}\n" for i, c in enumerate(clips[:2])))
    out = f"s3://{s3_bucket}/tokens"
    cfg = _config(lst, out, tiny_tokenizer, root=f"s3://{s3_bucket}/videos")
    (stats,) = _run_all(cfg)
    assert (stats["ok"], stats["rows"]) == (2, 2)
    fs.invalidate_cache()
    assert fs.exists(f"{s3_bucket}/tokens/classes.json")
    rows = _rows_by_video(out)
    assert {k[0] for k in rows} == {"clip0", "clip1"}
    assert rows[("clip1", "s32-center-noflip")]["source_uri"] == f"s3://{s3_bucket}/videos/clip1.mp4"


def test_inspect_reads_an_output_folder_without_prefect(tmp_path, clips, tiny_tokenizer):
    import subprocess
    import sys

    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(clips[0]), "label": "x"}, {"uri": str(bad), "label": "y"}])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer)
    _run_all(cfg)
    code = ("import json, sys; from vimpac_cli import main; rc = main(['inspect', sys.argv[1], '--json']); "
            "assert 'prefect' not in sys.modules, 'inspect imported prefect'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, cfg.out], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["shards_committed"], info["rows"], info["videos_ok"], info["videos_failed"]) == (1, 1, 1, 1)
    assert info["failures"] == {"permanent/VideoError": 1} and info["failed_videos"][0]["video_id"] == "bad"


def test_a_shard_left_uncommitted_is_redone_whole_by_a_retry(tmp_path, clips, tiny_tokenizer):
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(c)} for c in clips[:2]])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer)
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    (shard,) = prepare_output(cfg, tok.tokenizer_id).shards
    process_shard(shard, cfg, tok)
    (tmp_path / "out" / "manifest" / f"{shard.shard_id}.parquet").unlink()  # killed between shard and manifest
    assert failed_video_ids(cfg.out, shard) is None
    stats = process_shard(shard, cfg, tok, retry_ids=set())
    assert (stats["extracted"], stats["ok"], stats["rows"]) == (2, 2, 2)
    assert [r.attempts for r in read_manifest(cfg.out, shard.shard_id)] == [1, 1]
    assert read_shard(cfg.out, shard.shard_id).column("video_id").to_pylist() == ["clip0", "clip1"]


def _stop_decoder_when_it_opens(path: Path, done: threading.Event, stopped: list[int]) -> None:
    """Freeze (SIGSTOP) the decoder worker as soon as it has ``path`` open: a real hang, whatever
    phase (probe or decode) it is in. The caller's timeout must then kill it."""
    import psutil

    from vimpac_core.video import live_worker_pids

    target = str(path.resolve())
    while not done.is_set() and not stopped:
        for pid in live_worker_pids():
            try:
                if any(f.path == target for f in psutil.Process(pid).open_files()):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.002)


def test_a_hung_decoder_is_killed_and_recorded_and_the_shard_goes_on(tmp_path, clips, tiny_tokenizer):
    victim = write_synthetic_video(tmp_path / "victim.mp4", num_frames=400, fps=25, width=48, height=32, seed=9)
    entries = [{"uri": str(clips[0])}, {"uri": str(victim)}, {"uri": str(clips[2])}]
    cfg = _config(write_csv(tmp_path / "l.csv", entries), tmp_path / "out", tiny_tokenizer,
                  probe_timeout_s=3.0, decode_timeout_s=3.0)
    clean = _config(write_csv(tmp_path / "c.csv", [entries[0], entries[2]]), tmp_path / "clean", tiny_tokenizer)
    _run_all(clean)
    done, stopped = threading.Event(), []
    watcher = threading.Thread(target=_stop_decoder_when_it_opens, args=(victim, done, stopped), daemon=True)
    watcher.start()
    try:
        (stats,) = _run_all(cfg)
    finally:
        done.set()
        watcher.join()
    assert stopped, "the watcher never saw the victim open: the test proved nothing"
    assert not psutil.pid_exists(stopped[0]) or psutil.Process(stopped[0]).status() == psutil.STATUS_ZOMBIE
    assert (stats["ok"], stats["failed"]) == (2, 1)
    row = {r.video_id: r for r in read_manifest(cfg.out, stats["shard_id"])}["victim"]
    assert (row.status, row.error_class, row.error_type) == ("failed", "retriable", "DecodeTimeoutError")
    assert "3" in row.error_message and "killed" in row.error_message
    got, want = _rows_by_video(cfg.out), _rows_by_video(clean.out)
    assert got.keys() == want.keys()
    for key, rec in want.items():
        assert got[key]["tokens"] == rec["tokens"]
    # The hang was transient: a retry of that video alone now succeeds.
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    retry = process_shard(load_plan(cfg.out).shards[0], cfg, tok, retry_ids={"victim"})
    assert (retry["ok"], retry["failed"], retry["extracted"]) == (3, 0, 1)


def test_a_stored_copy_that_failed_permanently_is_fetched_again_on_retry(tmp_path, clips, tiny_tokenizer,
                                                                          http_server):
    base, handler = http_server
    www = tmp_path / "www"
    (www / "fixme.mp4").write_bytes(b"\x00garbage, not a video" * 50)
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(clips[0])}, {"uri": f"{base}/fixme.mp4"}])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer,
                  download=DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5))
    (first,) = _run_all(cfg)
    assert (first["ok"], first["failed"]) == (1, 1)
    shard = load_plan(cfg.out).shards[0]
    assert failed_video_ids(cfg.out, shard, include_permanent=True) == {"fixme"}
    (www / "fixme.mp4").write_bytes(clips[1].read_bytes())  # the source was fixed
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    retry = process_shard(shard, cfg, tok, retry_ids={"fixme"})
    assert (retry["ok"], retry["failed"]) == (2, 0)
    assert handler.hits["/fixme.mp4"] == 2  # the bad stored copy was dropped, not reused


def test_a_stop_request_leaves_the_shard_uncommitted_and_blames_no_video(tmp_path, clips, tiny_tokenizer):
    from vimpac_core import interrupts
    from vimpac_core.errors import Interrupted

    cfg = _config(write_csv(tmp_path / "l.csv", [{"uri": str(c), "label": "a"} for c in clips[:2]]),
                  tmp_path / "out", tiny_tokenizer)
    tok = get_tokenizer(cfg.tokenizer, cfg.device, cfg.batch_size)
    (shard,) = prepare_output(cfg, tok.tokenizer_id).shards
    interrupts.request_stop(signal.SIGTERM)
    try:
        with pytest.raises(Interrupted, match="stopped by SIGTERM"):
            process_shard(shard, cfg, tok)
    finally:
        interrupts.reset()
    assert read_manifest(cfg.out, shard.shard_id) is None and read_shard(cfg.out, shard.shard_id) is None
    process_shard(shard, cfg, tok)  # the same shard later: committed whole
    assert [r.status for r in read_manifest(cfg.out, shard.shard_id)] == ["ok", "ok"]
