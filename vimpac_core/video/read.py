"""The frame-reading stage ingest and tokenizer training share: probe a local video, choose its
frames at an fps (inside a segment when one is given), decode them as views, window by window.

``read_fps_frames`` probes and selects at once (so a caller can time the two parts, keep the
timestamps, and fail early on a video too short for one frame) and returns the decode as a lazy
iterator of windows ``{view name: uint8 [n, S, S, 3]}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vimpac_core.video.decode import decode_views
from vimpac_core.video.geometry import ViewSpec
from vimpac_core.video.probe import VideoInfo, probe


@dataclass
class FpsFrames:
    """The chosen frames of one video and, lazily, their pixels."""

    info: VideoInfo
    indices: np.ndarray  # int64 frame indices, ascending
    timestamps: np.ndarray  # float32 seconds of those frames
    windows: Iterator[dict[str, np.ndarray]]


def spread_positions(count: int, limit: int | None) -> np.ndarray:
    """Positions of at most ``limit`` of ``count`` items, evenly spread from first to last."""
    if limit is None or count <= limit:
        return np.arange(count)
    return np.linspace(0, count - 1, limit).round().astype(int)


def read_fps_frames(
    path: str | os.PathLike, fps: float, views: list[ViewSpec], *, segment: tuple[float, float] | None = None,
    limit: int | None = None, probe_timeout_s: float | None = 60.0, window: int = 32,
    decode_timeout_s: float | None = 300.0,
) -> FpsFrames:
    """Probe ``path``, choose its frames at ``fps`` (inside ``segment`` seconds; at most ``limit`` of
    them, evenly spread) and set up their decode as ``views`` in windows of ``window`` frames.

    Raises:
        VideoError: the video is too short to give one frame at ``fps`` (SegmentError: the segment
            is; both from ``VideoInfo.select``); the probe's and the decode's own errors as they come.
    """
    info = probe(path, timeout_s=probe_timeout_s)
    indices, timestamps = info.select(fps, segment)
    keep = spread_positions(len(indices), limit)
    indices, timestamps = indices[keep], np.asarray(timestamps, dtype=np.float32)[keep]
    windows = decode_views(path, indices, views, window=window, timeout_s=decode_timeout_s)
    return FpsFrames(info, indices, timestamps, windows)
