"""Real torchrun runs with 2 gloo ranks on CPU: synchronised BatchNorm, DDP training, exact resume."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import tiny_config, tiny_shards
from vimpac_core.train.launch import (
    TrainingFailed,
    kill_tree,
    launch_stage,
    run_streaming,
    torchrun_command,
    write_stage_config,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_gloo_sync_batchnorm_matches_batchnorm_on_the_joined_batch(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "train" / "syncbn_worker.py"), str(tmp_path)]
    run_streaming(cmd, on_line=lambda _: None, timeout_s=120, env={"PYTHONPATH": str(REPO)})
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)] == ["OK", "OK"]


def _weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "checkpoints" / "final"
    return {**load_file(str(final / "model.safetensors")),
            **{f"adam/{k}": v for k, v in load_file(str(final / "optimizer.safetensors")).items()}}


def test_killed_run_resumes_to_identical_weights(tmp_path):
    data = tiny_shards(tmp_path / "data", videos=24)
    common = dict(nproc_per_node=2, num_workers=1, epochs=3, save_every=2, dropout=0.1)
    # Uninterrupted reference: 2 ranks x 6 steps x 3 epochs.
    lines: list[str] = []
    metrics = launch_stage(tiny_config(data, str(tmp_path / "ref"), **common), on_line=lines.append, timeout_s=240)
    assert metrics["step"] == 18 and metrics["world_size"] == 2
    sums = re.findall(r"rank (\d) final weights checksum (\S+?e[+-]\d\d)", "\n".join(lines))
    assert sorted(r for r, _ in sums) == ["0", "1"] and len({s for _, s in sums}) == 1  # replicas agree

    # Same run, SIGKILLed (torchrun and its ranks) as soon as step 5 is logged: checkpoint step 4 exists.
    killed = tiny_config(data, str(tmp_path / "run"), **common)
    procs = []

    def kill_on_step5(line: str) -> None:
        if line.startswith("[pretrain] epoch 0 step 5:"):
            kill_tree(procs[0].pid, signal.SIGKILL)  # torchrun and both ranks, no chance to clean up

    with pytest.raises(TrainingFailed, match="code -9"):
        run_streaming(torchrun_command(write_stage_config(killed), 2), on_line=kill_on_step5,
                      on_start=procs.append, timeout_s=240)
    latest = (tmp_path / "run" / "checkpoints" / "latest").read_text().strip()
    assert latest.startswith("step_") and int(latest[5:]) < 18  # killed before the end
    assert not (tmp_path / "run" / "checkpoints" / "final").exists()

    resumed = tiny_config(data, str(tmp_path / "run"), resume=True, **common)
    assert launch_stage(resumed, on_line=lambda _: None, timeout_s=240)["step"] == 18
    ref, got = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    assert ref.keys() == got.keys()
    different = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"
