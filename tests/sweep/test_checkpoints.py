"""latest:<pre-training output> resolution on real checkpoint folders, the cached digest, pinning."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from tests.sweep.helpers import save_tiny_checkpoint
from vimpac_core.errors import CheckpointError
from vimpac_core.sweep.checkpoints import (
    DIGEST_CACHE_SUFFIX,
    checkpoint_digest,
    pin_checkpoint,
    resolve_checkpoint,
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_latest_single_stage_takes_the_newest_complete_step(tmp_path):
    ck = tmp_path / "pre" / "checkpoints"
    save_tiny_checkpoint(ck / "step_00000002", step=2)
    newest = save_tiny_checkpoint(ck / "step_00000004", step=4)
    got = resolve_checkpoint(f"latest:{tmp_path / 'pre'}")
    assert got.path == newest and got.source == f"latest:{tmp_path / 'pre'}"
    assert got.note.startswith("single stage: newest complete checkpoint step_00000004 (step 4)")
    # a save killed mid-way: the pointer names a folder without trainer_state.json -> the newest complete one
    partial = ck / "step_00000006"
    shutil.copytree(newest, partial)
    (partial / "trainer_state.json").unlink()
    (ck / "latest").write_text("step_00000006\n")
    assert resolve_checkpoint(f"latest:{tmp_path / 'pre'}").path == newest


def test_latest_two_stages_takes_the_latest_stage_that_has_one(tmp_path):
    pre = tmp_path / "pre"
    final1 = save_tiny_checkpoint(pre / "stage1" / "checkpoints" / "final", step=4)
    (pre / "stage2" / "tensorboard").mkdir(parents=True)  # stage 2 started, nothing saved yet
    got = resolve_checkpoint(f"latest:{pre}")
    assert got.path == final1 and got.note.startswith("stage 1 of 2: newest complete checkpoint final (step 4)")
    step = save_tiny_checkpoint(pre / "stage2" / "checkpoints" / "step_00000006", step=6)
    got = resolve_checkpoint(f"latest:{pre}")
    assert got.path == step and got.note.startswith("stage 2 of 2: newest complete checkpoint step_00000006")
    # a checkpoints folder itself is accepted too
    assert resolve_checkpoint(f"latest:{pre / 'stage1' / 'checkpoints'}").path == final1


def test_nothing_to_resolve_is_an_error_naming_the_input(tmp_path):
    (tmp_path / "pre" / "stage1").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"latest:.*pre: no complete checkpoint"):
        resolve_checkpoint(f"latest:{tmp_path / 'pre'}")
    with pytest.raises(CheckpointError, match="no model.safetensors there"):
        resolve_checkpoint(str(tmp_path / "pre"))


def test_digest_is_sha256_of_the_weights_and_cached_by_size_and_mtime(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "ck" / "final", step=1)
    weights = folder / "model.safetensors"
    assert checkpoint_digest(folder) == _sha(weights)
    cache = weights.with_name(weights.name + DIGEST_CACHE_SUFFIX)
    record = json.loads(cache.read_text())
    assert record["size"] == weights.stat().st_size and record["mtime_ns"] == weights.stat().st_mtime_ns
    cache.write_text(json.dumps({**record, "sha256": "cached"}))
    assert checkpoint_digest(folder) == "cached"  # the file was not read again
    os.utime(weights, ns=(record["mtime_ns"] + 1, record["mtime_ns"] + 1))  # a rewritten file
    assert checkpoint_digest(folder) == _sha(weights)


def test_pin_survives_pruning_of_the_source(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "pre" / "checkpoints" / "step_00000002", step=2)
    sha = checkpoint_digest(source)
    pinned = pin_checkpoint(source, sha, tmp_path / "sweep" / "checkpoints")
    assert pinned.name == sha[:16]
    assert sorted(p.name for p in pinned.iterdir()) == ["config.json", "model.safetensors",
                                                          "model.safetensors" + DIGEST_CACHE_SUFFIX]
    assert (pinned / "model.safetensors").stat().st_ino == (source / "model.safetensors").stat().st_ino  # a link
    shutil.rmtree(source)  # the running pre-training pruned it
    assert checkpoint_digest(pinned) == sha and _sha(pinned / "model.safetensors") == sha
    assert pin_checkpoint(source, sha, tmp_path / "sweep" / "checkpoints") == pinned  # already there
