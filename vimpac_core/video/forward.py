"""Decode the chosen frames in one forward pass (PyAV), as FFmpeg's fps filter does.

decord's ``get_batch`` seeks to a keyframe whenever the next chosen frame lies in another GOP
(and first rewinds to the start of the file), then decodes forward; at a few chosen frames per
GOP that is nearly every frame decoded anyway, plus the seeks. Here the packets are read once, in
order: a packet whose frame is not chosen is decoded only if other frames may reference it
(``skip_frame = NONREF``: libavcodec drops frames that nothing references, so the chosen frames'
pixels are unchanged), and each chosen frame is scaled by libavfilter's ``scale`` with bilinear
flags, which gives decord's pixels exactly (decord builds the same filter; its FFmpeg 4.1 default
is bilinear).

Frame ``i`` is the packet with the i-th smallest pts, as in decord's index. A chosen frame the
decoder does not hand out (a damaged packet, a frame without pts) is taken from decord instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from vimpac_core.video.geometry import resize_width

# CPU per decoded frame, decord's seeking get_batch over ours: 2.4 on bikes looped 30x (7.8 s for
# the 6,180 frames it decodes, 180 seeks, vs 4.1 s for 7,494 here, frames nothing references
# skipped), 1.0 on bigbuckbunny (one GOP, no B-frames). Forward wins up to this many times the
# frames seeking would decode:
FORWARD_ADVANTAGE = 1.5
_ALIGN = 32  # bytes: libavfilter's row alignment for rgb24 frames (FFmpeg 4.1, decord's build)
SAFE_WIDTH_STEP = 64  # pixels; 3 * 64 k bytes per row is already aligned, so never padded


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's packets: ``pts`` sorted (frame i has pts[i]) and the frame indices
    of keyframes."""

    pts: np.ndarray
    keyframes: np.ndarray


def index_packets(container) -> PacketIndex | None:
    """One demux pass (no decoding); None when frames cannot be told apart by pts (a packet
    without pts, or two with the same one) or the container's frame count disagrees with its
    packets (a truncated file: decord's index build refuses it, which the seek path reports)."""
    pts, keys = [], []
    stream = container.streams.video[0]
    container.seek(0)
    for packet in container.demux(stream):
        if packet.pts is None:
            if packet.size:
                return None
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    promised = stream.frames
    ordered = np.sort(np.asarray(pts, dtype=np.int64))
    if ordered.size == 0 or np.any(np.diff(ordered) == 0) or promised not in (0, ordered.size):
        return None
    keyframes = np.searchsorted(ordered, np.asarray(keys, dtype=np.int64))
    return PacketIndex(ordered, np.unique(np.concatenate([[0], keyframes])))


def forward_is_cheaper(packets: PacketIndex, wanted: np.ndarray) -> bool:
    """Whether one forward pass up to the last chosen frame beats decord's seeks (sorted,
    distinct ``wanted``): decord decodes from the keyframe of each chosen frame in a new GOP, and
    from the previous chosen frame within one."""
    if wanted.size == 0:
        return False
    gop = np.searchsorted(packets.keyframes, wanted, side="right") - 1
    new_gop = np.ones(wanted.size, dtype=bool)
    new_gop[1:] = gop[1:] != gop[:-1]
    start = np.where(new_gop, packets.keyframes[gop], np.concatenate([[0], wanted[:-1] + 1]))
    by_seeking = int(np.sum(wanted - start + 1))
    return int(wanted[-1]) + 1 <= FORWARD_ADVANTAGE * by_seeking


def decord_width(width: int) -> int:
    """The width decord can hand out for a requested ``width``: itself, or the next multiple of
    ``SAFE_WIDTH_STEP`` where libavfilter pads the rgb24 rows to a multiple of the width (decord
    then fails, see decode.py). FFmpeg widens the row to ``FFALIGN(width, a)`` for a = 1, 2, 4,
    .. until 3 * that is ``_ALIGN``-aligned."""
    step = 1
    while step <= _ALIGN:
        padded = -(-width // step) * step
        if (3 * padded) % _ALIGN == 0:
            break
        step *= 2
    row = 3 * padded
    if row != 3 * width and row % width == 0:
        return -(-width // SAFE_WIDTH_STEP) * SAFE_WIDTH_STEP
    return width


class _Scaler:
    """libavfilter ``scale`` (bilinear) to rgb24 at decord's width, then ``resize_width``."""

    def __init__(self, stream, height: int, width: int) -> None:
        import av

        self.width = width
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(template=stream)
        scale = self.graph.add("scale", f"{decord_width(width)}:{height}:flags=bilinear")
        rgb = self.graph.add("format", "rgb24")
        sink = self.graph.add("buffersink")
        source.link_to(scale)
        scale.link_to(rgb)
        rgb.link_to(sink)
        self.graph.configure()

    def __call__(self, frame) -> np.ndarray:
        self.graph.push(frame)
        return resize_width(self.graph.pull().to_ndarray()[None], self.width)[0]


def _chosen_frames(container, stream, packets: PacketIndex, wanted: set[int]) -> Iterator[tuple[int, object]]:
    """(frame index, frame) of the chosen frames the decoder hands out, in presentation order;
    frames nothing references are not decoded unless chosen."""
    by_pts = {int(packets.pts[i]): i for i in wanted}
    last = int(packets.pts[max(wanted)])
    codec = stream.codec_context
    for packet in container.demux(stream):
        if packet.pts is not None:
            codec.skip_frame = "DEFAULT" if packet.pts in by_pts else "NONREF"
        for frame in codec.decode(packet):
            index = by_pts.get(frame.pts)
            if index is not None:
                yield index, frame
            if frame.pts is not None and frame.pts >= last:
                return


def decode_forward(
    container,
    packets: PacketIndex,
    windows: list[np.ndarray],
    sizes: dict[int, tuple[int, int]],
    fetch_missing: Callable[[int, np.ndarray], np.ndarray],
) -> Iterator[dict[int, np.ndarray]]:
    """Per window (sorted, distinct frame indices; windows in increasing order): ``{side: uint8
    [len(window), h, w, 3]}`` at ``sizes[side] = (h, w)``, from the start of ``container``
    (its decoder set to one thread). ``fetch_missing(side, indices)`` supplies chosen frames the
    decoder did not hand out."""
    wanted = {int(i) for window in windows for i in window}
    frames: dict[int, dict[int, np.ndarray]] = {}  # frame index -> side -> resized frame
    seen, done = -1, False  # the latest chosen frame handed out; the decoder is finished
    stream = container.streams.video[0]
    container.seek(0)  # also flushes the decoder
    scalers = {side: _Scaler(stream, h, w) for side, (h, w) in sizes.items()}
    chosen = _chosen_frames(container, stream, packets, wanted)
    for window in windows:
        while not done and seen < window[-1]:
            step = next(chosen, None)
            if step is None:
                done = True
                break
            seen, frame = step
            frames[seen] = {side: scale(frame) for side, scale in scalers.items()}
        yield {side: _assemble(window, frames, side, fetch_missing) for side in sizes}
        for index in [i for i in frames if i < window[-1]]:
            del frames[index]


def _assemble(window: np.ndarray, frames: dict, side: int, fetch_missing) -> np.ndarray:
    missing = np.array([i for i in window.tolist() if i not in frames], dtype=np.int64)
    fetched = dict(zip(missing.tolist(), fetch_missing(side, missing), strict=True)) if missing.size else {}
    return np.stack([frames[i][side] if i in frames else fetched[i] for i in window.tolist()])
