"""Decode only the chosen frames of a video into views, window by window (in a worker).

Two paths give the same frames and pixels. Forward (``forward.py``, the usual one): the packets
are read once, in order, as FFmpeg's fps filter does, and only the chosen frames are scaled.
Seek (decord's ``get_batch`` per window): seeks to the keyframe before each chosen frame in a new
GOP; kept for indices out of order, files whose frames pts cannot tell apart, and sparse choices
over many GOPs, where seeking decodes fewer frames (``forward_is_cheaper``). Either way each
distinct short side is resized bilinearly; crops and flips are numpy slices. Frames are decoded
in windows of ``window`` output frames, so memory is bounded by the window, not the video length.

Rotation: decord 0.6 honours the display matrix inconsistently (180 degrees is applied; 90/270
give a squashed picture at an explicit size, or a wrongly sized buffer without one), so a rotated
video is first remuxed (packets copied, no re-encode) into a scratch file whose display matrix is
cleared; decord decodes that, and the frames are turned upright with ``np.rot90``.

Padded rows: decord 0.6 hands out a frame without copying when its row stride is a multiple of
32 bytes, assuming rows of exactly ``3 * width`` bytes. For some target widths (16, 24, 48, 72 px
among 16..259) FFmpeg's scaler pads rows to such a stride, and ``get_batch`` fails with
"from_size == to_size" (e.g. 96x64 at short side 32: rows of 48 px = 144 bytes padded to 192).
Then that size is decoded at the next multiple of 64 px wide (rows of 192k bytes, never padded)
and the frames are resampled to the exact width with ``resize_width``; other widths keep the
single resize in decord.

Per-video overhead (a short clip's cost beyond decoding its frames) is kept to one PyAV open and
first-frame decode and one decord open per short side: a worker process remembers the short sides
of its last decode, its probe opens decord at the size that gives for the new video (frame count
and times do not depend on the size), and the decode that follows reuses that reader and the
probe's orientation when it is the same, unchanged file; the forward path likewise takes over
the probe's PyAV container (no second open). Anything else opens afresh, as before.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from vimpac_core.errors import VideoError
from vimpac_core.video.forward import (
    SAFE_WIDTH_STEP,
    decode_forward,
    forward_is_cheaper,
    index_packets,
)
from vimpac_core.video.geometry import ViewSpec, resize_width, resized_size
from vimpac_core.video.probe import display_rotation, first_frame, open_video


def _check_request(frame_indices: np.ndarray, views: list[ViewSpec], window: int) -> np.ndarray:
    indices = np.asarray(frame_indices)
    if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"frame_indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    if indices.size and indices.min() < 0:
        raise ValueError("frame_indices must be >= 0")
    if not views:
        raise ValueError("views is empty: pass at least one ViewSpec (see view_set)")
    if len({v.name for v in views}) != len(views):
        raise ValueError(f"views name a view twice: {[v.name for v in views]}")
    if window <= 0:
        raise ValueError(f"window must be a positive number of frames, got {window}")
    return indices.astype(np.int64)


_ORIENTATIONS: OrderedDict[tuple, tuple[int, int, int]] = OrderedDict()  # this process's latest files
_DECORD_COUNTS: OrderedDict[tuple, int] = OrderedDict()  # file key -> decord's frame count (probe)
_REMEMBERED = 16
_last_sides: tuple[int, ...] = ()  # short sides of this process's last decode
_probe_reader: dict[tuple, object] = {}  # at most one: (file key, height, width) -> decord reader
_probe_container: dict[tuple, object] = {}  # at most one: file key -> the probe's PyAV container


def _file_key(path: str) -> tuple:
    """Identifies one version of a file: a replaced or rewritten file gets another key."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remember_orientation(path: str, rotation: int, coded_height: int, coded_width: int) -> None:
    """Record what ``probe`` found, so that decoding the same unchanged file in this process
    skips a second PyAV open and first-frame decode."""
    _remember(_ORIENTATIONS, path, (rotation, coded_height, coded_width))


