"""Checkpoint format, positional resizing and loading weights into other shapes / tasks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.model.helpers import random_codes
from vimpac_core.errors import CheckpointError
from vimpac_core.model import (
    VimpacConfig,
    VimpacForClassification,
    VimpacForPreTraining,
    VimpacModel,
    interpolate_positional_embedding,
    load_pretrained_weights,
    read_pretrained,
    resize_optimizer_state,
    resize_state_dict,
)
from vimpac_core.optim_state import load_optimizer_tensors, optimizer_tensors
from vimpac_core.train.optim import build_optimizer

TINY = dict(layers=1, hid_dim=128, frame_size=32, clip_len=3, vocab_size=40, nce_proj_hid_dim=32)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = VimpacForPreTraining(VimpacConfig(**TINY)).eval()
    out = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["architecture"] == "VimpacForPreTraining"
    loaded = VimpacForPreTraining.from_pretrained(out).eval()
    assert loaded.mlm_head.decoder.weight is loaded.backbone.embedding.weight  # still tied
    codes = random_codes(model.config, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(codes).logits, model(codes).logits, rtol=0, atol=0)
    # overwriting is atomic: the folder is replaced as a whole, no temporary left behind
    VimpacForPreTraining(VimpacConfig(**{**TINY, "layers": 2})).save_pretrained(out)
    assert read_pretrained(out)[0].layers == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_missing_folder_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json"):
        VimpacForPreTraining.from_pretrained(tmp_path)


def test_interpolation_matches_linear_resampling() -> None:
    table = torch.arange(4.0)[:, None].repeat(1, 3)  # [4, D]: a ramp along positions
    out = interpolate_positional_embedding(table, (4,), (8,))
    expected = F.interpolate(table.T[None], size=8, mode="linear", align_corners=False)[0].T
    torch.testing.assert_close(out, expected)
    assert out[0, 0] == 0.0 and out[-1, 0] == 3.0 and torch.all(out[1:, 0] >= out[:-1, 0])
    grid = torch.randn(2 * 3, 5)
    torch.testing.assert_close(interpolate_positional_embedding(grid, (2, 3), (2, 3)), grid)


@pytest.mark.parametrize("pos_emb", ["default", "temporal_separation", "hw_separation"])
def test_resize_all_positional_variants(pos_emb: str) -> None:
    src = VimpacConfig(**TINY, pos_emb=pos_emb)
    dst = VimpacConfig(**{**TINY, "frame_size": 64, "clip_len": 4}, pos_emb=pos_emb)
    state = VimpacForPreTraining(src).state_dict()
    resized = resize_state_dict(state, src, dst)
    target = VimpacForPreTraining(dst).state_dict()
    for key, value in target.items():
        assert resized[key].shape == value.shape, key
    table = {"default": "positional_embedding", "temporal_separation": "spatial_pos_embedding",
             "hw_separation": "height_pos_embedding"}[pos_emb]
    key = f"backbone.positional_embedding.{table}"
    constant = dict(state, **{key: torch.ones_like(state[key])})
    torch.testing.assert_close(resize_state_dict(constant, src, dst)[key], torch.ones_like(target[key]))
    if pos_emb == "default":
        torch.testing.assert_close(resized[key][0], state[key][0])  # the CLS row is kept


def test_stage_two_loads_with_different_shape_only() -> None:
    src_model = VimpacForPreTraining(VimpacConfig(**TINY))
    dst = VimpacForPreTraining(VimpacConfig(**{**TINY, "frame_size": 64}))
    with pytest.raises(CheckpointError, match=r"height_pos_embedding.*\(4, 128\).*\(8, 128\).*different_shape"):
        load_pretrained_weights(dst, src_model.state_dict(), src_config=src_model.config, different_shape=False)
    load_pretrained_weights(dst, src_model.state_dict(), src_config=src_model.config, different_shape=True)
    torch.testing.assert_close(dst.backbone.ln_pre.weight, src_model.backbone.ln_pre.weight)
    torch.testing.assert_close(dst.backbone.positional_embedding.width_pos_embedding,
                               interpolate_positional_embedding(
                                   src_model.backbone.positional_embedding.width_pos_embedding, (4,), (8,)))


def test_larger_vocabulary_keeps_first_rows() -> None:
    big = VimpacForPreTraining(VimpacConfig(**{**TINY, "vocab_size": 60}))
    small = VimpacForPreTraining(VimpacConfig(**TINY))
    load_pretrained_weights(small, big.state_dict(), src_config=big.config, different_shape=False)
    torch.testing.assert_close(small.backbone.embedding.weight, big.backbone.embedding.weight[:45])
    assert small.mlm_head.decoder.weight is small.backbone.embedding.weight


def test_classifier_from_pretraining_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pre = VimpacForPreTraining(VimpacConfig(**TINY))
    pre.save_pretrained(tmp_path / "pre")
    config = VimpacConfig(**TINY, num_labels=5)
    with caplog.at_level(logging.INFO, logger="vimpac_core.model.pretrained"):
        clf = VimpacForClassification.from_pretrained(tmp_path / "pre", config)
    assert "cls_fc.weight" in caplog.text and "mlm_head.transform.0.weight" in caplog.text
    torch.testing.assert_close(clf.backbone.embedding.weight, pre.backbone.embedding.weight)
    assert clf.cls_fc.weight.abs().sum() == 0
    backbone = VimpacModel.from_pretrained(tmp_path / "pre")
    torch.testing.assert_close(backbone.cls_param, pre.backbone.cls_param)


def test_unrelated_checkpoint_is_refused() -> None:
    model = VimpacForPreTraining(VimpacConfig(**TINY))
    other = VimpacForPreTraining(VimpacConfig(**{**TINY, "layout": "T,H,W"}))
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_pretrained_weights(model, other.state_dict(), src_config=other.config, different_shape=False)


def test_adam_moments_of_positional_tables_are_resized() -> None:
    src_model = VimpacForPreTraining(VimpacConfig(**TINY))
    dst_model = VimpacForPreTraining(VimpacConfig(**{**TINY, "frame_size": 64}))
    codes = random_codes(src_model.config, batch=2)
    opt = build_optimizer(src_model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    out = src_model(codes)
    (out.cls_projection.sum() + out.logits.mean()).backward()  # every parameter gets a gradient
    opt.step()
    saved = optimizer_tensors(opt)  # by name, as checkpoints hold them
    resized = resize_optimizer_state(saved, src_model.config, dst_model.config)
    load_pretrained_weights(dst_model, src_model.state_dict(), src_config=src_model.config, different_shape=True)
    dst_opt = build_optimizer(dst_model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    assert load_optimizer_tensors(dst_opt, resized) == []  # every parameter got its (resized) state
    height = "backbone.positional_embedding.height_pos_embedding"
    torch.testing.assert_close(resized[f"{height}/exp_avg"],
                               interpolate_positional_embedding(saved[f"{height}/exp_avg"], (4,), (8,)))
    mlp = "backbone.transformer.resblocks.0.mlp.c_fc.weight"
    assert resized[f"{mlp}/exp_avg_sq"] is saved[f"{mlp}/exp_avg_sq"]
    dst_model(random_codes(dst_model.config, batch=2)).cls_projection.sum().backward()
    dst_opt.step()  # shapes agree with the resized parameters


def _std(t: torch.Tensor) -> float:
    return t.detach().float().std().item()


@pytest.mark.parametrize(("pos_emb", "tables", "divisor"), [
    ("default", ["positional_embedding"], 1),
    ("temporal_separation", ["temporal_pos_embedding", "spatial_pos_embedding"], 2),
    ("hw_separation", ["temporal_pos_embedding", "height_pos_embedding", "width_pos_embedding"], 3),
])
def test_positional_init_is_the_originals(pos_emb: str, tables: list[str], divisor: int) -> None:
    """positional_embedding.py: separated tables N(0, 0.02 / sqrt(#summed)), the CLS position N(0, 0.02)."""
    torch.manual_seed(0)
    config = VimpacConfig(layers=1, hid_dim=1024, frame_size=128, clip_len=8, pos_emb=pos_emb)
    positions = VimpacModel(config).positional_embedding
    for name in tables:
        assert _std(getattr(positions, name)) == pytest.approx(0.02 / divisor**0.5, rel=0.1), name
    if pos_emb != "default":
        assert _std(positions.cls_pos_embedding) == pytest.approx(0.02, rel=0.15)


def test_pre_activation_scales_the_residual_projections() -> None:
    """modeling.py _preactivation_init_weights: dense and c_proj get 0.02 / sqrt(#residual branches)."""
    torch.manual_seed(0)
    config = VimpacConfig(layers=3, hid_dim=512, layout="T,H|W", pre_activation=True)
    blocks = VimpacModel(config).transformer.resblocks
    scaled = 0.02 / (3 * (2 + 1)) ** 0.5  # 3 layers x (2 attention blocks + MLP)
    for block in blocks:
        assert _std(block.mlp.c_proj.weight) == pytest.approx(scaled, rel=0.05)
        assert _std(block.mlp.c_fc.weight) == pytest.approx(0.02, rel=0.05)
        for attention_block in block.attention_blocks:
            assert _std(attention_block.dense.weight) == pytest.approx(scaled, rel=0.05)
    post_ln = VimpacModel(config.model_copy(update={"pre_activation": False})).transformer.resblocks
    assert _std(post_ln[0].mlp.c_proj.weight) == pytest.approx(0.02, rel=0.05)
    assert _std(post_ln[0].attention_blocks[0].output.dense.weight) == pytest.approx(0.02, rel=0.05)


def test_a_folder_moved_aside_by_a_killed_save_still_loads(tmp_path: Path) -> None:
    model = VimpacForPreTraining(VimpacConfig(**TINY))
    model.save_pretrained(tmp_path / "final")
    (tmp_path / "final").rename(tmp_path / ".final.old-1234abcd")  # killed between replace_dir's renames
    again = VimpacForPreTraining.from_pretrained(tmp_path / "final")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
