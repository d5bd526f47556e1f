"""LR schedules and AdamW's no-decay groups."""

from __future__ import annotations

import pytest
import torch

from vimpac_core.model import VimpacConfig, VimpacForPreTraining
from vimpac_core.train.optim import build_optimizer, param_groups
from vimpac_core.train.schedule import Schedule


def test_linear_warmup_then_decay_to_zero():
    s = Schedule.from_warm_up("linear", 0.1, 100)
    assert s.warmup_steps == 10
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(10) == pytest.approx(1.0) and s.factor(55) == pytest.approx(0.5)
    assert s.factor(100) == 0.0 and s.factor(150) == 0.0


def test_warm_up_of_one_or_more_counts_steps_as_in_the_original():
    assert Schedule.from_warm_up("linear", 0.05, 1000).warmup_steps == 50
    assert Schedule.from_warm_up("linear", 500, 1000).warmup_steps == 500
    assert Schedule.from_warm_up("linear", 1, 1000).warmup_steps == 1


def test_cosine_and_constant():
    c = Schedule.from_warm_up("cosine", 0.0, 10)
    assert c.factor(0) == 1.0 and c.factor(5) == pytest.approx(0.5) and c.factor(10) == pytest.approx(0.0)
    assert Schedule.from_warm_up("constant", 0.5, 10).factor(9) == 1.0
    assert Schedule.from_state_dict(c.state_dict()) == c
    with pytest.raises(ValueError, match="lr_scheduler"):
        Schedule.from_warm_up("step", 0.1, 10)


def test_apply_sets_every_group():
    model = VimpacForPreTraining(VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=16,
                                              nce_proj_hid_dim=32))
    opt = build_optimizer(model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    lr = Schedule.from_warm_up("linear", 0.0, 4).apply(opt, 2, 1e-3)
    assert lr == pytest.approx(5e-4) and all(g["lr"] == lr for g in opt.param_groups)
    assert opt.defaults["betas"] == (0.9, 0.98)


def test_no_decay_on_biases_and_layernorm_weights_only():
    """MODEL.md: weight decay on everything but biases and LayerNorm weights (as the release)."""
    model = VimpacForPreTraining(VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=16,
                                              nce_proj_hid_dim=32))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    nd, d = set(no_decay["names"]), set(decay["names"])
    layer_norms = {f"{p}.weight" for p, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    biases = {n for n, _ in model.named_parameters() if n.endswith("bias")}
    assert nd == layer_norms | biases
    assert {"backbone.ln_pre.weight", "mlm_head.transform.2.weight", "mlm_head.bias"} <= nd
    # Decayed as in the release: positions, the CLS vector, BatchNorm weights, every matrix.
    assert {"backbone.cls_param", "backbone.positional_embedding.height_pos_embedding",
            "cls_head.mlp.bn_0.weight", "backbone.embedding.weight"} <= d
    assert any(n.endswith("query.weight") for n in d)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total
