"""The pretrain flow and `vimpac pretrain` end to end, under the session's real Prefect server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.train.helpers import tiny_flat, tiny_shards

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

    from flows.pretrain import pretrain

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
    cmd = [sys.executable, "-m", "vimpac_core.cli", "pretrain", str(preset)]
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
