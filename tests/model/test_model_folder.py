"""One folder format for every saved model: the VIMPAC transformers and the VQ-VAE tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vimpac_core.errors import CheckpointError
from vimpac_core.model import VimpacConfig, VimpacForPreTraining
from vimpac_core.model_folder import CONFIG_NAME, WEIGHTS_NAME, read_model_folder
from vimpac_core.tokenizers.runtime import VQVAETokenizer
from vimpac_core.tokenizers.vqvae import VQVAE, VQVAEConfig

SMALL_VQ = VQVAEConfig(codebook_size=16, embed_dim=8, channels=(4, 8, 8), num_res_blocks=0)


def test_models_and_tokenizers_save_the_same_folder(tmp_path):
    torch.manual_seed(0)
    folders = {
        "VimpacForPreTraining": VimpacForPreTraining(VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2,
                                                                  vocab_size=64, nce_proj_hid_dim=64)),
        "VQVAE": VQVAE(SMALL_VQ),
    }
    for name, model in folders.items():
        folder = model.save_pretrained(tmp_path / name)
        assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
        raw, architecture, _ = read_model_folder(folder)
        assert architecture == name and raw
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    loaded = VQVAE.from_pretrained(tmp_path / "VQVAE")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), folders["VQVAE"].state_dict().values(),
                                                  strict=True))


def test_a_tokenizer_folder_of_the_earlier_layout_loads_and_tokenizes_alike(tmp_path):
    """Before the shared format a VQ-VAE folder had no ``architecture`` and was written in place: it
    still loads, and the weights file holds the same tensors and header metadata as before (the
    metadata's key order in the file is safetensors' own choice, so bytes are not compared)."""
    torch.manual_seed(0)
    model = VQVAE(SMALL_VQ)
    old = tmp_path / "old"
    old.mkdir()
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(old / WEIGHTS_NAME), metadata={"format": "pt", "kind": "vqvae"})
    (old / CONFIG_NAME).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2, sort_keys=True))
    new = model.save_pretrained(tmp_path / "new")
    for folder in (old, new):
        with safe_open(str(folder / WEIGHTS_NAME), "pt") as f:
            assert f.metadata() == {"format": "pt", "kind": "vqvae"}
            assert all(torch.equal(f.get_tensor(k), tensors[k]) for k in tensors) and set(f.keys()) == set(tensors)
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    codes = [VQVAETokenizer.from_pretrained(folder).encode(frames) for folder in (old, new)]
    assert np.array_equal(*codes)


def test_a_folder_without_weights_is_refused_by_name(tmp_path):
    VQVAE(SMALL_VQ).save_pretrained(tmp_path / "t")
    (tmp_path / "t" / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match=r"t is not a VQ-VAE folder \(write one with"):
        VQVAE.from_pretrained(tmp_path / "t")
