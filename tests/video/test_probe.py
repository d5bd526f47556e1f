"""probe on generated, rotated and real clips, and on inputs that are not videos."""

from __future__ import annotations

import av
import decord
import numpy as np
import psutil
import pytest

from tests.video.conftest import H, W, stray_decoders
from vimpac_core.errors import DecodeTimeoutError, VideoError
from vimpac_core.video import live_worker_pids, probe
from vimpac_core.video.worker import call_worker


def test_cfr_clip(clips):
    info = probe(clips["cfr30"])
    assert (info.num_frames, info.width, info.height, info.rotation, info.codec) == (90, W, H, 0, "h264")
    assert info.frame_times.shape == (90, 2) and info.frame_times.dtype == np.float64
    assert info.duration_s == pytest.approx(3.0) and info.avg_fps == pytest.approx(30.0)
    idx, ts = info.select(2)
    assert idx[:3].tolist() == [7, 22, 37] and ts.dtype == np.float32
    assert np.allclose(ts, idx / 30.0)


def test_vfr_times_match_pyav_pts_and_decord(clips, vfr_times):
    info = probe(clips["vfr"])
    assert np.allclose(info.frame_times[:, 0], vfr_times - vfr_times[0], atol=1e-5)
    with av.open(str(clips["vfr"])) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        expected = (np.array(pts) - pts[0]) * float(stream.time_base)
    assert np.allclose(info.frame_times[:, 0], expected, atol=1e-9)
    reader = decord.VideoReader(str(clips["vfr"]), width=W, height=H)
    assert np.allclose(
        info.frame_times[:, 0], reader.get_frame_timestamp(range(len(reader)))[:, 0], atol=1e-4
    )
    assert np.all(info.frame_times[:-1, 1] == info.frame_times[1:, 0])
    # Shards record source times: the first frame's own 0.05 s is kept, not dropped.
    assert info.start_s == pytest.approx(vfr_times[0], abs=1e-6)
    idx, stamps = info.select(4.0)
    np.testing.assert_allclose(stamps, vfr_times[idx], atol=1e-5)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_swaps_displayed_size(clips, degrees):
    info = probe(clips[f"rot{degrees}"])
    assert info.rotation == degrees
    assert (info.width, info.height) == ((H, W) if degrees != 180 else (W, H))


def test_portrait(clips):
    info = probe(clips["portrait"])
    assert (info.width, info.height, info.rotation) == (H, W, 0)


def test_real_sample_clips(sample_videos):
    info = probe(sample_videos["bigbuckbunny"])
    assert (info.width, info.height, info.num_frames, info.codec) == (1280, 720, 132, "h264")
    assert info.avg_fps == pytest.approx(25.0)
    info = probe(sample_videos["carphone_pristine"])
    assert info.avg_fps == pytest.approx(30000 / 1001, rel=1e-3)


def test_one_frame_probes_but_gives_no_clip(clips):
    info = probe(clips["one_frame"])
    assert info.num_frames == 1
    with pytest.raises(VideoError, match="too short for fps=2"):
        info.select(2)
    assert info.select(60)[0].tolist() == [0, 0]  # 1/30 s at 60 fps: two outputs of frame 0


@pytest.mark.parametrize(
    "name,message",
    [
        ("zero_byte", "zero-byte"),
        ("truncated", "not a readable video"),
        ("truncated_data", "truncated"),
        ("text", "not a readable video"),
        ("audio_only", "no video stream"),
        ("bad_codec", "no decoder"),
        ("missing", "no such file"),
    ],
)
def test_bad_inputs(bad_files, name, message):
    with pytest.raises(VideoError, match=message) as err:
        probe(bad_files[name])
    assert str(bad_files[name]) in str(err.value)
    assert not err.value.retriable


def test_hung_worker_is_killed_and_replaced(clips):
    probe(clips["cfr30"])  # leaves an idle worker, which the hung request below picks up
    before = live_worker_pids()
    with pytest.raises(DecodeTimeoutError, match="decoder was killed"):
        call_worker("sleep", {"seconds": 60}, timeout_s=0.5, what="sleeping")
    killed = before - live_worker_pids()
    assert len(killed) == 1 and not psutil.pid_exists(killed.pop())
    assert not stray_decoders()
    assert probe(clips["cfr30"]).num_frames == 90  # a fresh worker serves the next request
