"""Tokenizer identity: ``"<kind>:<sha256 of the weights>"``, plus ``"@bf16"`` when encoding in bf16.

Ingest writes this id into every shard row, so tokens of different tokenizers (or of the same
architecture with other weights, or of the same weights in another precision) can never be mixed
silently. fp32, the default, adds nothing: its ids are those of shards written before precisions
existed, and an id without a suffix reads as fp32.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from vimpac_core.errors import TokenizerError
from vimpac_core.precision import PRECISIONS
from vimpac_core.tokenizers.base import TOKENIZER_KINDS

_CHUNK = 1 << 20


def sha256_stream(stream: BinaryIO) -> str:
    """Hex sha256 of everything left in a binary stream (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a local file's bytes."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def make_tokenizer_id(kind: str, weights_sha256: str, precision: str = "fp32") -> str:
    """``make_tokenizer_id("vqvae", "ab12...")`` -> ``"vqvae:ab12..."``; with ``precision="bf16"``
    -> ``"vqvae:ab12...@bf16"``."""
    if precision not in PRECISIONS:
        raise TokenizerError(f"tokenizer precision {precision!r} is not one of {PRECISIONS}")
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"tokenizer kind {kind!r} is not one of {TOKENIZER_KINDS}")
    if len(weights_sha256) != 64 or any(c not in "0123456789abcdef" for c in weights_sha256):
        raise TokenizerError(f"{weights_sha256!r} is not a hex sha256 digest of the weights")
    return f"{kind}:{weights_sha256}" + ("" if precision == "fp32" else f"@{precision}")


def parse_tokenizer_id(tokenizer_id: str) -> tuple[str, str, str]:
    """Inverse of :func:`make_tokenizer_id`: ``"kind:sha[@precision]"`` -> ``(kind, sha, precision)``
    (``"fp32"`` when there is no suffix, as in shards written before precisions existed)."""
    kind, _, rest = tokenizer_id.partition(":")
    digest, _, precision = rest.partition("@")
    make_tokenizer_id(kind, digest, precision or "fp32")
    return kind, digest, precision or "fp32"


def split_tokenizer_id(tokenizer_id: str) -> tuple[str, str]:
    """``"kind:sha[@precision]"`` -> ``(kind, sha)``; validates the whole id."""
    return parse_tokenizer_id(tokenizer_id)[:2]


def tokenizer_precision(tokenizer_id: str) -> str:
    """The encoding precision an id records: ``"fp32"`` or ``"bf16"``."""
    return parse_tokenizer_id(tokenizer_id)[2]
