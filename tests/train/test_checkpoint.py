"""Checkpoint folders: atomic, complete, no pickle; optimizer state by name; RNG round trip."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest
import torch

from vimpac_core.errors import CheckpointError
from vimpac_core.model import VimpacConfig, VimpacForPreTraining
from vimpac_core.optim_state import load_optimizer_tensors, optimizer_tensors
from vimpac_core.train.checkpoint import (
    TrainerState,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    resumable_checkpoint,
    save_checkpoint,
)
from vimpac_core.train.optim import build_optimizer

CFG = VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=16, nce_proj_hid_dim=32)


def _trained():
    torch.manual_seed(0)
    model = VimpacForPreTraining(CFG)
    opt = build_optimizer(model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    codes = torch.randint(0, 16, (4, 2, 4, 4))
    labels = torch.where(torch.rand(codes.shape) < 0.3, codes, torch.full_like(codes, -100))
    labels[0, 0, 0, 0] = codes[0, 0, 0, 0]
    model(codes, mlm_labels=labels).loss.backward()
    opt.step()
    return model, opt


def test_rng_round_trip():
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(7), random.random()
    restore_rng(state)
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_save_load_round_trip_is_complete_and_atomic(tmp_path):
    model, opt = _trained()
    state = TrainerState(epoch=1, batch=3, step=7, schedule={"kind": "linear", "warmup_steps": 1, "total_steps": 9})
    folder = save_checkpoint(tmp_path / "ck" / "step_00000007", model, opt, state, [capture_rng(), capture_rng()],
                             {"stage_start_epoch": 0})
    assert latest_checkpoint(tmp_path / "ck") == folder
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.startswith(".")]  # no temp folders left
    loaded = load_checkpoint(folder)
    assert (loaded.state.epoch, loaded.state.batch, loaded.state.step) == (1, 3, 7)
    assert len(loaded.rng_per_rank) == 2 and loaded.raw["stage_start_epoch"] == 0
    json.loads((folder / "trainer_state.json").read_text())
    again = VimpacForPreTraining.from_pretrained(folder)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh_model = VimpacForPreTraining(CFG)
    fresh_model.load_state_dict(model.state_dict())
    fresh = build_optimizer(fresh_model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    assert load_optimizer_tensors(fresh, loaded.optimizer) == []
    saved, restored = optimizer_tensors(opt), optimizer_tensors(fresh)
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert "backbone.embedding.weight/exp_avg" in saved


def test_mismatched_optimizer_state_names_the_parameter(tmp_path):
    model, opt = _trained()
    tensors = optimizer_tensors(opt)
    key = "backbone.positional_embedding.height_pos_embedding/exp_avg"
    tensors[key] = torch.zeros(8, 128)
    with pytest.raises(CheckpointError, match="height_pos_embedding"):
        load_optimizer_tensors(opt, tensors)


def test_prune_keeps_newest_and_latest(tmp_path):
    model, opt = _trained()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / f"step_{step:08d}", model, opt, TrainerState(step=step), [capture_rng()])
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000002", "step_00000003"]
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(tmp_path)


SCALER = {"scale": 256.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 100, "_growth_tracker": 37}


def test_fp16_loss_scaler_state_round_trips_as_json(tmp_path):
    model, opt = _trained()
    scaler = torch.amp.GradScaler("cpu")  # the CUDA scaler's state dict has the same keys
    scaler.load_state_dict(SCALER)
    folder = save_checkpoint(tmp_path / "step_00000001", model, opt, TrainerState(step=1), [capture_rng()],
                             grad_scaler=scaler.state_dict())
    assert json.loads((folder / "trainer_state.json").read_text())["grad_scaler"] == SCALER
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(load_checkpoint(folder).grad_scaler)
    assert fresh.state_dict() == SCALER and fresh.get_scale() == 256.0
    plain = save_checkpoint(tmp_path / "step_00000002", model, opt, TrainerState(step=2), [capture_rng()])
    assert load_checkpoint(plain).grad_scaler is None


def _crash_while_resaving(checkpoints, name: str) -> None:
    """The state a kill leaves between save_checkpoint's two renames of an existing ``name``."""
    os.replace(checkpoints / name, checkpoints / f".{name}.old-dead0001")
    partial = checkpoints / f".{name}.tmp-dead0002"
    partial.mkdir()
    (partial / "config.json").write_text("{}")  # the new copy, not finished


def test_resume_survives_a_kill_while_replacing_a_checkpoint(tmp_path):
    model, opt = _trained()
    ck = tmp_path / "checkpoints"
    save_checkpoint(ck / "step_00000002", model, opt, TrainerState(step=2), [capture_rng()])
    save_checkpoint(ck / "step_00000004", model, opt, TrainerState(step=4), [capture_rng()])
    _crash_while_resaving(ck, "step_00000004")  # e.g. step 4 ends an epoch and is saved again
    assert (ck / "latest").read_text().strip() == "step_00000004" and not (ck / "step_00000004").exists()
    found = latest_checkpoint(ck)
    assert found == ck / ".step_00000004.old-dead0001" and load_checkpoint(found).state.step == 4
    config = {"lr": 1e-3}
    assert resumable_checkpoint(ck, config, set()) is None  # saved without a config: not this run's
    shutil.rmtree(found)  # nothing moved aside: the newest complete visible checkpoint
    assert latest_checkpoint(ck) == ck / "step_00000002"
    # The next save (and prune) clears the leftovers of the interrupted one.
    save_checkpoint(ck / "step_00000006", model, opt, TrainerState(step=6), [capture_rng()], {"config": config})
    prune_checkpoints(ck, keep=2)
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step_00000002", "step_00000006"]
    assert resumable_checkpoint(ck, config, set()) == ck / "step_00000006"
    assert resumable_checkpoint(ck, {"lr": 2e-3}, set()) is None
    assert resumable_checkpoint(ck, {"lr": 2e-3}, {"lr"}) == ck / "step_00000006"
    shutil.rmtree(ck / "step_00000002")
    shutil.rmtree(ck / "step_00000006")
    with pytest.raises(CheckpointError, match="no other complete checkpoint"):
        latest_checkpoint(ck)
