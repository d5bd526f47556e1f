"""The pretrain flow and `vimpac pretrain` end to end, under the session's real Prefect server."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.train.helpers import (
    rank_processes,
    survivors,
    tiny_config,
    tiny_flat,
    tiny_shards,
    wait_until_training,
)
from vimpac_core.train.launch import launch_stage

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_flow_runs_stage1_then_stage2_with_artifacts_and_logs(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    from vimpac_flows.pretrain import pretrain

    data32, data64 = tiny_shards(tmp_path / "d32", videos=8), tiny_shards(tmp_path / "d64", videos=8, grid=8)
    s1 = tiny_flat(data32, str(tmp_path / "out" / "stage1"), bs_per_gpu=4, epochs=1, schedule_epochs=2)
    s2 = tiny_flat(data64, str(tmp_path / "out" / "stage2"), bs_per_gpu=4, epochs=1, frame_size=64,
                   load=str(tmp_path / "out" / "stage1" / "checkpoints" / "final"), different_shape=True)
    # conftest keeps Prefect at WARNING; the streamed torchrun lines are INFO records of the run loggers.
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    try:
        state = pretrain(stages=[s1, s2], timeout_s=180, return_state=True)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    for handler in (h for logger in loggers for h in logger.handlers if isinstance(h, APILogHandler)):
        handler.flush()
    assert state.is_completed()
    results = state.result()
    assert [r["stage"] for r in results] == [1, 2]
    assert (results[0]["step"], results[1]["step"], results[1]["epoch"]) == (2, 4, 2)  # counters carried on
    assert Path(results[1]["checkpoint"], "model.safetensors").is_file()
    run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while True:  # logs reach the API in batches
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
            messages = [log.message for log in logs]
            if any("[pretrain] epoch 0 step 1:" in m for m in messages) or time.monotonic() > deadline:
                break
            time.sleep(1)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    assert any("[pretrain] epoch 0 step 1:" in m for m in messages)  # torchrun output, streamed
    by_key = {a.key: a for a in artifacts}
    table = by_key["pretrain-metrics"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [row["stage"] for row in table] == [1, 2]
    assert str(Path(results[1]["checkpoint"]).resolve()) in by_key["pretrain-checkpoints"].data


def test_cli_pretrain_two_ranks_and_bad_flag(prefect_server, tmp_path):
    data = tiny_shards(tmp_path / "d32", videos=8)
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(tiny_flat(data, str(tmp_path / "unused"), epochs=1)))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vimpac_cli", "pretrain", str(preset)]
    bad = subprocess.run([*cmd, "--nproc-per-node", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nproc_per_node" in bad.stderr
    out = tmp_path / "out"
    done = subprocess.run([*cmd, "--output", str(out), "--nproc-per-node", "2", "--timeout", "180"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["stage"] == 1 and summary["step"] == 2  # 8 videos / (2 ranks x 2) per step
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["checkpoint"] == str(out / "checkpoints" / "final")


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _final_state(output: Path) -> dict[str, torch.Tensor]:
    final = output / "checkpoints" / "final"
    return {**load_file(str(final / "model.safetensors")),
            **{f"adam/{k}": v for k, v in load_file(str(final / "optimizer.safetensors")).items()}}


def test_a_killed_rank_retries_the_stage_from_its_checkpoint(prefect_server, tmp_path, monkeypatch):
    """A rank SIGKILLed (preemption) after the first checkpoint: Prefect retries the task, the retry
    resumes from the checkpoint, and the weights end exactly as in an uninterrupted run."""
    import vimpac_flows.pretrain
    from vimpac_flows.pretrain import pretrain

    monkeypatch.setattr(vimpac_flows.pretrain, "pretrain_stage", vimpac_flows.pretrain.pretrain_stage.with_options(retry_delay_seconds=0))
    data = tiny_shards(tmp_path / "data", videos=24)
    common = dict(nproc_per_node=2, epochs=3, save_every=2, dropout=0.1, log_every=1000)
    reference = launch_stage(tiny_config(data, str(tmp_path / "ref"), **common), on_line=lambda _: None, timeout_s=240)
    assert reference["step"] == 18

    output = tmp_path / "run"
    killed: list[int] = []

    def preempt_a_rank_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (output / "checkpoints" / "latest").exists():
            time.sleep(0.02)
        for rank in rank_processes(os.getpid())[:1]:
            rank.kill()
            killed.append(int((output / "checkpoints" / "latest").read_text().strip()[5:]))

    threading.Thread(target=preempt_a_rank_after_the_first_checkpoint, daemon=True).start()
    state = pretrain(stages=[tiny_flat(data, str(output), **common)], timeout_s=240, return_state=True)
    assert killed, "no rank was killed"
    assert state.is_completed(), state.message
    assert state.result()[0]["step"] == 18
    (task_run,) = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("pretrain-stage")]
    assert task_run.run_count == 2  # failed once, retried once
    run_config = json.loads((output / "run_config.json").read_text())
    assert run_config["resume"] is True  # the retry resumed
    ref, got = _final_state(tmp_path / "ref"), _final_state(output)
    different = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert ref.keys() == got.keys() and not different, f"resumed run differs in {different[:5]}"


def test_config_errors_are_not_retried(prefect_server, tmp_path):
    from vimpac_flows.pretrain import pretrain

    bad = tiny_flat(str(tmp_path / "data"), str(tmp_path / "out"), lr=-1.0)
    started = time.monotonic()
    state = pretrain(stages=[bad], return_state=True)
    assert state.is_failed() and time.monotonic() - started < 25  # no 30 s retry delay
    (task_run,) = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("pretrain-stage")]
    assert task_run.run_count == 1 and task_run.state.is_failed() and "lr" in task_run.state.message


FLOW_RUNNER = (
    "import json, sys\n"
    "from vimpac_flows.pretrain import pretrain\n"
    "pretrain(stages=[json.loads(sys.argv[1])])\n"
)


def test_sigterm_to_the_flow_run_process_kills_every_rank(prefect_server, tmp_path):
    """What a Prefect process worker does on cancel: SIGTERM the flow-run process. The ranks are
    stopped first (busy or hung ranks) so that only the launcher's clean-up can end them."""
    data = tiny_shards(tmp_path / "data", videos=24)
    output = tmp_path / "run"
    flat = tiny_flat(data, str(output), nproc_per_node=2, epochs=10_000, log_every=1000)
    parent = subprocess.Popen([sys.executable, "-c", FLOW_RUNNER, json.dumps(flat)], cwd=REPO,
                              env={**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: list[psutil.Process] = []
    try:
        for rank in wait_until_training(parent.pid, output, ranks=2, timeout_s=180):
            rank.suspend()
        tree = psutil.Process(parent.pid).children(recursive=True)
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=90)
        left = survivors(tree, timeout_s=30)
        assert not left, f"orphaned: {[(p.pid, p.cmdline()) for p in left]}"
    finally:
        for proc in tree:
            try:
                proc.kill()
            except psutil.Error:
                pass
        if parent.poll() is None:
            parent.kill()
