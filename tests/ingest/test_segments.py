"""Segments [start, end) of a longer video (Kinetics-style lists): parsing and ids, frames chosen
inside the window (checked against FFmpeg cutting the segment out first), and one download per
source file whatever the number of its segments (a real http server counts the requests)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.video.conftest import ffmpeg_rgb24
from vimpac_core.config import DownloadConfig, IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.ingest import get_tokenizer, load_plan, prepare_output, process_shard, shard_id_for
from vimpac_core.inputs import VideoEntry, read_video_list
from vimpac_core.shards.manifest import read_manifest
from vimpac_core.shards.writer import read_shard
from vimpac_core.video import read_frame_index, write_synthetic_video

from .conftest import write_csv

W, H, RATE = 64, 48, 10.0
SEGMENTS = [(1.0, 3.0), (3.55, 5.25)]


def test_segments_get_distinct_ids_and_bad_windows_name_the_row(tmp_path):
    rows = [{"uri": "a/long.mp4", "start": "1", "end": "3"}, {"uri": "a/long.mp4", "start": "3.5", "end": "5.25"},
            {"uri": "a/long.mp4", "start": "", "end": ""}, {"uri": "b/long.mp4", "start": "1", "end": "3"},
            {"uri": "a/other.mp4", "start": "2", "end": "4", "video_id": "mine"}]
    rows = [{"video_id": "", **r} for r in rows]
    entries, _ = read_video_list(str(write_csv(tmp_path / "l.csv", rows)))
    ids = [e.video_id for e in entries]
    assert ids[1:3] == ["long_3.500_5.250", "long"] and ids[4] == "mine"
    assert ids[0].startswith("long_000001_000003-") and ids[3].startswith("long_000001_000003-")  # two folders
    assert len(set(ids)) == 5
    assert [e.window for e in entries] == [(1.0, 3.0), (3.5, 5.25), None, (1.0, 3.0), (2.0, 4.0)]
    for start, end, message in [("3", "3", "row 1: end 3 is not after start 3"), ("-1", "", "row 1: start '-1'"),
                                ("x", "2", "row 1: start 'x' is not a time")]:
        bad = write_csv(tmp_path / "bad.csv", [{"uri": "v.mp4", "start": start, "end": end}])
        with pytest.raises(ConfigError, match=message):
            read_video_list(str(bad))


def test_whole_videos_keep_the_shard_ids_they_had_before_segments():
    entry = VideoEntry(uri="/v/a.mp4", video_id="a", label=1, split="train")
    old_payload = {"videos": [{"uri": "/v/a.mp4", "video_id": "a", "label": 1, "split": "train"}],
                   "settings": {"fps": 2.0}, "tokenizer": "t"}
    old_id = hashlib.sha256(json.dumps(old_payload, sort_keys=True).encode()).hexdigest()[:12]
    assert shard_id_for(0, [entry], {"fps": 2.0}, "t") == f"00000-{old_id}"
    segment = entry.model_copy(update={"start": 1.0, "end": 2.0})
    assert shard_id_for(0, [segment], {"fps": 2.0}, "t") != f"00000-{old_id}"


@pytest.fixture
def long_video(http_server, tmp_path):
    """A 6 s clip at 10 fps served over http (frames carry their index); yields (url, path, handler)."""
    base, handler = http_server
    path = write_synthetic_video(tmp_path / "www" / "long.mp4", num_frames=60, fps=RATE, width=W, height=H, crf=10)
    return f"{base}/long.mp4", path, handler


def _config(lst, out, tokenizer, **kw) -> IngestConfig:
    base = dict(inputs=str(lst), out=str(out), tokenizer=tokenizer, fps=4.0, frame_size=32, batch_size=8,
                decode_window=4, download=DownloadConfig(retries=0, timeout_s=10))
    return IngestConfig(**{**base, **kw})


def _ingest(cfg: IngestConfig) -> tuple[dict, dict]:
    """Ingest every shard; (shard records by video id, latest manifest rows by video id)."""
    tok = get_tokenizer(cfg.tokenizer)
    prepare_output(cfg, tok.tokenizer_id)
    records, manifest = {}, {}
    for shard in load_plan(cfg.out).shards:
        process_shard(shard, cfg, tok)
        records.update({r["video_id"]: r for r in read_shard(cfg.out, shard.shard_id).to_pylist()})
        manifest.update({r.video_id: r for r in read_manifest(cfg.out, shard.shard_id)})
    return records, manifest


def _ffmpeg_cut_times(path, start: float, end: float, fps: float) -> np.ndarray:
    """Source times of the frames FFmpeg keeps when it cuts [start, end) out, then samples at fps."""
    frames = ffmpeg_rgb24(path, f"trim=start={start}:end={end},setpts=PTS-STARTPTS,fps={fps}", H, W)
    return np.array([read_frame_index(f) for f in frames]) / RATE


def test_segment_frames_lie_inside_the_window_and_one_download_serves_them_all(tmp_path, long_video,
                                                                              tiny_tokenizer):
    url, path, handler = long_video
    rows = [{"uri": url, "start": s, "end": e, "label": k} for k, (s, e) in enumerate(SEGMENTS)]
    rows.append({"uri": url, "start": 10, "end": 12, "label": 0})  # past the video's end
    lst = write_csv(tmp_path / "segments.csv", rows)
    store = tmp_path / "store"
    # One video per shard: the second and third segments find the first one's stored copy.
    records, manifest = _ingest(_config(lst, tmp_path / "out", tiny_tokenizer, shard_size=1,
                                        download=DownloadConfig(store=str(store), retries=0, timeout_s=10)))
    assert handler.hits["/long.mp4"] == 1
    ids = ["long_000001_000003", "long_3.550_5.250", "long_000010_000012"]
    assert sorted(records) == ids[:2]
    for vid, (start, end) in zip(ids, SEGMENTS, strict=False):
        times = np.asarray(records[vid]["timestamps"])
        assert np.all(times >= start) and np.all(times < end), (vid, times)
        np.testing.assert_allclose(times, _ffmpeg_cut_times(path, start, end, 4.0), atol=1e-4)
        assert records[vid]["num_frames"] == round((end - start) * 4) and records[vid]["source_uri"] == url
    failed = manifest[ids[2]]
    assert (failed.status, failed.error_type) == ("failed", "SegmentError") and "[10, 12)" in failed.error_message
    assert len(list(store.glob("long-*.mp4.json"))) == 1  # the file is fine: its stored copy is kept

    # Without a store, the segments of one shard share one temporary download.
    again, _ = _ingest(_config(lst, tmp_path / "out2", tiny_tokenizer, shard_size=3))
    assert handler.hits["/long.mp4"] == 2
    for vid in ids[:2]:
        assert again[vid]["timestamps"] == records[vid]["timestamps"] and again[vid]["tokens"] == records[vid]["tokens"]


def test_tokenizer_training_frames_of_a_segment_come_from_its_window(tmp_path):
    from vimpac_core.tokenizers.frames import video_frames

    path = write_synthetic_video(tmp_path / "square.mp4", num_frames=60, fps=RATE, width=96, height=96, crf=10)
    entry = VideoEntry(uri=str(path), video_id="square_2_4", start=2.0, end=4.0)
    frames = video_frames(entry, frame_size=96, fps=2.0, frames_per_video=16)
    assert [read_frame_index(f) for f in frames] == [22, 27, 32, 37]  # 2.2, 2.7, ... s: inside [2, 4)
