"""Multi-node training on this machine: two "nodes" (two torchrun launchers of one gloo rank each, meeting
at a c10d rendezvous on 127.0.0.1) against one launcher of two ranks, and the loss of a node.

Both nodes share the output folder, as nodes of a cluster share a checkpoint volume. Every launch runs
its ranks with one intra-op thread (torchrun sets that for 2 ranks per node, not for 1), so the two
layouts do the same floating-point work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import free_port
from tests.train.helpers import tiny_config, tiny_flat, tiny_shards
from vimpac_core.errors import ConfigError
from vimpac_core.train.launch import (
    TrainingInterrupted,
    kill_tree,
    launch_stage,
    resume_point,
    torchrun_command,
)

REPO = Path(__file__).resolve().parents[2]
ENV = {"OMP_NUM_THREADS": "1"}
COMMON = dict(num_workers=1, epochs=3, save_every=2, dropout=0.1)
# A node's launcher in its own process (so that it can be killed as a whole node is lost).
NODE = (
    "import json, sys\n"
    "from vimpac_core.train.config import PretrainConfig\n"
    "from vimpac_core.train.launch import launch_stage\n"
    "launch_stage(PretrainConfig.from_flat(json.loads(sys.argv[1])), on_line=print, env={'OMP_NUM_THREADS': '1'})\n"
)


def _weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "checkpoints" / "final"
    return {**load_file(str(final / "model.safetensors")),
            **{f"adam/{k}": v for k, v in load_file(str(final / "optimizer.safetensors")).items()}}


def _node_flat(data: str, output: Path, rank: int, port: int, **over) -> dict:
    return tiny_flat(data, str(output), nproc_per_node=1, nnodes=2, node_rank=rank,
                     rdzv_endpoint=f"127.0.0.1:{port}", rdzv_id="two-nodes", **COMMON, **over)


def _run_nodes(data: str, output: Path, **over) -> list[dict]:
    """Both nodes in threads of this process; -> their metrics."""
    port = free_port()
    results: list[dict] = [{}, {}]

    def node(rank: int) -> None:
        cfg = tiny_config(**_node_flat(data, output, rank, port, **over))
        results[rank] = launch_stage(cfg, on_line=lambda _: None, timeout_s=300, env=ENV)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_config_and_command_of_a_node():
    cfg = tiny_config("d", "o", nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400", bs_per_gpu=2, batch_size=8)
    assert cfg.accumulation_steps() == 2  # 8 videos / (2 per GPU x 1 GPU x 2 nodes)
    cmd = torchrun_command("run.json", 1, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400", rdzv_id="x")
    assert "--standalone" not in cmd
    joined = " ".join(cmd)
    assert "--nnodes 2 --node_rank 1 --rdzv_backend c10d --rdzv_endpoint 10.0.0.1:29400 --rdzv_id x" in joined
    with pytest.raises(ConfigError, match="rdzv_endpoint: nnodes 2 needs a rendezvous endpoint"):
        tiny_config("d", "o", nnodes=2)
    with pytest.raises(ConfigError, match="node_rank 2 must be below nnodes 2"):
        tiny_config("d", "o", nnodes=2, node_rank=2, rdzv_endpoint="h:1")
    with pytest.raises(ConfigError, match="must be HOST:PORT"):
        tiny_config("d", "o", nnodes=2, rdzv_endpoint="10.0.0.1")


@pytest.mark.slow
def test_two_nodes_reach_the_weights_of_one_node_with_two_ranks(tmp_path):
    data = tiny_shards(tmp_path / "data", videos=24)
    ref = launch_stage(tiny_config(data, str(tmp_path / "ref"), nproc_per_node=2, **COMMON), on_line=lambda _: None,
                       timeout_s=300, env=ENV)
    results = _run_nodes(data, tmp_path / "nodes")
    assert ref["step"] == 18 and ref["world_size"] == 2
    assert [r["world_size"] for r in results] == [2, 2] and [r["step"] for r in results] == [18, 18]
    expected, got = _weights(tmp_path / "ref"), _weights(tmp_path / "nodes")
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"two nodes differ from one node in {different[:5]}"


@pytest.mark.slow
def test_a_lost_node_interrupts_the_stage_and_the_retry_resumes(tmp_path):
    data = tiny_shards(tmp_path / "data", videos=24)
    launch_stage(tiny_config(data, str(tmp_path / "ref"), nproc_per_node=2, **COMMON), on_line=lambda _: None,
                 timeout_s=300, env=ENV)
    out, port = tmp_path / "nodes", free_port()
    lost = subprocess.Popen([sys.executable, "-c", NODE, json.dumps(_node_flat(data, out, 1, port))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})

    def lose_node_after_a_checkpoint() -> None:
        latest = out / "checkpoints" / "latest"
        deadline = time.monotonic() + 240
        while not latest.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_tree(lost.pid)  # SIGKILL: node 1's launcher, its torchrun and its rank at once

    killer = threading.Thread(target=lose_node_after_a_checkpoint)
    killer.start()
    survivor = tiny_config(**_node_flat(data, out, 0, port))
    with pytest.raises(TrainingInterrupted) as interrupted:
        launch_stage(survivor, on_line=lambda _: None, timeout_s=300, env=ENV)
    killer.join()
    lost.wait(timeout=30)
    checkpoint = interrupted.value.resume_from
    assert checkpoint is not None and checkpoint == resume_point(survivor)
    done = int(checkpoint.name.removeprefix("step_"))
    assert 0 < done < 18 and not (out / "checkpoints" / "final").exists()

    # The retry (what the pretrain task does): every node again, resume on, at a new rendezvous.
    results = _run_nodes(data, out, resume=True)
    assert [(r["start_step"], r["step"]) for r in results] == [(done, 18)] * 2  # continued after the checkpoint
    expected, got = _weights(tmp_path / "ref"), _weights(out)
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"the resumed two-node run differs from the uninterrupted one in {different[:5]}"