def _remember(store: OrderedDict, path: str, value) -> None:
    key = _file_key(path)
    store[key] = value
    store.move_to_end(key)
    while len(store) > _REMEMBERED:
        store.popitem(last=False)


def open_reader_for_probe(path: str, rotation: int, coded_h: int, coded_w: int):
    """``probe_local``'s ``open_reader``: decord at the size this process's last decode used for
    its smallest short side (applied to this video), kept for the decode to reuse; the coded
    size when there is no such decode or the video is rotated (decoded from a remuxed copy)."""
    _probe_reader.clear()
    remember_orientation(path, rotation, coded_h, coded_w)
    if not _last_sides or rotation:
        reader = _open_reader(path, coded_h, coded_w)
        _remember(_DECORD_COUNTS, path, len(reader))
        return reader
    height, width = resized_size(coded_h, coded_w, _last_sides[0])
    reader = _open_reader(path, height, width)
    _remember(_DECORD_COUNTS, path, len(reader))
    _probe_reader[(_file_key(path), height, width)] = reader
    return reader


def keep_container_for_decode(path: str, container) -> None:
    """``probe_local``'s ``keep_container``: hold the probe's PyAV container (one at a time) for
    the forward pass of a decode of the same, unchanged file."""
    _drop_probe_container()
    _probe_container[_file_key(path)] = container


def _drop_probe_container() -> None:
    for container in _probe_container.values():
        container.close()
    _probe_container.clear()


def _forward_container(path: str):
    """The probe's container of ``path`` (decoder single-threaded) or a new one."""
    kept = _probe_container.pop(_file_key(path), None)
    _drop_probe_container()
    if kept is not None:
        return kept
    container = open_video(path)
    codec = container.streams.video[0].codec_context
    codec.thread_type, codec.thread_count = "NONE", 1
    return container


def _orientation(path: str) -> tuple[int, int, int]:
    """(rotation degrees ccw in {0, 90, 180, 270}, coded height, coded width): remembered from this
    process's probe of the same file, else from the first frame."""
    known = _ORIENTATIONS.get(_file_key(path))
    if known is not None:
        return known
    with open_video(path) as container:
        stream = container.streams.video[0]
        frame = first_frame(container, stream, path)
        found = display_rotation(frame), frame.height, frame.width
    remember_orientation(path, *found)
    return found


def _unrotated_copy(path: str, scratch_dir: str) -> str:
    """Remux ``path`` into ``scratch_dir`` with the display rotation cleared; returns the copy's path."""
    import av

    target = os.path.join(scratch_dir, "unrotated" + (os.path.splitext(path)[1] or ".mp4"))
    with av.open(path) as source, av.open(target, mode="w", format=source.format.name.split(",")[0]) as copy:
        stream = source.streams.video[0]
        out = copy.add_stream_from_template(stream)
        out.set_display_rotation(0)
        for packet in source.demux(stream):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = out
            copy.mux(packet)
    return target


_PADDED_ROWS = "DECORDArrayCopyFromTo"  # decord's message when a frame's rows are padded


def _open_reader(path: str, height: int, width: int):
    import decord

    try:
        return decord.VideoReader(path, width=width, height=height, num_threads=1)
    except decord.DECORDError as e:
        raise VideoError(
            f"{path}: decord cannot open the video ({str(e).splitlines()[-1][:200]}); corrupt or truncated file"
        ) from e


