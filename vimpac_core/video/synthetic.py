"""Synthetic test and demo videos: coloured shapes moving over a gradient (PyAV + libx264).

Every frame also carries its index as a strip of black/white bits along its top edge
(``INDEX_BITS`` cells, most significant first), so a test can read back which source frame
it got (``read_frame_index``) after any decoder, the FFmpeg binary included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

INDEX_BITS = 12
# Variable-frame-rate clips are written with this time base (the MP4 muxer's usual 90 kHz).
VFR_TIME_BASE = Fraction(1, 90000)


def _index_strip_height(height: int) -> int:
    return max(4, height // 8)


def _draw_frame(index: int, num_frames: int, width: int, height: int, rng_params: np.ndarray) -> np.ndarray:
    """One RGB uint8 frame [height, width, 3]: gradient background, moving shapes, index bits."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = index / max(num_frames, 1)
    frame = np.empty((height, width, 3), dtype=np.float32)
    frame[..., 0] = 40 + 60 * xx / max(width - 1, 1)
    frame[..., 1] = 40 + 60 * yy / max(height - 1, 1)
    frame[..., 2] = 60 + 40 * np.sin(2 * np.pi * phase)
    for cx, cy, vx, vy, radius, r, g, b, square in rng_params:
        x = (cx + vx * index) % width
        y = (cy + vy * index) % height
        rad = radius * min(width, height)
        if square > 0.5:
            mask = (np.abs(xx - x) < rad) & (np.abs(yy - y) < rad)
        else:
            mask = (xx - x) ** 2 + (yy - y) ** 2 < rad**2
        frame[mask] = (r, g, b)
    strip = _index_strip_height(height)
    cell = width / INDEX_BITS
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        frame[:strip, int(bit * cell) : int((bit + 1) * cell)] = 235 if on else 16
    return frame.astype(np.uint8)


def read_frame_index(frame: np.ndarray) -> int:
    """The index drawn into a synthetic frame (uint8 [H, W, 3], as written, not cropped or flipped)."""
    height, width = frame.shape[:2]
    strip = _index_strip_height(height)
    cell = width / INDEX_BITS
    gray = frame[: max(1, strip - 1)].astype(np.float32).mean(axis=2)
    value = 0
    for bit in range(INDEX_BITS):
        lo, hi = int(bit * cell), int((bit + 1) * cell)
        margin = (hi - lo) // 4  # read the middle of each cell, away from blurred edges
        inner = gray[:, lo + margin : hi - margin]
        value = (value << 1) | int(inner.mean() > 125)
    return value


def _check_args(
    num_frames: int, fps: float, width: int, height: int, frame_times: Sequence[float] | None
) -> None:
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 16 (yuv420p), got {width}x{height}")
    if frame_times is not None:
        times = np.asarray(frame_times, dtype=np.float64)
        if times.shape != (num_frames,):
            raise ValueError(f"frame_times needs one time per frame ({num_frames}), got shape {times.shape}")
        ticks = np.round(times / float(VFR_TIME_BASE))
        if times[0] < 0 or np.any(np.diff(ticks) <= 0):
            raise ValueError("frame_times must be >= 0 and strictly increasing (at 1/90000 s resolution)")


def write_synthetic_video(
    path: str | os.PathLike,
    *,
    num_frames: int,
    fps: float,
    width: int,
    height: int,
    seed: int = 0,
    codec: str = "libx264",
    frame_times: Sequence[float] | None = None,
    crf: int = 23,
) -> Path:
    """Write a clip of moving coloured shapes; returns its path.

    Args:
        path: output file (.mp4 or .mkv); parent folders are created.
        num_frames: number of frames.
        fps: nominal rate (frames per second); with ``frame_times`` it is only the stream's
            declared average rate.
        width, height: frame size in pixels (even, >= 16).
        seed: picks the shapes, their colours and speeds.
        codec: an FFmpeg encoder (libx264 by default); pixel format yuv420p.
        frame_times: optional presentation time of each frame in seconds (variable frame rate).
        crf: libx264 quality (0 = lossless luma, 23 = default).
    """
    import av

    _check_args(num_frames, fps, width, height, frame_times)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_shapes = 3
    params = np.column_stack(
        [
            rng.uniform(0, width, n_shapes),
            rng.uniform(0, height, n_shapes),
            rng.uniform(-3, 3, n_shapes),
            rng.uniform(-3, 3, n_shapes),
            rng.uniform(0.08, 0.2, n_shapes),
            rng.integers(60, 255, (n_shapes, 3)),
            rng.integers(0, 2, n_shapes),
        ]
    )
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        time_base = VFR_TIME_BASE if frame_times is not None else 1 / rate
        stream.codec_context.time_base = time_base
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(
                _draw_frame(i, num_frames, width, height, params), format="rgb24"
            )
            frame.pts = int(round(frame_times[i] / time_base)) if frame_times is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out
