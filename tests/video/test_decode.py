"""decode_views against decord's own full decode, plus windows, rotation, timeouts and bad input."""

from __future__ import annotations

import os
import signal
import threading

import decord
import numpy as np
import psutil
import pytest

from tests.video.conftest import H, W, ffmpeg_rgb24, stray_decoders
from vimpac_core.errors import DecodeTimeoutError, VideoError
from vimpac_core.video import (
    ViewSpec,
    crop_box,
    decode_views,
    live_worker_pids,
    probe,
    read_frame_index,
    view_set,
    write_synthetic_video,
)


def reference(path, indices: np.ndarray, view: ViewSpec) -> np.ndarray:
    """decord full sequential decode at the resized size, then numpy crop and flip."""
    info = probe(path)
    rh, rw, y0, x0 = crop_box(info.height, info.width, view.short_side, view.out_size, view.crop)
    reader = decord.VideoReader(str(path), width=rw, height=rh)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()[indices]
    out = frames[:, y0 : y0 + view.out_size, x0 : x0 + view.out_size]
    return out[:, :, ::-1] if view.flip else out


def collect(windows) -> dict[str, np.ndarray]:
    windows = list(windows)
    return {name: np.concatenate([w[name] for w in windows]) for name in windows[0]}


def test_views_equal_full_decode_with_numpy_crops(clips):
    views = view_set("finetune", 32)
    idx, _ = probe(clips["cfr30"]).select(7.5)
    got = collect(decode_views(clips["cfr30"], idx, views, window=5))
    assert set(got) == {v.name for v in views}
    for view in views:
        assert got[view.name].shape == (len(idx), 32, 32, 3) and got[view.name].dtype == np.uint8
        assert np.array_equal(got[view.name], reference(clips["cfr30"], idx, view)), view.name


def test_repeated_frames_when_fps_above_source(clips):
    view = ViewSpec(48, 48, "center", False)
    idx, _ = probe(clips["cfr24"]).select(60)
    assert len(idx) > len(np.unique(idx))
    got = collect(decode_views(clips["cfr24"], idx, [view], window=7))[view.name]
    assert np.array_equal(got, reference(clips["cfr24"], idx, view))


def test_end_to_end_same_frames_as_ffmpeg_fps_filter(tmp_path, vfr_times):
    # A square VFR clip: the s64 top view is the whole frame, so each frame's index strip reads back.
    path = write_synthetic_video(
        tmp_path / "square_vfr.mp4", num_frames=80, fps=20, width=64, height=64, crf=10, frame_times=vfr_times
    )
    idx, _ = probe(path).select(5)
    view = ViewSpec(64, 64, "top", False)
    got = collect(decode_views(path, idx, [view], window=6))[view.name]
    assert [read_frame_index(f) for f in got] == idx.tolist()
    ffmpeg_frames = ffmpeg_rgb24(path, "fps=5", 64, 64)
    assert [read_frame_index(f) for f in ffmpeg_frames] == idx.tolist()


def ffmpeg_extraction(path, fps: float, view: ViewSpec) -> np.ndarray:
    """The original extraction's pipeline: FFmpeg fps filter, scale (bicubic), crop, hflip, rgb24."""
    info = probe(path)
    rh, rw, y0, x0 = crop_box(info.height, info.width, view.short_side, view.out_size, view.crop)
    chain = f"fps={fps},scale={rw}:{rh},crop={view.out_size}:{view.out_size}:{x0}:{y0}" + (
        ",hflip" if view.flip else ""
    )
    return ffmpeg_rgb24(path, chain, view.out_size, view.out_size)


