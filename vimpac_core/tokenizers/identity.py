"""Tokenizer identity: ``"<kind>:<sha256 of the weights>"``.

Ingest writes this id into every shard row, so tokens of different tokenizers (or of the same
architecture with other weights) can never be mixed silently.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from vimpac_core.errors import TokenizerError
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


def make_tokenizer_id(kind: str, weights_sha256: str) -> str:
    """``make_tokenizer_id("vqvae", "ab12...")`` -> ``"vqvae:ab12..."``."""
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"tokenizer kind {kind!r} is not one of {TOKENIZER_KINDS}")
    if len(weights_sha256) != 64 or any(c not in "0123456789abcdef" for c in weights_sha256):
        raise TokenizerError(f"{weights_sha256!r} is not a hex sha256 digest of the weights")
    return f"{kind}:{weights_sha256}"


def split_tokenizer_id(tokenizer_id: str) -> tuple[str, str]:
    """Inverse of :func:`make_tokenizer_id`: ``"kind:sha"`` -> ``(kind, sha)``; validates both."""
    kind, _, digest = tokenizer_id.partition(":")
    make_tokenizer_id(kind, digest)
    return kind, digest
