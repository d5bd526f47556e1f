"""The backbone (SDPA, batched lines) equals the plain reference for every layout and variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench import reference_model as ref
from tests.model.helpers import config_from, random_codes
from vimpac_core.model import VimpacConfig, VimpacForPreTraining, VimpacModel, block_mask, nce_loss

LAYOUTS = ["T,H,W", "T", "T,H", "T,H|W", "T|H|W", "H|W,T"]


def _compare(f, atol: float = 2e-5) -> None:
    config = config_from(f)
    torch.manual_seed(0)
    ours = VimpacForPreTraining(config).eval()
    theirs = ref.ModelWithHead(f).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    codes = random_codes(config, batch=2)
    with torch.no_grad():
        out = ours(codes)
        proj, logits = theirs(codes)
        cls, hidden = ours.backbone(codes)
        rcls, rhidden = theirs.backbone(codes)
    assert torch.isfinite(hidden).all()
    torch.testing.assert_close(cls, rcls, atol=atol, rtol=1e-5)
    torch.testing.assert_close(hidden, rhidden, atol=atol, rtol=1e-5)
    torch.testing.assert_close(out.cls_projection, proj, atol=atol, rtol=1e-5)
    torch.testing.assert_close(out.logits, logits, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pre_activation", [False, True])
def test_layouts_match_reference(layout: str, pre_activation: bool) -> None:
    hid = 192 if layout == "T|H|W" else 128  # heads (hid // 64) must split over the parallel patterns
    _compare(ref.flags(layout=layout, pre_activation=pre_activation, hid_dim=hid, layers=2))


@pytest.mark.parametrize("pos_emb", ["default", "temporal_separation", "hw_separation"])
@pytest.mark.parametrize("halve", [(False, False), (True, False), (False, True), (True, True)])
def test_positions_and_halving_match_reference(pos_emb: str, halve: tuple[bool, bool]) -> None:
    _compare(ref.flags(pos_emb=pos_emb, halve_att=halve[0], halve_mlp=halve[1]))


def test_pad_keys_are_ignored() -> None:
    """Whatever the PAD row of the embedding holds, outputs at real tokens and CLS do not change."""
    config = VimpacConfig(layers=2, hid_dim=128, frame_size=32, clip_len=3, vocab_size=40, dropout=0.0)
    model = VimpacModel(config).eval()
    codes = random_codes(config, batch=2, pad_fraction=0.3)
    with torch.no_grad():
        cls, hidden = model(codes)
        model.embedding.weight[config.pad_id] += 5.0
        cls2, hidden2 = model(codes)
    real = codes != config.pad_id
    torch.testing.assert_close(cls, cls2)
    torch.testing.assert_close(hidden[real], hidden2[real])
    assert not torch.allclose(hidden[~real], hidden2[~real])


def test_gradient_checkpointing_gives_same_gradients() -> None:
    base = dict(layers=2, hid_dim=128, frame_size=32, clip_len=3, vocab_size=40, dropout=0.1)
    plain = VimpacModel(VimpacConfig(**base))
    ckpt = VimpacModel(VimpacConfig(**base, gradient_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    codes = random_codes(plain.config, batch=2)
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(3)  # same dropout masks: checkpointing replays the RNG state
        cls, hidden = model.train()(codes)
        (cls.square().sum() + hidden.square().mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], msg=name)


def test_wrong_grid_is_refused() -> None:
    model = VimpacModel(VimpacConfig(layers=1, hid_dim=64, layout="T", frame_size=32, clip_len=3, vocab_size=40))
    with pytest.raises(ValueError, match="clip_len"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.long))



def _loss_and_grads(model, cls, hidden) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (cls.square().sum() + hidden.square().mean()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layout", ["T,H|W", "H|W,T"])
@pytest.mark.parametrize("pre_activation", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_rows_give_the_full_hidden_at_those_rows(layout: str, pre_activation: bool, checkpointing: bool) -> None:
    """The last block's per-token layers skip unread rows: same outputs and same gradients."""
    config = VimpacConfig(layers=2, hid_dim=128, layout=layout, pre_activation=pre_activation, frame_size=32,
                          clip_len=3, vocab_size=40, dropout=0.0, gradient_checkpointing=checkpointing)
    model = VimpacModel(config).train()
    codes = random_codes(config, batch=2)
    rows = torch.rand(codes.shape, generator=torch.Generator().manual_seed(1)) < 0.2
    cls, hidden = model(codes)
    full_grads = _loss_and_grads(model, cls, hidden[rows])
    cls_rows, hidden_rows = model(codes, rows=rows)
    torch.testing.assert_close(cls_rows, cls, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(hidden_rows, hidden[rows], atol=1e-6, rtol=1e-5)
    rows_grads = _loss_and_grads(model, cls_rows, hidden_rows)
    assert rows_grads.keys() == full_grads.keys()
    for name, g in full_grads.items():
        torch.testing.assert_close(rows_grads[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_training_gradients_match_reference() -> None:
    """The pre-training loss as trained (masked rows only) has the reference's gradients (full logits).

    eval(): the NCE head's BatchNorm over 4 rows would amplify float rounding; nothing else changes.
    """
    f = ref.flags(layers=2, hid_dim=128)
    config = config_from(f, dropout=0.0)
    ours = VimpacForPreTraining(config).eval()
    theirs = ref.ModelWithHead(f, loop_lines=False).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    codes = random_codes(config, batch=4)
    masked, labels = block_mask(codes, 3, config.pad_id, config.mask_id, torch.Generator().manual_seed(0))
    ours(masked, labels).loss.backward()
    proj, logits = theirs(masked)
    chosen = labels != -100
    (F.cross_entropy(logits[chosen], labels[chosen]) + nce_loss(proj, config.nce_temperature)).backward()
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs_grads[name].grad, atol=2e-6, rtol=1e-5, msg=name)
