"""Loading the DALL-E dVAE: official pickles (safely), converted safetensors folders, conversion.

A converted folder holds ``encoder.safetensors`` and/or ``decoder.safetensors`` plus
``dalle.json`` recording, per part, the source file name, its sha256 and the architecture numbers.
The tokenizer id is ``dalle:<sha256 of the official encoder.pkl>`` whichever form was loaded, so a
converted copy tokenizes under the same id as the pickle it came from.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
from pathlib import Path

import fsspec
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from vimpac_core.errors import TokenizerError
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.tokenizers.dalle import DalleDecoder, DalleEncoder, stats_to_pixels
from vimpac_core.tokenizers.identity import make_tokenizer_id, sha256_stream
from vimpac_core.tokenizers.safe_pickle import load_module_pickle, stand_in_state_dict
from vimpac_core.tokenizers.torch_tokenizer import TorchTokenizer

META_NAME = "dalle.json"
PARTS = ("encoder", "decoder")
_ROOT_CLASS = {"dall_e.encoder.Encoder": "encoder", "dall_e.decoder.Decoder": "decoder"}


def read_dalle_pickle(path_or_url: str) -> tuple[str, dict[str, torch.Tensor], str]:
    """Official whole-module pickle (local path or fsspec URL) -> (part, state_dict, source sha256)."""
    try:
        with fsspec.open(str(path_or_url), "rb") as f:
            raw = f.read()
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read DALL-E weights {path_or_url!r}: {exc}") from exc
    digest = sha256_stream(io.BytesIO(raw))
    root, state = stand_in_state_dict(load_module_pickle(io.BytesIO(raw), str(path_or_url)))
    if root not in _ROOT_CLASS:
        raise TokenizerError(f"{path_or_url} holds a {root}, not a dall_e Encoder or Decoder")
    return _ROOT_CLASS[root], {k: v.float().contiguous() for k, v in state.items()}, digest


def architecture(part: str, state: dict[str, torch.Tensor]) -> dict[str, int]:
    """The constructor arguments of DalleEncoder / DalleDecoder implied by a state dict's shapes."""
    try:
        w_in, w_out = state["blocks.input.w"], state["blocks.output.conv.w"]
        groups = {k.split(".")[1] for k in state if k.startswith("blocks.group_")}
        n_blk = len({k.split(".")[2] for k in state if k.startswith("blocks.group_1.block_")})
    except KeyError as exc:
        raise TokenizerError(f"DALL-E {part} weights lack {exc}: not a dVAE {part}") from exc
    if part == "encoder":
        return {"n_hid": w_in.shape[0], "vocab_size": w_out.shape[0], "n_blk_per_group": n_blk,
                "input_channels": w_in.shape[1], "group_count": len(groups)}
    return {"n_init": w_in.shape[0], "n_hid": w_out.shape[1], "vocab_size": w_in.shape[1],
            "n_blk_per_group": n_blk, "output_channels": w_out.shape[0] // 2, "group_count": len(groups)}


def build_dalle(part: str, state: dict[str, torch.Tensor], source: str) -> DalleEncoder | DalleDecoder:
    """Instantiate the part and load ``state`` with strict=True (exact names and shapes)."""
    cls = DalleEncoder if part == "encoder" else DalleDecoder
    model = cls(**architecture(part, state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TokenizerError(f"{source}: weights do not match the released DALL-E {part}: {exc}") from exc
    return model.eval()


def _load_part(path_or_url: str | os.PathLike, part: str) -> tuple[DalleEncoder | DalleDecoder, str]:
    """(model, source sha256) from a pickle or a converted folder."""
    path = str(path_or_url)
    if os.path.isdir(path):
        meta_path, weights = Path(path) / META_NAME, Path(path) / f"{part}.safetensors"
        if not meta_path.is_file() or not weights.is_file():
            raise TokenizerError(f"{path} is not a converted DALL-E folder with a {part}: expected {META_NAME} "
                                 f"and {part}.safetensors (make one with `vimpac convert-dalle {part}.pkl {path}`)")
        meta = json.loads(meta_path.read_text())
        state = load_file(str(weights))
        return build_dalle(part, state, str(weights)), meta[part]["source_sha256"]
    found, state, digest = read_dalle_pickle(path)
    if found != part:
        raise TokenizerError(f"{path} holds the DALL-E {found}, but a {part} was asked for")
    return build_dalle(part, state, path), digest


def load_dalle_encoder(path_or_url: str | os.PathLike) -> DalleEncoder:
    """Official ``encoder.pkl`` (zip or legacy torch format; path or URL) or a converted folder."""
    model, digest = _load_part(path_or_url, "encoder")
    model.source_sha256 = digest
    return model


def load_dalle_decoder(path_or_url: str | os.PathLike) -> DalleDecoder:
    """Official ``decoder.pkl`` or a converted folder holding ``decoder.safetensors``."""
    model, digest = _load_part(path_or_url, "decoder")
    model.source_sha256 = digest
    return model


def convert_dalle(source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Official pickle -> ``OUT/<part>.safetensors`` and an entry in ``OUT/dalle.json``; returns the
    weights path. The source sha256 is recorded so the tokenizer id survives the conversion."""
    part, state, digest = read_dalle_pickle(str(source))
    build_dalle(part, state, str(source))  # refuse weights that do not fit before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{part}.safetensors"
    atomic_write_bytes(str(weights), save_safetensors(state, metadata={"source_sha256": digest, "part": part}))
    meta_path = out / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta[part] = {"source": os.path.basename(str(source)), "source_sha256": digest, **architecture(part, state)}
    atomic_write_bytes(str(meta_path), json.dumps(meta, indent=2, sort_keys=True).encode())
    return weights


class DalleTokenizer(TorchTokenizer):
    """The dVAE behind the Tokenizer protocol: release input transform, argmax of the logits.

    By default the encoder runs the same ops in the same memory layout as the ``DALL-E`` package,
    so logits (and codes) are bit-identical to it for the same batch size and thread count.
    ``fast=True`` on CPU opts in to oneDNN with prepacked weights (``DalleEncoder.prepack_cpu``):
    about 1.15x the frames/s, logits within ~1e-6, so codes can differ at near-ties.
    ``precision="bf16"``: the encoder's weights are cast to bf16 once (``fast`` is then ignored);
    the decoder stays fp32.
    """

    def __init__(self, encoder: DalleEncoder, decoder: DalleDecoder | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 8, fast: bool = False,
                 precision: str = "fp32") -> None:
        if encoder.source_sha256 is None:
            raise TokenizerError("the DALL-E encoder has no source_sha256 (the tokenizer id needs it): "
                                 "load it with load_dalle_encoder, or set encoder.source_sha256")
        tokenizer_id = make_tokenizer_id("dalle", encoder.source_sha256, precision)
        self.encoder = encoder.to(device).eval()
        if precision == "bf16":
            self.encoder.to(torch.bfloat16, memory_format=torch.channels_last)
        self.fast = (fast and precision == "fp32" and torch.device(device).type == "cpu"
                     and self.encoder.prepack_cpu())
        self.decoder = decoder.to(device).eval() if decoder else None
        super().__init__(tokenizer_id, encoder.vocab_size, device,
                         self._encode, self._decode if decoder else None, batch_size, precision)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.codes(x, exact=not self.fast)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return stats_to_pixels(self.decoder(codes))


def load_dalle_tokenizer(path: str, device: str | torch.device = "cpu", batch_size: int = 8,
                         fast: bool = False, precision: str = "fp32") -> DalleTokenizer:
    """``encoder.pkl`` (``decoder.pkl`` in the same place is picked up) or a converted folder."""
    encoder = load_dalle_encoder(path)
    decoder = None
    if os.path.isdir(path):
        if (Path(path) / "decoder.safetensors").is_file():
            decoder = load_dalle_decoder(path)
    else:
        fs, enc_path = fsspec.core.url_to_fs(str(path))
        sibling = posixpath.join(posixpath.dirname(enc_path), "decoder.pkl")
        if fs.exists(sibling):
            decoder = load_dalle_decoder(fs.unstrip_protocol(sibling) if "://" in str(path) else sibling)
    return DalleTokenizer(encoder, decoder, device=device, batch_size=batch_size, fast=fast, precision=precision)
