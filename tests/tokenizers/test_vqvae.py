"""VQ-VAE model, its folder format, and the Tokenizer wrapper returned by load_tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vimpac_core.errors import CheckpointError, ConfigError, TokenizerError
from vimpac_core.tokenizers import (
    VQVAE,
    Decodable,
    Tokenizer,
    VQVAEConfig,
    load_tokenizer,
    sha256_file,
    split_tokenizer_id,
)

TINY = dict(codebook_size=64, embed_dim=16, channels=(16, 32, 32), num_res_blocks=1)


@pytest.fixture()
def saved_vqvae(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**TINY))
    model.save_pretrained(tmp_path / "tok")
    return model, tmp_path / "tok"


def test_shapes_and_downsample_8():
    model = VQVAE(VQVAEConfig(**TINY))
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    out = model(x)
    assert out["recon"].shape == x.shape
    assert out["codes"].shape == (2, 4, 6)
    assert model.encode_codes(x).shape == (2, 4, 6)
    assert model.decode_codes(out["codes"]).shape == x.shape


def test_save_load_round_trip_is_bit_exact(saved_vqvae):
    model, folder = saved_vqvae
    assert json.loads((folder / "config.json").read_text())["codebook_size"] == 64
    loaded = VQVAE.from_pretrained(folder)
    assert loaded.config == model.config
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    # The EMA codebook buffers are part of the checkpoint, not only the parameters.
    assert "quantizer.embedding" in got and "quantizer.cluster_size" in got


def test_tokenizer_protocol_encode_decode(saved_vqvae):
    model, folder = saved_vqvae
    tok = load_tokenizer(f"vqvae:{folder}", device="cpu", batch_size=3)
    assert isinstance(tok, Tokenizer) and isinstance(tok, Decodable)
    assert tok.vocab_size == 64 and tok.downsample == 8
    frames = np.random.default_rng(0).integers(0, 256, (7, 32, 40, 3), dtype=np.uint8)
    codes = tok.encode(frames)
    assert codes.shape == (7, 4, 5) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 64
    # Chunking (batch_size=3 over 7 frames) gives what one batch through the model gives.
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() * (2 / 255) - 1
        ref = model.eval().encode_codes(x).numpy()
    np.testing.assert_array_equal(codes, ref)
    pics = tok.decode(codes)
    assert pics.shape == (7, 32, 40, 3) and pics.dtype == np.uint8


def test_tokenizer_id_is_weights_sha_and_stable_across_processes(saved_vqvae):
    _, folder = saved_vqvae
    tok = load_tokenizer(f"vqvae:{folder}")
    kind, digest = split_tokenizer_id(tok.tokenizer_id)
    assert kind == "vqvae" and digest == sha256_file(folder / "model.safetensors")
    code = f"from vimpac_core.tokenizers import load_tokenizer; print(load_tokenizer('vqvae:{folder}').tokenizer_id)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == tok.tokenizer_id
    # Other weights, other id.
    torch.manual_seed(1)
    VQVAE(VQVAEConfig(**TINY)).save_pretrained(folder.parent / "other")
    assert load_tokenizer(f"vqvae:{folder.parent / 'other'}").tokenizer_id != tok.tokenizer_id


def test_ema_updates_codebook_and_restarts_dead_codes():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**TINY, dead_code_threshold=0.5)).train()
    x = torch.rand(4, 3, 32, 32) * 2 - 1

    def share_of_codes_on_data() -> float:
        z = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, 16).detach()
        return (torch.cdist(model.quantizer.embedding, z).min(1).values < 0.1).float().mean().item()

    assert share_of_codes_on_data() < 0.2  # at init the codebook sits near 0, away from encoder outputs
    before = model.quantizer.embedding.clone()
    model(x)
    assert not torch.equal(before, model.quantizer.embedding)
    for _ in range(80):  # unused counts decay 0.99**80 = 0.45 < 0.5: those codes are restarted on data
        model(x)
    assert (model.quantizer.cluster_size >= 0.5).all()
    assert share_of_codes_on_data() > 0.8


def test_bad_inputs_raise_specific_errors(saved_vqvae, tmp_path):
    _, folder = saved_vqvae
    tok = load_tokenizer(f"vqvae:{folder}")
    with pytest.raises(TokenizerError, match="multiples of 8"):
        tok.encode(np.zeros((1, 30, 32, 3), np.uint8))
    with pytest.raises(TokenizerError, match="uint8"):
        tok.encode(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(TokenizerError, match=r"\[0, 64\)"):
        tok.decode(np.full((1, 2, 2), 64))
    with pytest.raises(TokenizerError, match="KIND:PATH"):
        load_tokenizer(str(folder))
    with pytest.raises(CheckpointError, match="config.json"):
        load_tokenizer(f"vqvae:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="channels"):
        VQVAEConfig(channels=(8, 8))


def test_tokenizer_id_helpers_validate():
    from vimpac_core.tokenizers import make_tokenizer_id

    digest = "ab" * 32
    assert make_tokenizer_id("dalle", digest) == f"dalle:{digest}"
    assert split_tokenizer_id(f"vqvae:{digest}") == ("vqvae", digest)
    with pytest.raises(TokenizerError, match="not one of"):
        make_tokenizer_id("clip", digest)
    with pytest.raises(TokenizerError, match="sha256"):
        split_tokenizer_id("vqvae:1234")
