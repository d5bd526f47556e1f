"""`vimpac finetune` / `vimpac evaluate` and the finetune flow under the session's real Prefect
server: train then evaluate as tasks, artifacts, retry from the checkpoint after a preempted rank,
and a rank's error as the command's last line (never retried)."""

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
import yaml

from tests.finetune.helpers import finetune_flat, time_order_shards
from tests.train.helpers import rank_processes, tiny_config, tiny_flat, tiny_shards
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.pretrain import train as pretrain

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft-flow")
    train = time_order_shards(root / "train", 8, seed=0)
    test = time_order_shards(root / "test", 3, seed=1, prefix="t")
    pretrain(tiny_config(train, str(root / "pre"), clip_len=4, epochs=1, max_steps=2, bs_per_gpu=4), CPU)
    return root, train, test, str(root / "pre" / "checkpoints" / "final")


def _cli(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vimpac_cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_cli_finetune_trains_evaluates_and_reports(prefect_server, setup):
    root, train, test, load = setup
    preset = root / "ft.yaml"
    preset.write_text(yaml.safe_dump(finetune_flat(train, str(root / "run"), load=load, test_data=test, val_data=test,
                                                   nproc_per_node=2, epochs=2, last_test_clips=[2])))
    done = _cli(["finetune", str(preset), "--bs-per-gpu", "2", "--num-test-clips", "1", "--timeout", "300"])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {(r["checkpoint"], r["clips"]) for r in lines} == {("final", 1), ("final", 2), ("best", 1), ("best", 2)}
    assert all(r["videos"] == 6 for r in lines)
    for folder in ("eval/clips1", "eval/clips2", "eval-best/clips1"):
        assert {p.name for p in (root / "run" / folder).iterdir()} == {"predictions.parquet", "metrics.json", "confusion.png"}
    best = json.loads((root / "run" / "best.json").read_text())
    assert best["epoch"] in (1, 2) and (root / "run" / "best" / "model.safetensors").is_file()
    table = _artifacts("finetune-metrics")[0].data
    table = json.loads(table) if isinstance(table, str) else table
    assert {(row["checkpoint_kind"], row["clips"]) for row in table} == {("final", 1), ("final", 2), ("best", 1), ("best", 2)}
    assert "data:image/png;base64," in _artifacts("finetune-report")[0].data

    evaluated = _cli(["evaluate", str(root / "run" / "checkpoints" / "final"), "--data", test,
                      "--num-test-clips", "1,2", "--nproc-per-node", "2", "--num-workers", "0", "--device", "cpu"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = [json.loads(line) for line in evaluated.stdout.splitlines() if line.startswith("{")]
    assert [r["clips"] for r in rows] == [1, 2]
    first_eval = json.loads((root / "run" / "eval" / "clips1" / "metrics.json").read_text())
    assert rows[0]["top1"] == first_eval["top1"]  # the same checkpoint, data and views
    assert (root / "run" / "eval-final" / "clips2" / "predictions.parquet").is_file()

    bad = _cli(["finetune", str(preset), "--clip-len", "2", "--check"])
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("vimpac finetune: error: clip_len/frame_size")


def test_a_preempted_rank_retries_finetuning_from_its_checkpoint(prefect_server, setup, monkeypatch):
    import vimpac_flows.finetune
    from vimpac_flows.finetune import finetune

    monkeypatch.setattr(vimpac_flows.finetune, "finetune_train", vimpac_flows.finetune.finetune_train.with_options(retry_delay_seconds=0))
    root, train, test, load = setup
    output = root / "preempted"
    flat = finetune_flat(train, str(output), load=load, test_data=test, nproc_per_node=2, epochs=3, save_every=2,
                         log_every=1000)
    killed = []

    def preempt_a_rank_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (output / "checkpoints" / "latest").exists():
            time.sleep(0.02)
        for rank in rank_processes(os.getpid(), "vimpac_core.train.finetune")[:1]:
            rank.kill()
            killed.append(rank.pid)

    threading.Thread(target=preempt_a_rank_after_the_first_checkpoint, daemon=True).start()
    state = finetune(config=flat, timeout_s=300, return_state=True)
    assert killed, "no rank was killed"
    assert state.is_completed(), state.message
    assert state.result()["train"]["step"] == 3 * 2  # 16 videos / (2 ranks x 4) per step
    assert json.loads((output / "run_config.json").read_text())["resume"] is True  # the retry resumed


def test_a_rank_index_error_is_the_last_line_and_is_not_retried(prefect_server, tmp_path):
    """A vocabulary smaller than the shards' codes, which preflight cannot see (a tokenizer it cannot
    size): the embedding raises IndexError on a rank; that is the command's last line, permanent."""
    from vimpac_flows.pretrain import pretrain as pretrain_flow

    data = tiny_shards(tmp_path / "d", videos=8)
    flat = tiny_flat(data, str(tmp_path / "out"), vocab_size=16, nproc_per_node=2, epochs=1)
    state = pretrain_flow(stages=[flat], return_state=True)
    assert state.is_failed()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    (stage,) = [t for t in runs if t.name.startswith("pretrain-stage")]
    assert stage.run_count == 1 and "raised IndexError: index out of range" in stage.state.message
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(flat))
    failed = _cli(["pretrain", str(preset), "--output", str(tmp_path / "cli")])
    assert failed.returncode == 2
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("vimpac pretrain: error: rank ") and "raised IndexError: index out of range in self" in last