class _SizedReader:
    """Frames at exactly ``height`` x ``width`` (coded orientation), resized by decord.

    Falls back to decoding ``SAFE_WIDTH_STEP``-aligned widths plus ``resize_width`` when decord
    cannot hand out this width (see the module docstring).
    """

    def __init__(self, path: str, height: int, width: int) -> None:
        self.path, self.height, self.width = path, height, width
        self.decode_width = width
        kept = _probe_reader.pop((_file_key(path), height, width), None)  # the probe's, same size
        self.reader = kept if kept is not None else _open_reader(path, height, width)

    def __len__(self) -> int:
        return len(self.reader)

    def get_batch(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), height, width, 3] for sorted distinct ``indices``."""
        import decord

        try:
            frames = self.reader.get_batch(indices.tolist()).asnumpy()
        except decord.DECORDError as e:
            if _PADDED_ROWS in str(e) and self.decode_width == self.width:
                self.decode_width = -(-self.width // SAFE_WIDTH_STEP) * SAFE_WIDTH_STEP
                self.reader = _open_reader(self.path, self.height, self.decode_width)
                return self.get_batch(indices)
            raise VideoError(
                f"{self.path}: decoding frames {int(indices[0])}..{int(indices[-1])} failed "
                f"({str(e).splitlines()[-1][:200]}); the file is corrupt or truncated"
            ) from e
        return resize_width(frames, self.width)


def decode_windows(
    path: str,
    frame_indices: np.ndarray,
    views: list[ViewSpec],
    window: int,
    scratch_dir: str,
    method: str = "auto",
) -> Iterator[dict[str, np.ndarray]]:
    """The decode itself; runs inside a worker process (see ``decode_views``).

    ``method``: 'forward' (one pass, forward.py), 'seek' (decord's get_batch per window) or
    'auto': forward for nondecreasing indices where it decodes less than ``FORWARD_ADVANTAGE``
    times the frames seeking would. Both give the same frames and pixels.
    """
    global _last_sides
    if method not in ("auto", "forward", "seek"):
        raise ValueError(f"method must be 'auto', 'forward' or 'seek', got {method!r}")
    _last_sides = tuple(sorted({v.short_side for v in views}))
    rotation, coded_h, coded_w = _orientation(path)
    turns = rotation // 90
    source = path
    if turns:
        path = _unrotated_copy(path, scratch_dir)
    shown_h, shown_w = (coded_w, coded_h) if turns % 2 else (coded_h, coded_w)
    sizes = {}
    for side in _last_sides:
        resize_h, resize_w = resized_size(shown_h, shown_w, side)
        sizes[side] = (resize_w, resize_h) if turns % 2 else (resize_h, resize_w)  # decord resizes the coded picture
    chunks = [frame_indices[start : start + window] for start in range(0, frame_indices.size, window)]
    windows = None
    if method != "seek":
        windows = _forward_plan(source, path, frame_indices, chunks, sizes, method == "forward")
    _drop_probe_container()  # the forward pass has taken it, or it is not needed
    if windows is None:
        windows = _seek_windows(path, frame_indices, chunks, sizes)
    for chunk, frames in zip(chunks, windows, strict=True):
        yield _cut_views(frames, chunk, views, turns)


def _forward_plan(source: str, path: str, frame_indices: np.ndarray, chunks, sizes, forced: bool):
    """The forward pass's windows (over ``path``: ``source`` or its unrotated copy) where it
    applies and (unless ``forced``) decodes less, else None."""
    if not frame_indices.size or np.any(np.diff(frame_indices) < 0):
        packets = container = None
    else:
        container = _forward_container(path)
        packets = index_packets(container)
    if packets is not None and len(packets.pts) != _decord_count(source, path, sizes):
        packets = None  # decord numbers other frames: its path keeps the probe's numbering
    if forced and packets is None:
        raise ValueError(
            f"{path}: method 'forward' needs nondecreasing indices and packets with distinct pts, "
            "as many as decord counts"
        )
    if packets is None or not (forced or forward_is_cheaper(packets, np.unique(frame_indices))):
        if container is not None:
            container.close()
        return None
    _probe_reader.clear()  # not needed: free it now
    _check_range(path, frame_indices, len(packets.pts))
    return _forward_windows(container, path, packets, chunks, sizes)


def _decord_count(source: str, path: str, sizes: dict) -> int:
    """decord's frame count: remembered from this process's probe of ``source``, else opened."""
    known = _DECORD_COUNTS.get(_file_key(source))
    return known if known is not None else len(_open_reader(path, *next(iter(sizes.values()))))


def _check_range(path: str, frame_indices: np.ndarray, num_frames: int) -> None:
    if frame_indices.size and frame_indices.max() >= num_frames:
        raise ValueError(
            f"{path}: frame index {int(frame_indices.max())} out of range (video has {num_frames} frames)"
        )


def _forward_windows(container, path, packets, chunks, sizes) -> Iterator[dict[int, np.ndarray]]:
    """{side: frames of the window's distinct indices}, from one forward pass over ``container``
    (closed at the end)."""
    fallback: dict[int, _SizedReader] = {}

    def fetch_missing(side: int, indices: np.ndarray) -> np.ndarray:
        if side not in fallback:
            fallback[side] = _SizedReader(path, *sizes[side])
        return fallback[side].get_batch(indices)

    windows = [np.unique(chunk) for chunk in chunks]
    with container:
        yield from decode_forward(container, packets, windows, sizes, fetch_missing)


def _seek_windows(path, frame_indices, chunks, sizes) -> Iterator[dict[int, np.ndarray]]:
    """{side: frames of the window's distinct indices}, from decord's get_batch per window."""
    readers = {side: _SizedReader(path, h, w) for side, (h, w) in sizes.items()}
    _probe_reader.clear()  # not reused (other sizes or file): free it now
    _check_range(path, frame_indices, len(next(iter(readers.values()))))
    for chunk in chunks:
        unique = np.unique(chunk)  # decord wants sorted, distinct indices
        yield {side: reader.get_batch(unique) for side, reader in readers.items()}  # [u, h, w, 3] uint8


def _cut_views(frames: dict[int, np.ndarray], chunk: np.ndarray, views: list[ViewSpec], turns: int) -> dict:
    """{view name: uint8 [len(chunk), out, out, 3]} from each side's frames of np.unique(chunk)."""
    _, inverse = np.unique(chunk, return_inverse=True)
    out: dict[str, np.ndarray] = {}
    for side, resized in frames.items():
        if turns:
            resized = np.rot90(resized, k=turns, axes=(1, 2))
        for view in views:
            if view.short_side == side:
                out[view.name] = view.apply(resized)[inverse]
    return out


def decode_views(
    path: str | os.PathLike,
    frame_indices: np.ndarray,
    views: list[ViewSpec],
    *,
    window: int = 32,
    timeout_s: float | None = 300.0,
) -> Iterator[dict[str, np.ndarray]]:
    """Decode the chosen frames of a local video into views, one window at a time.

    Args:
        path: local video file.
        frame_indices: int [M] source frame indices (``VideoInfo.select``); repeats allowed;
            nondecreasing order is the fast one (decord reads forward).
        views: the views to cut (``view_set``); names must be distinct.
        window: output frames per yielded window (bounds memory).
        timeout_s: total seconds the caller may wait for the decoder over the whole video
            (time spent by the consumer between windows is not counted); None: no limit.

    Yields:
        ``{view.name: uint8 [n, out_size, out_size, 3] RGB}`` with n <= window, windows in the
        order of ``frame_indices``; frames upright (rotation metadata applied).

    Raises:
        VideoError: missing/corrupt/truncated file or a frame that cannot be decoded.
        DecodeTimeoutError: the decoder took longer than ``timeout_s``; it was killed.
        ValueError: bad indices (negative, out of range), views or window.
    """
    from vimpac_core.video.probe import check_local_file
    from vimpac_core.video.worker import stream_worker

    indices = _check_request(frame_indices, views, window)
    local = check_local_file(path)
    if indices.size == 0:
        return
    # The parent owns the scratch folder, so it is removed even when the worker is killed.
    with tempfile.TemporaryDirectory(prefix="vimpac-decode-") as scratch:
        payload = {
            "path": local,
            "frame_indices": indices,
            "views": list(views),
            "window": window,
            "scratch_dir": scratch,
        }
        yield from stream_worker("decode", payload, timeout_s=timeout_s, what=f"decoding {local}")
