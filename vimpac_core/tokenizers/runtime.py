"""Ready-to-use tokenizers behind the Tokenizer protocol, and ``load_tokenizer(spec)``.

A tokenizer takes uint8 frames [N, H, W, 3] (RGB, H and W multiples of 8) and returns int64 codes
[N, H/8, W/8]. Work runs in chunks of ``batch_size`` frames under ``torch.inference_mode`` so
memory stays bounded whatever N is; activations use channels-last memory layout on CPU, which
oneDNN convolutions run faster.

``precision``: ``"fp32"`` (default: the release's exact codes) or ``"bf16"``: the encoder's
weights are cast to bf16 once (faster than autocast, which re-casts them every batch in
inference), pixels are transformed in fp32 and cast after; the tokenizer id then ends in
``@bf16``. bf16 is refused where the device has no native bf16 (``vimpac_core.precision``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vimpac_core.model_folder import WEIGHTS_NAME
from vimpac_core.precision import check_bf16, check_precision
from vimpac_core.tokenizers.base import parse_tokenizer_spec
from vimpac_core.tokenizers.identity import make_tokenizer_id, sha256_file
from vimpac_core.tokenizers.torch_tokenizer import TorchTokenizer
from vimpac_core.tokenizers.vqvae import VQVAE, pixels_to_model_range


class VQVAETokenizer(TorchTokenizer):
    """Our VQ-VAE behind the Tokenizer protocol; id = ``vqvae:<sha256 of model.safetensors>``."""

    def __init__(self, model: VQVAE, weights_sha256: str, device: str | torch.device = "cpu",
                 batch_size: int = 64, precision: str = "fp32") -> None:
        tokenizer_id = make_tokenizer_id("vqvae", weights_sha256, precision)
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        if precision == "bf16":
            self.model.encoder.to(torch.bfloat16)  # the quantizer's codebook and the decoder stay fp32
        super().__init__(tokenizer_id, model.config.codebook_size, device,
                         self._encode, self._decode, batch_size, precision)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_codes(pixels_to_model_range(x))

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode_codes(codes).add_(1.0).mul_(0.5)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu",
                        batch_size: int = 64, precision: str = "fp32") -> VQVAETokenizer:
        model = VQVAE.from_pretrained(directory, device=device)
        return cls(model, sha256_file(Path(directory) / WEIGHTS_NAME), device, batch_size, precision)


def load_tokenizer(spec: str, device: str | torch.device = "cpu", batch_size: int | None = None,
                   fast: bool = False, precision: str = "fp32") -> TorchTokenizer:
    """``"vqvae:DIR"``, ``"dalle:encoder.pkl"`` (decoder.pkl beside it is used if present) or
    ``"dalle:CONVERTED_DIR"`` -> a tokenizer with encode (and decode where a decoder exists).

    batch_size: frames per forward pass (default 64 for the VQ-VAE, 8 for DALL-E) bounds memory.
    fast: DALL-E on CPU only: the oneDNN path (about 1.15x faster; codes may differ from the
        release at near-ties) instead of the release's exact ops. Ignored in bf16.
    precision: ``"fp32"`` (the release's codes) or ``"bf16"`` (ConfigError where the device has
        no native bf16).
    """
    kind, path = parse_tokenizer_spec(spec)
    if check_precision(precision) == "bf16":
        check_bf16(device, "precision", "precision fp32")
    if kind == "vqvae":
        return VQVAETokenizer.from_pretrained(path, device=device, batch_size=batch_size or 64, precision=precision)
    from vimpac_core.tokenizers.dalle_io import load_dalle_tokenizer

    return load_dalle_tokenizer(path, device=device, batch_size=batch_size or 8, fast=fast, precision=precision)
