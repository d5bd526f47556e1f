"""Frame tokenizers: the DALL-E dVAE (official weights, loaded safely) and our trainable VQ-VAE.

``load_tokenizer("vqvae:DIR" | "dalle:encoder.pkl" | "dalle:CONVERTED_DIR")`` is the entry point
ingest uses; every tokenizer has a ``tokenizer_id`` = kind + sha256 of its weights.
"""

from vimpac_core.tokenizers.base import TOKENIZER_KINDS, Decodable, Tokenizer, parse_tokenizer_spec
from vimpac_core.tokenizers.dalle import DalleDecoder, DalleEncoder
from vimpac_core.tokenizers.dalle_io import (
    DalleTokenizer,
    convert_dalle,
    load_dalle_decoder,
    load_dalle_encoder,
)
from vimpac_core.tokenizers.identity import make_tokenizer_id, sha256_file, split_tokenizer_id
from vimpac_core.tokenizers.runtime import TorchTokenizer, VQVAETokenizer, load_tokenizer
from vimpac_core.tokenizers.vqvae import VQVAE, VQVAEConfig

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
    "parse_tokenizer_spec",
    "sha256_file",
    "split_tokenizer_id",
]
