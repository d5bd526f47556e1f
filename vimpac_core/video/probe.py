"""Open a video once: frame times, size, rotation, codec (``probe``), and ``VideoInfo``.

The work runs in a decoder worker process (``worker.py``) so a file that hangs the demuxer is
killed at ``timeout_s``. Frame times come from the container's packet timestamps (exact, float64,
seconds from the first frame) when their count matches decord's frame count, else from decord's
float32 times; frame index i is decord's frame i either way.

A 1-frame video probes fine (num_frames == 1), but gives no frame at any fps below twice its
rate: ``VideoInfo.select`` then raises VideoError, which is how ingest rejects it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimpac_core.errors import SegmentError, VideoError
from vimpac_core.video.select import fps_select


@dataclass(frozen=True, eq=False)  # eq=False: an ndarray field has no single truth value
class VideoInfo:
    """What ingest needs to know about one video.

    Attributes:
        uri: the probed path.
        num_frames: decodable frames N (decord's count).
        frame_times: float64 [N, 2], (start, end) seconds from the first frame's start.
        duration_s: end of the last frame minus start of the first (seconds).
        width, height: frame size as displayed (after rotation), pixels.
        rotation: display rotation in degrees counterclockwise, one of 0, 90, 180, 270.
        codec: FFmpeg codec name, e.g. 'h264'.
        avg_fps: num_frames / duration_s (frames per second).
        start_s: source time of the first frame (its pts in seconds; 0 for most files).
    """

    uri: str
    num_frames: int
    frame_times: np.ndarray = field(repr=False)
    duration_s: float
    width: int
    height: int
    rotation: int
    codec: str
    avg_fps: float
    start_s: float = 0.0

    def select(self, fps: float, window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames to keep at ``fps`` (FFmpeg's fps filter, see ``fps_select``).

        Args:
            window: (start, end) in source seconds (the clock of the returned timestamps): keep
                only frames of this segment, selected as if it had been cut out. None: all.
        Returns:
            (indices int64 [M], timestamps float32 [M] = source time in seconds of each chosen
            frame's start: ``start_s`` plus its offset from the first frame).
        Raises:
            VideoError: the video is too short to give a single frame at this fps (SegmentError:
                the window is).
            ValueError: fps <= 0, or a window with end <= start.
        """
        relative = None if window is None else (window[0] - self.start_s, window[1] - self.start_s)
        indices = fps_select(self.frame_times, fps, relative)
        if indices.size == 0 and window is not None:
            raise SegmentError(
                f"{self.uri}: the segment [{window[0]:g}, {window[1]:g}) s gives no frame at fps={fps}; the video "
                f"spans [{self.start_s:g}, {self.start_s + self.duration_s:g}) s: check start/end in the video list"
            )
        if indices.size == 0:
            raise VideoError(
                f"{self.uri}: too short for fps={fps}: {self.num_frames} frame(s), {self.duration_s:.3f} s "
                "give no output frame; drop the video or lower no further than its length allows"
            )
        return indices, (self.start_s + self.frame_times[indices, 0]).astype(np.float32)


def _packet_times(stream) -> tuple[np.ndarray, np.ndarray] | None:
    """Sorted packet pts and the duration of the last-presented packet, in stream ticks."""
    pts, durations = [], []
    for packet in stream.container.demux(stream):
        if packet.pts is None:
            if packet.size:  # a real packet without a timestamp: cannot time frames from packets
                return None
            continue
        pts.append(packet.pts)
        durations.append(packet.duration or 0)
    if not pts:
        return None
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    return np.asarray(pts, dtype=np.int64)[order], np.asarray(durations, dtype=np.int64)[order]


def _times_from_packets(pts: np.ndarray, durations: np.ndarray, time_base: float) -> np.ndarray:
    """(start, end) seconds [N, 2]: end = next start; the last frame lasts its packet duration."""
    starts = (pts - pts[0]).astype(np.float64) * time_base
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    step = np.median(np.diff(starts)) if len(starts) > 1 else 0.0
    last = durations[-1] * time_base if durations[-1] > 0 else step
    ends[-1] = starts[-1] + last
    return np.column_stack([starts, ends])


def first_frame(container, stream, path: str):
    import av

    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise VideoError(
            f"{path}: cannot decode {stream.codec_context.name} video ({e}); the file is corrupt"
        ) from e
    raise VideoError(f"{path}: the video stream has no decodable frame; the file is empty or truncated")


def display_rotation(frame) -> int:
    """A decoded PyAV frame's display rotation, counterclockwise degrees snapped to 0/90/180/270.

    Mirroring in the display matrix (rare: some EXIF-style orientations) is not applied.
    """
    return int(round(float(frame.rotation or 0) / 90.0)) % 4 * 90


def open_video(path: str):
    """PyAV container of a file with a decodable video stream, else VideoError naming the problem."""
    import av

    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise VideoError(
            f"{path}: not a readable video file ({e}); it is corrupt, truncated or not a video"
        ) from e
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        container.close()
        raise VideoError(f"{path}: no video stream (streams: {kinds}); audio-only or not a video")
    if container.streams.video[0].codec_context is None:
        container.close()
        raise VideoError(f"{path}: no decoder for this video codec; re-encode it (e.g. to H.264)")
    return container


def probe_local(path: str, open_reader=None, keep_container=None) -> VideoInfo:
    """The probe itself; runs inside a worker process (see ``probe``).

    ``open_reader(path, rotation, coded_h, coded_w)``: the decord reader that counts the frames
    (default: one at the coded size); the worker passes one that the decode can reuse.
    ``keep_container(path, container)``: given, it takes over the PyAV container of a probe that
    succeeded (its decoder single-threaded) instead of it being closed, for the decode to reuse."""
    with contextlib.ExitStack() as owned:
        container = owned.enter_context(open_video(path))
        stream = container.streams.video[0]
        if keep_container is not None:  # before the first decode opens the codec
            stream.codec_context.thread_type, stream.codec_context.thread_count = "NONE", 1
        codec = stream.codec_context.name
        time_base = float(stream.time_base) if stream.time_base else 0.0
        frame = first_frame(container, stream, path)
        rotation = display_rotation(frame)
        coded_w, coded_h = frame.width, frame.height
        container.seek(0)
        packets = _packet_times(stream)
        num_frames, decord_times = _decord_frames(path, rotation, coded_h, coded_w, open_reader)
        if keep_container is not None:
            keep_container(path, container)
            owned.pop_all()
    if packets is not None and len(packets[0]) == num_frames and time_base > 0:
        times, start = _times_from_packets(*packets, time_base), float(packets[0][0]) * time_base
    else:
        times, start = decord_times - decord_times[0, 0], float(decord_times[0, 0])
        times[:, 1] = np.maximum(times[:, 1], np.append(times[1:, 0], times[-1, 1]))
    duration = float(times[-1, 1] - times[0, 0])
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    avg_fps = num_frames / duration if duration > 0 else float(stream.average_rate or 0)
    return VideoInfo(path, num_frames, times, duration, width, height, rotation, codec, avg_fps, start)


def _decord_frames(path: str, rotation: int, coded_h: int, coded_w: int, open_reader) -> tuple:
    """(decord's frame count, its float32 (start, end) times as float64 [N, 2] or None)."""
    import decord

    try:
        # Always pass the coded size: decord 0.6 mis-sizes rotated video when left to itself.
        if open_reader is None:
            reader = decord.VideoReader(path, width=coded_w, height=coded_h, num_threads=1)
        else:
            reader = open_reader(path, rotation, coded_h, coded_w)
        num_frames = len(reader)
        decord_times = (
            reader.get_frame_timestamp(range(num_frames)).astype(np.float64) if num_frames else None
        )
    except decord.DECORDError as e:
        raise VideoError(
            f"{path}: decord cannot open the video ({str(e).splitlines()[-1][:200]}); corrupt or truncated file"
        ) from e
    if num_frames == 0 or decord_times is None:
        raise VideoError(f"{path}: no frames; the file is empty or truncated")
    return num_frames, decord_times


def check_local_file(path: str | os.PathLike) -> str:
    """The path as a string, after the checks that need no decoder (exists, is a file, not empty)."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file; probe takes a local path (stage remote videos first)")
    if not p.is_file():
        raise VideoError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: zero-byte file; the download or copy failed, fetch it again")
    return str(p)


def probe(path: str | os.PathLike, *, timeout_s: float | None = 60.0) -> VideoInfo:
    """Probe a local video file in a decoder worker process.

    Args:
        path: local file path.
        timeout_s: seconds to wait for the worker; None waits forever.
    Raises:
        VideoError: missing, zero-byte, corrupt, truncated, not a video, audio-only, no decoder.
        DecodeTimeoutError: the probe did not finish in ``timeout_s`` (the worker was killed).
    """
    from vimpac_core.video.worker import call_worker

    local = check_local_file(path)
    return call_worker("probe", {"path": local}, timeout_s=timeout_s, what=f"probing {local}")
