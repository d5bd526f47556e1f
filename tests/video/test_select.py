"""fps_select: DATA.md's rule, and the real FFmpeg fps filter as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.video.conftest import H, W, ffmpeg_rgb24
from vimpac_core.video import fps_select, probe, read_frame_index


def cfr_times(n: int, rate: float) -> np.ndarray:
    starts = np.arange(n) / rate
    return np.column_stack([starts, starts + 1 / rate])


def ffmpeg_fps_indices(path, fps: float) -> np.ndarray:
    """Source frame index of every frame FFmpeg's ``-vf fps=FPS`` outputs (read from the index strip)."""
    frames = ffmpeg_rgb24(path, f"fps={fps}", H, W)
    return np.array([read_frame_index(f) for f in frames], dtype=np.int64)


def test_data_md_example_30_to_2_fps():
    idx = fps_select(cfr_times(300, 30.0), 2)
    assert idx[:4].tolist() == [7, 22, 37, 52]
    assert len(idx) == 20 and idx.dtype == np.int64


def test_ntsc_rate_is_not_strided():
    idx = fps_select(cfr_times(3000, 30000 / 1001), 1)
    # Frame 14 starts at 0.467 s (slot 0), frame 15 at 0.5005 s (slot 1); striding by
    # round(29.97) = 30 would drift 3 frames late by the end (2985 instead of 2982).
    assert len(idx) == 100
    assert idx[:2].tolist() == [14, 44] and idx[-1] == 2982
    assert not np.array_equal(idx, 14 + 30 * np.arange(100))


def reference_select(times: np.ndarray, fps: float) -> list[int]:
    """DATA.md's rule written as a plain loop (exact fractions are not needed on these inputs)."""
    t0, t_end = times[0, 0], times[-1, 1]
    slots = [int(np.floor((t - t0) * fps + 0.5)) for t in times[:, 0]]
    return [
        max(i for i, s in enumerate(slots) if s <= n) for n in range(int(np.floor((t_end - t0) * fps + 0.5)))
    ]


def test_random_vfr_against_reference_loop():
    rng = np.random.default_rng(0)
    for _ in range(50):
        starts = np.cumsum(rng.uniform(0.003, 0.2, rng.integers(1, 60))) + rng.uniform(0, 5)
        times = np.column_stack([starts, starts + rng.uniform(0.003, 0.2)])
        times[:-1, 1] = starts[1:]
        fps = float(rng.choice([0.5, 1, 2, 3.3, 8, 30, 60]))
        assert fps_select(times, fps).tolist() == reference_select(times, fps)


def test_fps_above_source_repeats_frames():
    idx = fps_select(cfr_times(10, 5.0), 12)
    assert len(idx) == 24
    assert np.all(np.diff(idx) >= 0) and len(np.unique(idx)) == 10
    assert idx.tolist()[:6] == [0, 0, 1, 1, 1, 2]


def test_vfr_follows_timestamps_not_indices():
    starts = np.array([0.0, 0.1, 0.2, 1.5, 1.6, 3.0])  # a stall between 0.2 s and 1.5 s
    times = np.column_stack([starts, np.append(starts[1:], 3.1)])
    # slots floor(2 t + 0.5) = 0, 0, 0, 3, 3, 6; outputs round(3.1 * 2) = 6; output n takes the
    # last frame with slot <= n, so the stall repeats frame 2 and frame 3 is never shown.
    assert fps_select(times, 2).tolist() == [2, 2, 2, 4, 4, 4]


def test_float32_ties_match_float64():
    # 24 fps -> 4 fps puts frame 3 exactly on a slot boundary; decord's float32 times must agree.
    exact = cfr_times(2400, 24.0)
    assert np.array_equal(fps_select(exact.astype(np.float32), 4), fps_select(exact, 4))
    assert fps_select(exact, 4)[:3].tolist() == [2, 8, 14]


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_bad_fps(bad):
    with pytest.raises(ValueError, match="fps"):
        fps_select(cfr_times(10, 30.0), bad)


@pytest.mark.parametrize("times", [np.zeros((0, 2)), np.zeros(5), np.array([[1.0, 1.1], [0.5, 0.6]])])
def test_ill_formed_times(times):
    with pytest.raises(ValueError, match="frame_times|start times"):
        fps_select(times, 2)


@pytest.mark.parametrize("name", ["cfr30", "ntsc", "cfr24", "vfr"])
def test_matches_ffmpeg_fps_filter(clips, name):
    info = probe(clips[name])
    for fps in (1, 2, 5, 7.5, 29.97, 45):
        ours = fps_select(info.frame_times, fps)
        assert np.array_equal(ours, ffmpeg_fps_indices(clips[name], fps)), f"{name} at fps={fps}"


def test_one_frame_clip_matches_ffmpeg(clips):
    info = probe(clips["one_frame"])
    for fps in (2, 45):
        assert np.array_equal(fps_select(info.frame_times, fps), ffmpeg_fps_indices(clips["one_frame"], fps))


def ffmpeg_cut_indices(path, start: float, end: float, fps: float) -> np.ndarray:
    """Source frames FFmpeg outputs when the segment is cut out first, then sampled at ``fps``."""
    frames = ffmpeg_rgb24(path, f"trim=start={start}:end={end},setpts=PTS-STARTPTS,fps={fps}", H, W)
    return np.array([read_frame_index(f) for f in frames], dtype=np.int64)


@pytest.mark.parametrize("name", ["cfr30", "ntsc", "cfr24", "vfr"])
def test_window_matches_ffmpeg_cut_then_fps(clips, name):
    info = probe(clips[name])
    for start, end in [(0.5, 2.0), (0.51, 2.0), (0.5, 1.24), (1.01, 2.2), (0.0, 0.7), (2.0, 9.0)]:
        for fps in (1, 2, 3, 7.5):
            ours = fps_select(info.frame_times, fps, (start, end))
            ref = ffmpeg_cut_indices(clips[name], start, end, fps)
            assert np.array_equal(ours, ref), f"{name} [{start}, {end}) at fps={fps}: {ours} != {ref}"
            starts = info.frame_times[ours, 0]
            assert np.all(starts >= start - 1e-4) and np.all(starts < end)


def test_window_holding_no_frame_selects_nothing_and_bad_windows_fail():
    times = cfr_times(30, 10.0)  # 0.0 .. 3.0 s
    assert fps_select(times, 2, (3.5, 5.0)).size == 0
    assert fps_select(times, 2, (1.0, float("inf"))).tolist() == (10 + fps_select(times[10:], 2)).tolist()
    for bad in [(2.0, 2.0), (2.0, 1.0), (float("nan"), 2.0)]:
        with pytest.raises(ValueError, match="window"):
            fps_select(times, 2, bad)
