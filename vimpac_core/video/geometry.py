"""Views of a frame: resize the short side, crop top/center/bottom, flip (DATA.md geometry).

A view is named like ``s128-center-noflip`` or ``s160-top-flip``; the paper's view sets are
``pretrain`` (S, center), ``finetune`` (S and 1.25 S x three crops x flip/no flip) and
``test`` (S x three crops).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CROPS = ("top", "center", "bottom")
_VIEW_NAME = re.compile(r"^s(\d+)-(top|center|bottom)-(flip|noflip)$")


def _crop_factor(crop: str | int) -> int:
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool) and 0 <= int(crop) <= 2:
        return int(crop)
    if isinstance(crop, str) and crop in CROPS:
        return CROPS.index(crop)
    raise ValueError(f"crop must be one of {CROPS} or 0, 1, 2; got {crop!r}")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H', W') after resizing so the shorter side is ``short_side`` (truncating int, as released)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width} (height x width)")
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    if height >= width:
        return int(height * short_side / width), short_side
    return short_side, int(width * short_side / height)


def crop_box(
    height: int, width: int, short_side: int, out_size: int, crop: str | int
) -> tuple[int, int, int, int]:
    """Where a view's square crop lies, per DATA.md.

    Args:
        height, width: displayed frame size in pixels (after rotation).
        short_side: the shorter side after resizing, S (pixels).
        out_size: side of the square crop (pixels), at most ``short_side``.
        crop: 'top' (top-left), 'center', 'bottom' (bottom-right), or 0, 1, 2.

    Returns:
        (resize_h, resize_w, y0, x0): resized frame size and the crop's top-left corner, so the
        view is ``resized[y0:y0 + out_size, x0:x0 + out_size]``.
    """
    f = _crop_factor(crop)
    if out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    if out_size > short_side:
        raise ValueError(
            f"out_size {out_size} is larger than the resized short side {short_side}; "
            "use a short side >= the crop size"
        )
    resize_h, resize_w = resized_size(height, width, short_side)
    y0 = int(f * (resize_h - out_size) / 2)
    x0 = int(f * (resize_w - out_size) / 2)
    return resize_h, resize_w, y0, x0


@dataclass(frozen=True)
class ViewSpec:
    """One view: resize short side to ``short_side``, crop ``out_size`` square at ``crop``, maybe flip."""

    short_side: int
    out_size: int
    crop: str
    flip: bool

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"ViewSpec crop must be one of {CROPS}, got {self.crop!r}")
        if not 0 < self.out_size <= self.short_side:
            raise ValueError(
                f"ViewSpec out_size {self.out_size} must be in 1..short_side ({self.short_side})"
            )

    @property
    def name(self) -> str:
        """e.g. ``s128-center-noflip``; the ``view`` column of a shard."""
        return f"s{self.short_side}-{self.crop}-{'flip' if self.flip else 'noflip'}"

    @classmethod
    def parse(cls, name: str, out_size: int) -> ViewSpec:
        """``'s160-top-flip'`` -> ViewSpec(160, out_size, 'top', True)."""
        m = _VIEW_NAME.match(name.strip())
        if m is None:
            raise ValueError(
                f"bad view name {name!r}: expected s<short side>-<top|center|bottom>-<flip|noflip>, "
                "e.g. s128-center-noflip"
            )
        return cls(int(m.group(1)), out_size, m.group(2), m.group(3) == "flip")

    def apply(self, resized: np.ndarray) -> np.ndarray:
        """Crop (and flip) frames already resized for this view.

        Args:
            resized: uint8 [N, H', W', 3] with min(H', W') == short_side.
        Returns:
            uint8 [N, out_size, out_size, 3], C-contiguous.
        """
        h, w = resized.shape[1:3]
        # crop_box on the resized size is the identity resize; it only places the crop.
        _, _, y0, x0 = crop_box(h, w, min(h, w), self.out_size, self.crop)
        out = resized[:, y0 : y0 + self.out_size, x0 : x0 + self.out_size]
        if self.flip:
            out = out[:, :, ::-1]
        return np.ascontiguousarray(out)


def view_set(name: str, frame_size: int, *, flip: bool = True) -> list[ViewSpec]:
    """The views to extract, by set name (S = ``frame_size`` = crop size).

    'pretrain': [S center noflip]. 'finetune': S and int(1.25 S) x top/center/bottom x
    noflip/flip (12 views; 6 with ``flip=False``). 'test': S x top/center/bottom, no flip.
    Anything else: comma-separated view names (``s128-center-noflip,s160-top-flip``).
    """
    if frame_size <= 0:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    s = frame_size
    if name == "pretrain":
        return [ViewSpec(s, s, "center", False)]
    if name == "finetune":
        flips = (False, True) if flip else (False,)
        return [ViewSpec(side, s, c, f) for side in (s, int(1.25 * s)) for c in CROPS for f in flips]
    if name == "test":
        return [ViewSpec(s, s, c, False) for c in CROPS]
    views = [ViewSpec.parse(part, s) for part in name.split(",") if part.strip()]
    if not views:
        raise ValueError(f"no views in {name!r}: use pretrain, finetune, test or view names")
    if len({v.name for v in views}) != len(views):
        raise ValueError(f"view list {name!r} names a view twice")
    return views


def resize_width(frames: np.ndarray, width: int) -> np.ndarray:
    """Resample frames horizontally to ``width`` with a triangle (bilinear) filter.

    Downscaling widens the filter to the scale ratio (antialiased, like PIL's bilinear), so no
    source column is skipped; pixel centres are aligned (half-pixel convention, as FFmpeg).

    Args:
        frames: uint8 [N, H, W, 3].
        width: output width in pixels (> 0).
    Returns:
        uint8 [N, H, width, 3], rounded to nearest.
    """
    n, h, src_w, c = frames.shape
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    if width == src_w:
        return frames
    scale = src_w / width
    support = max(scale, 1.0)  # filter radius in source pixels
    centers = (np.arange(width) + 0.5) * scale  # [width], source coordinates
    taps = np.arange(src_w) + 0.5  # [W]
    weights = np.clip(1.0 - np.abs(taps[None, :] - centers[:, None]) / support, 0.0, None)  # [width, W]
    weights /= weights.sum(axis=1, keepdims=True)
    out = np.tensordot(frames.astype(np.float32), weights.T.astype(np.float32), axes=([2], [0]))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 1, 3, 2).copy()
