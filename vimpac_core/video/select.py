"""Choose the source frames to keep at a target FPS, exactly as FFmpeg's ``fps`` filter does.

DATA.md: with start times t_i (t_0 first) and the end time of the last frame t_end,
``slot_i = floor((t_i - t_0) * fps + 0.5)``; output n is the last frame whose slot <= n, and
the number of outputs is ``round((t_end - t_0) * fps)``. This works on timestamps, so 29.97 fps
and variable-frame-rate video come out right, where striding by ``round(native_fps / fps)``
does not.

A window ``[start, end)`` (a Kinetics-style segment of a longer video) selects as if the
segment had been cut out first: only frames starting inside it count, t_0 is the first of them
and t_end the end of the last, which is FFmpeg's ``trim=start:end,setpts=PTS-STARTPTS,fps``.
"""

from __future__ import annotations

import numpy as np

# decord reports float32 times: a tie such as 3/24 s at 4 fps (slot 1.0 exactly) may arrive as
# 0.99999 slots. Values within this many slots of an integer are treated as that integer.
TIE_TOLERANCE = 1e-4
# A frame starting this close to a window's start (seconds) counts as inside it: times from
# float32 clocks or time-base ticks rarely land exactly on a user's "14.0".
WINDOW_TOLERANCE_S = 1e-4


def _snap(x: np.ndarray) -> np.ndarray:
    """Move values within TIE_TOLERANCE of an integer onto it (float64 in, float64 out)."""
    nearest = np.round(x)
    return np.where(np.abs(x - nearest) < TIE_TOLERANCE, nearest, x)


def _check_times(frame_times: np.ndarray) -> np.ndarray:
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 2 or times.shape[1] != 2:
        raise ValueError(
            f"frame_times must be an array [N, 2] of (start, end) seconds, got shape {times.shape}"
        )
    if times.shape[0] == 0:
        raise ValueError("frame_times is empty: the video has no frames to select from")
    if not np.all(np.isfinite(times)):
        raise ValueError("frame_times contains NaN or infinite values; re-probe the video")
    if np.any(np.diff(times[:, 0]) < 0):
        raise ValueError("frame start times must be nondecreasing (presentation order); re-probe the video")
    return times


def fps_select(frame_times: np.ndarray, fps: float, window: tuple[float, float] | None = None) -> np.ndarray:
    """Source frame indices FFmpeg's ``fps=FPS`` filter would output.

    Args:
        frame_times: float [N, 2], (start, end) in seconds of each source frame, in
            presentation order (decord's ``get_frame_timestamp`` or ``VideoInfo.frame_times``).
        fps: target frames per second (> 0).
        window: (start, end) seconds on the clock of ``frame_times``: select inside this segment
            only, as if it had been cut out (frames starting in [start, end); t_0 = the first of
            them); end may be inf. None: the whole video.

    Returns:
        int64 [M] source frame indices (into ``frame_times``), nondecreasing; an index repeats
        when ``fps`` is above the source rate. M = round((t_end - t_0) * fps), which is 0 for a
        clip (or window) shorter than half an output frame or holding no frame.

    Raises:
        ValueError: fps <= 0, a window with end <= start, or frame_times empty or not [N, 2]
            with ordered, finite starts.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    times = _check_times(frame_times)
    if window is None:
        return _select(times, fps)
    start, end = window
    if not (np.isfinite(start) and end > start):  # end may be inf: up to the video's end
        raise ValueError(f"window must be (start, end) seconds with end > start, got {window!r}")
    # Starts are nondecreasing, so the frames of a window are one contiguous run.
    lo = int(np.searchsorted(times[:, 0], start - WINDOW_TOLERANCE_S, side="left"))
    hi = int(np.searchsorted(times[:, 0], end - WINDOW_TOLERANCE_S, side="left"))
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    return lo + _select(times[lo:hi], fps)


def _select(times: np.ndarray, fps: float) -> np.ndarray:
    """The fps-filter rule over checked [N, 2] times (indices into ``times``)."""
    t0 = times[0, 0]
    t_end = max(times[-1, 1], times[-1, 0])
    slots = np.floor(_snap((times[:, 0] - t0) * fps + 0.5)).astype(np.int64)
    # FFmpeg rounds half away from zero (AV_ROUND_NEAR_INF): floor(x + 0.5) for x >= 0.
    num_out = int(np.floor(_snap(np.array([(t_end - t0) * fps + 0.5]))[0]))
    if num_out <= 0:
        return np.zeros(0, dtype=np.int64)
    # Output n takes the last frame with slot <= n: searchsorted over the (nondecreasing) slots.
    wanted = np.arange(num_out, dtype=np.int64)
    indices = np.searchsorted(slots, wanted, side="right") - 1
    return np.maximum(indices, 0).astype(np.int64)
