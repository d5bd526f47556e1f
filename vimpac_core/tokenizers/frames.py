"""Frames to train a tokenizer on, read through ingest's own stage (``video.read_fps_frames``):

stage (download if remote) -> probe -> FPS selection -> windowed decode of the pre-training view
(resize short side to S, center crop S x S). A video that cannot be read is skipped and reported;
only when no video gives a frame does sampling fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from vimpac_core.config import DownloadConfig
from vimpac_core.errors import ConfigError, VimpacError
from vimpac_core.inputs import VideoEntry

log = logging.getLogger(__name__)


def video_frames(entry: VideoEntry, frame_size: int, fps: float, frames_per_video: int,
                 download: DownloadConfig | None = None) -> np.ndarray:
    """uint8 [n, S, S, 3] (1 <= n <= frames_per_video) frames of one video (or of its segment), spread
    over its duration, read by ingest's own frame-reading stage (``video.read_fps_frames``).

    Raises:
        VideoError: the video (segment) is too short for one frame at ``fps``; download and decode errors.
    """
    from vimpac_core.download import stage_video
    from vimpac_core.video import read_fps_frames, view_set

    staged = stage_video(entry.uri, entry.source_id, download or DownloadConfig())
    try:
        views = view_set("pretrain", frame_size)
        read = read_fps_frames(staged.path, fps, views, segment=entry.window, limit=frames_per_video)
        windows = [w[views[0].name] for w in read.windows]
    finally:
        staged.cleanup()
    return np.concatenate(windows)


def sample_frames(entries: Sequence[VideoEntry], frame_size: int, fps: float = 2.0, frames_per_video: int = 16,
                  download: DownloadConfig | None = None,
                  on_skip: Callable[[VideoEntry, Exception], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames of every readable video of ``entries``.

    Returns:
        (uint8 frames [N, S, S, 3], int64 video index [N] into ``entries``).
    Raises:
        ConfigError: ``frame_size`` is not a positive multiple of 8, or no video gave a frame.
    """
    if frame_size <= 0 or frame_size % 8:
        raise ConfigError(f"frame_size={frame_size}: must be a positive multiple of 8 (tokens are 8x8 pixels)")
    frames, owners = [], []
    for i, entry in enumerate(entries):
        try:
            got = video_frames(entry, frame_size, fps, frames_per_video, download)
        except VimpacError as exc:
            log.warning("skipping %s: %s", entry.uri, exc)
            if on_skip:
                on_skip(entry, exc)
            continue
        frames.append(got)
        owners.append(np.full(len(got), i, dtype=np.int64))
    if not frames or sum(len(f) for f in frames) == 0:
        raise ConfigError(f"none of the {len(entries)} videos gave a frame at {fps} fps; check the video list")
    return np.concatenate(frames), np.concatenate(owners)


def split_held_out(frames: np.ndarray, owners: np.ndarray, every: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hold out every ``every``-th frame of each video (at least one frame per video with >= 2):
    returns (train [N1, S, S, 3], held_out [N2, S, S, 3])."""
    held = np.zeros(len(frames), dtype=bool)
    for video in np.unique(owners):
        pos = np.flatnonzero(owners == video)
        if len(pos) >= 2:
            held[pos[every // 2::every] if len(pos) > every // 2 else pos[-1:]] = True
    return frames[~held], frames[held]
