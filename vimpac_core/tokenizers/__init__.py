"""Frame tokenizers: the DALL-E dVAE (official weights, loaded safely) and our trainable VQ-VAE.

``load_tokenizer("vqvae:DIR" | "dalle:encoder.pkl" | "dalle:CONVERTED_DIR")`` is the entry point
ingest uses; every tokenizer has a ``tokenizer_id`` = kind + sha256 of its weights.

The torch-backed names are imported on first use (PEP 562), so light modules that only need
``vimpac_core.tokenizers.base`` (config validation, the CLI, ``vimpac inspect``) do not import
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from vimpac_core.tokenizers.base import TOKENIZER_KINDS, Decodable, Tokenizer, parse_tokenizer_spec
from vimpac_core.tokenizers.identity import (
    make_tokenizer_id,
    parse_tokenizer_id,
    sha256_file,
    split_tokenizer_id,
    tokenizer_precision,
)

_LAZY = {
    "DalleDecoder": "dalle",
    "DalleEncoder": "dalle",
    "DalleTokenizer": "dalle_io",
    "convert_dalle": "dalle_io",
    "load_dalle_decoder": "dalle_io",
    "load_dalle_encoder": "dalle_io",
    "TorchTokenizer": "torch_tokenizer",
    "VQVAETokenizer": "runtime",
    "load_tokenizer": "runtime",
    "VQVAE": "vqvae",
    "VQVAEConfig": "vqvae",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DalleDecoder",
    "DalleEncoder",
    "DalleTokenizer",
    "convert_dalle",
    "load_dalle_decoder",
    "load_dalle_encoder",
    "TOKENIZER_KINDS",
    "Decodable",
    "Tokenizer",
    "TorchTokenizer",
    "VQVAE",
    "VQVAEConfig",
    "VQVAETokenizer",
    "load_tokenizer",
    "make_tokenizer_id",
    "parse_tokenizer_id",
    "parse_tokenizer_spec",
    "sha256_file",
    "split_tokenizer_id",
    "tokenizer_precision",
]
