"""Losses: NCE against its formula, MLM on masked rows only, and 2-rank NCE == 1-rank NCE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.model.helpers import random_codes
from tests.model.nce_worker import global_batch
from vimpac_core.model import (
    VimpacConfig,
    VimpacForPreTraining,
    block_mask,
    mask_then_predict_loss,
    nce_loss,
)

REPO = Path(__file__).resolve().parents[2]


def _nce_by_hand(proj: torch.Tensor, tau: float) -> torch.Tensor:
    """Row by row, straight from MODEL.md."""
    z = F.normalize(proj, dim=-1)
    b = z.shape[0] // 2
    total = 0.0
    for a_rows, o_rows in ((range(b), range(b, 2 * b)), (range(b, 2 * b), range(b))):
        side = 0.0
        for i, (a, o) in enumerate(zip(a_rows, o_rows, strict=True)):
            positives = [z[a] @ z[j] / tau for j in o_rows]
            negatives = [z[a] @ z[j] / tau for j in a_rows if j != a]
            logits = torch.stack(positives + negatives)
            side = side - torch.log_softmax(logits, 0)[i]
            assert o == o_rows[i]
        total = total + side / b
    return total * tau


def test_nce_matches_formula_and_is_symmetric() -> None:
    proj = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    loss = nce_loss(proj, 0.2)
    torch.testing.assert_close(loss, _nce_by_hand(proj, 0.2))
    swapped = torch.cat([proj[4:], proj[:4]])
    torch.testing.assert_close(nce_loss(swapped, 0.2), loss)
    # identical clips of distinct, orthogonal videos give a lower loss than random ones
    easy = torch.eye(16)[:4].repeat(2, 1)
    assert nce_loss(easy, 0.2) < loss
    with pytest.raises(ValueError, match="two clips"):
        nce_loss(torch.randn(5, 16))


def test_mlm_loss_counts_masked_positions_only() -> None:
    logits = torch.randn(2, 3, 7)
    labels = torch.full((2, 3), -100)
    labels[0, 1], labels[1, 2] = 4, 6
    loss, acc = mask_then_predict_loss(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(torch.stack([logits[0, 1], logits[1, 2]]), torch.tensor([4, 6])))
    assert 0.0 <= acc.item() <= 1.0
    zero, _ = mask_then_predict_loss(logits.requires_grad_(True), torch.full((2, 3), -100))
    zero.backward()
    assert zero.item() == 0.0 and logits.grad is not None


def test_pretraining_forward_with_labels() -> None:
    config = VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=3, vocab_size=40, nce_proj_hid_dim=32,
                          mlm_weight=0.5, nce_weight=2.0)
    model = VimpacForPreTraining(config).train()
    codes = random_codes(config, batch=4)
    masked, labels = block_mask(codes, 3, config.pad_id, config.mask_id, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    seen = []
    model.mlm_head.transform.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    out = model(masked, labels)
    assert seen == [((labels != -100).sum().item(), 128)]  # the head ran on the masked rows only
    assert out.logits is None and out.cls_projection.shape == (4, 256)
    torch.testing.assert_close(out.loss.detach(), 0.5 * out.mlm_loss + 2.0 * out.nce_loss)
    out.loss.backward()
    assert model.backbone.embedding.weight.grad.abs().sum() > 0
    assert model.cls_head.mlp.linear_0.weight.grad.abs().sum() > 0
    # the losses equal those computed from the full logits (head on every position)
    model.eval()
    with torch.no_grad():
        sparse = model(masked, labels)
        full = model(masked)
    mlm, _ = mask_then_predict_loss(full.logits, labels)
    torch.testing.assert_close(sparse.mlm_loss, mlm)
    torch.testing.assert_close(sparse.nce_loss, nce_loss(full.cls_projection, 0.2))


def test_sync_batchnorm_conversion_keeps_names_and_outputs() -> None:
    config = VimpacConfig(layers=1, hid_dim=64, layout="T", frame_size=16, clip_len=2, vocab_size=20,
                          nce_proj_layers=3, nce_proj_hid_dim=32, nce_bn_after_proj=True)
    model = VimpacForPreTraining(config)
    codes = random_codes(config, batch=4)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(VimpacForPreTraining(config))
    synced.load_state_dict(model.state_dict(), strict=True)
    assert isinstance(synced.cls_head.mlp.bn_0, torch.nn.SyncBatchNorm)
    assert isinstance(synced.cls_head.mlp.bn_2, torch.nn.SyncBatchNorm)
    model.eval(), synced.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(codes).cls_projection, synced(codes).cls_projection)


@pytest.mark.slow
def test_two_ranks_equal_one_rank_on_the_concatenated_batch(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(REPO / "tests/model/nce_worker.py"),
           str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # kill torchrun and its workers, not just torchrun
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    first, second, layer = global_batch(2)
    x = torch.cat([first, second]).requires_grad_(True)  # all first clips, then all second clips
    loss = nce_loss(layer(x), 0.2)
    loss.backward()
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss.detach())
    b = first.shape[0] // 2
    for r, out in enumerate(ranks):
        own = torch.cat([x.grad[r * b:(r + 1) * b], x.grad[2 * b + r * b:2 * b + (r + 1) * b]])
        torch.testing.assert_close(out["input_grad"] / 2, own)  # rank grads are of the summed rank losses
        torch.testing.assert_close(out["weight_grad"], layer.weight.grad)
