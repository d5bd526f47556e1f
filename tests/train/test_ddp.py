"""Real torchrun runs with 2 gloo ranks on CPU: synchronised BatchNorm, DDP training, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import (
    rank_processes,
    survivors,
    tiny_config,
    tiny_flat,
    tiny_shards,
    wait_until_training,
)
from vimpac_core.train.launch import (
    TrainingFailed,
    TrainingInterrupted,
    kill_tree,
    launch_stage,
    resume_point,
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
    metrics = launch_stage(tiny_config(data, str(tmp_path / "ref"), **common), on_line=lambda _: None, timeout_s=240)
    assert metrics["step"] == 18 and metrics["world_size"] == 2

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
    done = launch_stage(resumed, on_line=lambda _: None, timeout_s=240)
    assert (done["start_step"], done["step"]) == (int(latest[5:]), 18)  # from the checkpoint, not from step 0
    ref, got = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    assert ref.keys() == got.keys()
    different = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not different, f"resumed run differs in {different[:5]}"


LAUNCHER = (
    "import json, sys\n"
    "from vimpac_core.train.config import PretrainConfig\n"
    "from vimpac_core.train.launch import launch_stage\n"
    "launch_stage(PretrainConfig.from_flat(json.loads(sys.argv[1])), on_line=lambda line: None)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_the_launcher_takes_torchrun_and_every_rank_with_it(tmp_path, sig):
    """SIGTERM (an orchestrator's cancel): the launcher kills the group, then exits as SIGTERM would.
    SIGKILL: torchrun's and the ranks' PDEATHSIG. Either way no rank is orphaned.

    The ranks are stopped (SIGSTOP) first, like ranks busy in a long step or hung in a collective:
    otherwise they may die by chance of a broken stdout pipe or a lost peer, which proves nothing."""
    data = tiny_shards(tmp_path / "data", videos=24)
    output = tmp_path / "run"
    flat = tiny_flat(data, str(output), nproc_per_node=2, epochs=10_000, log_every=1000)
    parent = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps(flat)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: list[psutil.Process] = []
    try:
        for rank in wait_until_training(parent.pid, output, ranks=2):
            rank.suspend()
        tree = psutil.Process(parent.pid).children(recursive=True)  # torchrun and its ranks
        parent.send_signal(sig)
        assert parent.wait(timeout=60) == -sig
        left = survivors(tree, timeout_s=30)
        assert not left, f"orphaned after {sig.name}: {[(p.pid, p.cmdline()) for p in left]}"
    finally:
        for proc in [*tree, psutil.Process(parent.pid)] if parent.poll() is None else tree:
            try:
                proc.kill()
            except psutil.Error:
                pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU (amp fp16 must fail on the ranks)")
def test_a_rank_error_fails_the_stage_for_good(tmp_path):
    """A rank's ValueError (here: amp fp16 on a CPU-only machine) is permanent: no retry."""
    data = tiny_shards(tmp_path / "data", videos=8)
    bad = tiny_config(data, str(tmp_path / "bad"), device="auto", amp="fp16")
    with pytest.raises(TrainingFailed, match="rank 0 raised ValueError: amp") as failed:
        launch_stage(bad, on_line=lambda _: None, timeout_s=120)
    assert not failed.value.retriable


def test_a_vanished_rank_is_an_interruption_that_resumes(tmp_path):
    """A rank that vanishes without a permanent error is an interruption (retriable), resumable from
    its last checkpoint; another run's checkpoints are no resume point."""
    data = tiny_shards(tmp_path / "data", videos=8)
    killed = tiny_config(data, str(tmp_path / "killed"), epochs=10_000, save_every=1)

    def kill_a_rank_after_a_checkpoint(line: str) -> None:
        if line.startswith("[pretrain] epoch") and " step 2:" in line:  # step 1's checkpoint is written
            for rank in rank_processes(os.getpid()):
                rank.kill()

    with pytest.raises(TrainingInterrupted) as interrupted:
        launch_stage(killed, on_line=kill_a_rank_after_a_checkpoint, timeout_s=120)
    assert interrupted.value.retriable
    assert interrupted.value.resume_from is not None and interrupted.value.resume_from.name.startswith("step_")
    other = killed.model_copy(update={"lr": 0.5})  # another run's checkpoints are no resume point
    assert resume_point(other) is None and resume_point(killed) == interrupted.value.resume_from