@pytest.mark.parametrize(
    "clip,view",
    [
        ("bikes", ViewSpec(128, 128, "top", False)),
        ("bikes", ViewSpec(128, 128, "center", True)),
        ("bikes", ViewSpec(160, 128, "bottom", True)),
        ("rot90", ViewSpec(40, 32, "bottom", False)),
        ("rot270", ViewSpec(32, 32, "top", True)),
        ("portrait", ViewSpec(40, 40, "center", False)),
    ],
)
def test_matches_the_ffmpeg_extraction_up_to_resampling(sample_videos, clips, clip, view):
    # FFmpeg scales bicubic and decord bilinear: pixels differ by 1-2.5 on average (more on tiny
    # synthetic frames), while a crop off by 4 pixels or a frame turned or mirrored wrongly
    # differs by 15-33.
    path = sample_videos.get(clip) or clips[clip]
    idx, _ = probe(path).select(2)
    ours = collect(decode_views(path, idx, [view]))[view.name].astype(np.int16)
    reference_frames = ffmpeg_extraction(path, 2, view).astype(np.int16)
    assert ours.shape == reference_frames.shape
    assert np.abs(ours - reference_frames).mean() < 5.0


def test_windows_are_bounded_and_ordered(clips):
    idx = np.arange(90)
    sizes = [
        len(w["s48-center-noflip"])
        for w in decode_views(clips["cfr30"], idx, view_set("pretrain", 48), window=16)
    ]
    assert sizes == [16, 16, 16, 16, 16, 10]


@pytest.mark.parametrize("degrees,turns", [(90, 1), (180, 2), (270, 3)])
def test_rotated_clip_is_upright(clips, degrees, turns):
    # The rotated clips copy cfr30's stream and only add a display matrix, so upright frames are
    # cfr30's frames turned by np.rot90 (counterclockwise, as FFmpeg shows them).
    idx = np.arange(0, 90, 11)
    rotated = probe(clips[f"rot{degrees}"])
    shown = ViewSpec(min(rotated.height, rotated.width), min(rotated.height, rotated.width), "top", False)
    got = collect(decode_views(clips[f"rot{degrees}"], idx, [shown]))[shown.name]
    reader = decord.VideoReader(str(clips["cfr30"]), width=W, height=H)
    upright = np.rot90(reader.get_batch(idx.tolist()).asnumpy(), k=turns, axes=(1, 2))
    assert np.array_equal(got, upright[:, : shown.out_size, : shown.out_size])
    if degrees != 180:
        assert (rotated.width, rotated.height) == (H, W)


def test_portrait_clip(clips):
    views = view_set("test", 32)
    got = collect(decode_views(clips["portrait"], np.arange(30), views))
    for view in views:
        assert np.array_equal(got[view.name], reference(clips["portrait"], np.arange(30), view))
    assert not np.array_equal(got["s32-top-noflip"], got["s32-bottom-noflip"])


@pytest.mark.parametrize("name", ["bigbuckbunny", "bikes"])
def test_real_clips(sample_videos, name):
    path = sample_videos[name]
    idx, _ = probe(path).select(2)
    views = [ViewSpec(32, 32, "center", False), ViewSpec(40, 32, "top", True)]
    got = collect(decode_views(path, idx, views, window=4))
    for view in views:
        assert np.array_equal(got[view.name], reference(path, idx, view))


def test_timeout_kills_the_decoder(long_clip):
    probe(long_clip)  # an idle worker, which the decode below picks up
    before = live_worker_pids()
    windows = decode_views(long_clip, np.arange(2400), view_set("pretrain", 32), window=2400, timeout_s=0.02)
    with pytest.raises(DecodeTimeoutError, match="no result within 0.02 s"):
        next(windows)
    killed = before - live_worker_pids()
    assert len(killed) == 1 and not psutil.pid_exists(killed.pop()) and not stray_decoders()


def test_closing_the_generator_kills_a_busy_worker(clips):
    windows = decode_views(clips["cfr30"], np.arange(90), view_set("pretrain", 32), window=8)
    next(windows)
    busy = live_worker_pids()
    windows.close()
    assert len(busy - live_worker_pids()) == 1 and not stray_decoders()


def test_an_exception_in_the_consumer_kills_a_busy_worker(clips):
    probe(clips["cfr30"])  # an idle worker, which the decode below picks up
    before = live_worker_pids()
    with pytest.raises(RuntimeError, match="tokenizer failed"):
        for _window in decode_views(clips["cfr30"], np.arange(90), view_set("pretrain", 32), window=4):
            raise RuntimeError("tokenizer failed")
    assert len(before - live_worker_pids()) == 1 and not stray_decoders()


