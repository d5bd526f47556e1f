"""The Tokenizer protocol every frame tokenizer implements (DALL-E dVAE, our VQ-VAE).

Ingest depends only on this protocol; ``load_tokenizer`` turns a CLI spec such as
``dalle:/path/encoder.pkl`` or ``vqvae:./tok`` into an object that satisfies it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from vimpac_core.errors import TokenizerError


@runtime_checkable
class Tokenizer(Protocol):
    """Frames to discrete codes.

    Attributes:
        tokenizer_id: ``"<kind>:<sha256 of the weights>"``; written into every shard row so
            tokens of different tokenizers are never mixed silently.
        vocab_size: number of codes (8192 for the DALL-E dVAE).
        downsample: spatial reduction factor (8): a [H, W] frame gives [H/8, W/8] codes.
    """

    tokenizer_id: str
    vocab_size: int
    downsample: int

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames [N, H, W, 3] (RGB) -> integer codes [N, H/8, W/8] (numpy, int64)."""
        ...


@runtime_checkable
class Decodable(Protocol):
    """A tokenizer that can also turn codes back into pictures."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """integer codes [N, h, w] -> uint8 frames [N, 8h, 8w, 3]."""
        ...


TOKENIZER_KINDS = ("dalle", "vqvae")


def parse_tokenizer_spec(spec: str) -> tuple[str, str]:
    """Split ``"kind:path"`` into (kind, path); kind is one of TOKENIZER_KINDS."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in TOKENIZER_KINDS or not path:
        raise TokenizerError(
            f"tokenizer spec {spec!r} is not of the form KIND:PATH with KIND in {TOKENIZER_KINDS} "
            "(e.g. 'dalle:./encoder.pkl' or 'vqvae:./my_tokenizer')"
        )
    return kind, path
