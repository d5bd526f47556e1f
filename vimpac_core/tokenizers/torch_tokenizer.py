"""The chunked numpy <-> torch plumbing every tokenizer shares (`TorchTokenizer`) and the checks
of frames and codes at its edges.

A tokenizer takes uint8 frames [N, H, W, 3] (RGB, H and W multiples of 8) and returns int64 codes
[N, H/8, W/8]. Work runs in chunks of ``batch_size`` frames under ``torch.inference_mode`` so
memory stays bounded whatever N is. The concrete tokenizers (runtime.py, dalle_io.py) build on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vimpac_core.errors import TokenizerError

DOWNSAMPLE = 8


def check_frames(frames: np.ndarray, name: str = "frames") -> None:
    """Raise TokenizerError unless ``frames`` is uint8 [N, H, W, 3] with H, W multiples of 8."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        raise TokenizerError(f"{name} must be a uint8 numpy array [N, H, W, 3] (RGB); got {got}")
    h, w = frames.shape[1:3]
    if h % DOWNSAMPLE or w % DOWNSAMPLE or h == 0 or w == 0:
        raise TokenizerError(f"{name} are {h}x{w}: height and width must be positive multiples of 8 (crop/resize first)")


def check_codes(codes: np.ndarray, vocab_size: int) -> None:
    """Raise TokenizerError unless ``codes`` is an integer array [N, h, w] within [0, vocab_size)."""
    if not isinstance(codes, np.ndarray) or codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer):
        raise TokenizerError(f"codes must be an integer numpy array [N, h, w]; got {getattr(codes, 'shape', codes)!r}")
    if codes.size and (codes.min() < 0 or codes.max() >= vocab_size):
        raise TokenizerError(f"codes must lie in [0, {vocab_size}); got range [{codes.min()}, {codes.max()}]")


class TorchTokenizer:
    """Shared chunked numpy <-> torch plumbing; subclasses give the two per-batch functions.

    Args:
        encode_batch: float32 [B, 3, H, W] in [0, 255] (channels-last) -> codes [B, h, w].
        decode_batch: codes [B, h, w] int64 -> float [B, 3, 8h, 8w] in [0, 1], or None.
        precision: the encoder's precision (``"fp32"`` or ``"bf16"``), recorded in ``tokenizer_id``.
    """

    downsample = DOWNSAMPLE

    def __init__(self, tokenizer_id: str, vocab_size: int, device: str | torch.device,
                 encode_batch: Callable[[torch.Tensor], torch.Tensor],
                 decode_batch: Callable[[torch.Tensor], torch.Tensor] | None, batch_size: int,
                 precision: str = "fp32") -> None:
        self.tokenizer_id = tokenizer_id
        self.precision = precision
        self.vocab_size = int(vocab_size)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self._encode_batch = encode_batch
        self._decode_batch = decode_batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tokenizer_id[:20]}..., vocab={self.vocab_size}, device={self.device})"

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames [N, H, W, 3] -> int64 codes [N, H/8, W/8]."""
        check_frames(frames)
        n, h, w, _ = frames.shape
        out = np.empty((n, h // DOWNSAMPLE, w // DOWNSAMPLE), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size]))
                # NHWC uint8 viewed as NCHW is already channels-last: no copy before the cast.
                x = chunk.to(self.device).permute(0, 3, 1, 2).float()
                out[start:start + len(chunk)] = self._encode_batch(x).cpu().numpy()
        return out

    @property
    def can_decode(self) -> bool:
        return self._decode_batch is not None

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int codes [N, h, w] -> uint8 frames [N, 8h, 8w, 3]."""
        if self._decode_batch is None:
            raise TokenizerError(f"{self.tokenizer_id} has no decoder (for DALL-E, give decoder.pkl next to encoder.pkl)")
        check_codes(codes, self.vocab_size)
        n, h, w = codes.shape
        out = np.empty((n, h * DOWNSAMPLE, w * DOWNSAMPLE, 3), dtype=np.uint8)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                c = torch.from_numpy(codes[start:start + self.batch_size].astype(np.int64)).to(self.device)
                pics = self._decode_batch(c).clamp(0, 1).mul(255).round().to(torch.uint8)
                out[start:start + len(c)] = pics.permute(0, 2, 3, 1).cpu().numpy()
        return out