def test_a_decoder_that_dies_gives_video_error(clips):
    windows = decode_views(clips["cfr30"], np.arange(90), view_set("pretrain", 32), window=4)
    next(windows)
    (pid,) = live_worker_pids() - {p for p in live_worker_pids() if p in _idle_pids()}
    os.kill(pid, signal.SIGKILL)  # as if FFmpeg had crashed on this file
    with pytest.raises(VideoError, match="decoder process died"):
        list(windows)
    assert pid not in live_worker_pids() and not stray_decoders()


def _idle_pids() -> set[int]:
    from vimpac_core.video import worker

    with worker._lock:
        return {w.pid for w in worker._idle}


def test_concurrent_callers_get_their_own_frames(clips):
    results: dict[str, np.ndarray] = {}

    def work(name: str) -> None:
        results[name] = collect(decode_views(clips[name], np.arange(30), view_set("pretrain", 32)))[
            "s32-center-noflip"
        ]

    threads = [threading.Thread(target=work, args=(n,)) for n in ("cfr30", "portrait", "cfr24")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("cfr30", "portrait", "cfr24"):
        assert np.array_equal(
            results[name], reference(clips[name], np.arange(30), ViewSpec(32, 32, "center", False))
        )


@pytest.mark.parametrize(
    "name,message",
    [
        ("zero_byte", "zero-byte"),
        ("truncated", "cannot open|corrupt"),
        ("truncated_data", "truncated"),
        ("text", "cannot open|not a"),
        ("audio_only", "no video stream"),
        ("bad_codec", "cannot open|decoder"),
        ("missing", "no such file"),
    ],
)
def test_bad_inputs(bad_files, name, message):
    with pytest.raises(VideoError, match=message):
        list(decode_views(bad_files[name], np.arange(3), view_set("pretrain", 32)))
    assert not stray_decoders()


def test_bad_requests(clips):
    with pytest.raises(ValueError, match="out of range"):
        list(decode_views(clips["cfr30"], np.array([0, 90]), view_set("pretrain", 32)))
    with pytest.raises(ValueError, match="1-D integer"):
        list(decode_views(clips["cfr30"], np.array([0.5]), view_set("pretrain", 32)))
    with pytest.raises(ValueError, match="views is empty"):
        list(decode_views(clips["cfr30"], np.arange(3), []))
    assert list(decode_views(clips["cfr30"], np.zeros(0, np.int64), view_set("pretrain", 32))) == []


@pytest.mark.slow
def test_long_video_decodes_in_bounded_windows(long_clip):
    info = probe(long_clip)
    assert info.num_frames == 2400 and info.duration_s == pytest.approx(600.0)
    idx, _ = info.select(2)
    assert len(idx) == 1200
    count = 0
    for window in decode_views(long_clip, idx, view_set("pretrain", 32), window=64):
        frames = window["s32-center-noflip"]
        assert frames.shape[0] <= 64
        count += frames.shape[0]
    assert count == 1200


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_decoder_stopped_by_a_signal_is_not_the_videos_fault(clips, sig):
    from vimpac_core.errors import Interrupted

    windows = decode_views(clips["cfr30"], np.arange(90), view_set("pretrain", 32), window=4)
    next(windows)
    (pid,) = live_worker_pids() - _idle_pids()
    os.kill(pid, sig)  # someone stopped the decoder: the video was never judged
    with pytest.raises(Interrupted, match="decoder process was stopped") as caught:
        list(windows)
    assert not isinstance(caught.value, VideoError)
    assert pid not in live_worker_pids() and not stray_decoders()


def test_a_stop_request_ends_a_decode_within_a_poll(clips):
    from vimpac_core import interrupts
    from vimpac_core.errors import Interrupted

    windows = decode_views(clips["cfr30"], np.arange(90), view_set("pretrain", 32), window=4)
    next(windows)
    interrupts.request_stop(signal.SIGINT)
    try:
        with pytest.raises(Interrupted, match=r"stopped by Ctrl-C \(SIGINT\)"):
            list(windows)
    finally:
        interrupts.reset()
    assert not stray_decoders()
