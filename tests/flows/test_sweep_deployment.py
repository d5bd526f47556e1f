"""The scheduled `finetune-sweep` deployment on a real `prefect server start` with a process worker:
the cron schedule and the concurrency limit exist after `prefect deploy`, `prefect deployment run`
completes with the expected results table, and a second run started while one is active is
cancelled (deployment concurrency limit 1, CANCEL_NEW), never run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.sweep.helpers import labelled_shards, save_tiny_checkpoint
from vimpac_core.sweep import read_results

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEPLOYMENT = "finetune-sweep/finetune-sweep"


@pytest.fixture
def real_server(tmp_path):
    """`prefect server start` (its own home and SQLite database) -> the environment that reaches it."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "2",
           "PREFECT_LOGGING_LEVEL": "INFO", "VIMPAC_REPO": str(REPO),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise AssertionError("prefect server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:]) from None
            time.sleep(1)
    try:
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _prefect(args: list[str], env: dict, timeout: float = 180) -> str:
    proc = subprocess.run([*PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _api(env: dict, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _run(env: dict, params: dict) -> str:
    out = _prefect(["deployment", "run", DEPLOYMENT, "--params", json.dumps(params)], env)
    return UUID.findall(out.split("UUID", 1)[-1])[0]


def _wait_state(env: dict, run_id: str, done, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        run = _api(env, "GET", f"/flow_runs/{run_id}")
        if done(run["state"]) or time.monotonic() > deadline:
            return run
        time.sleep(1)


def test_scheduled_sweep_deployment_runs_once_and_cancels_an_overlapping_run(real_server, tmp_path):
    env = real_server
    checkpoint = save_tiny_checkpoint(tmp_path / "pre" / "stage1" / "checkpoints" / "final", step=4)
    sweep = {"name": "nightly-test", "output": str(tmp_path / "sweep"), "max_parallel": 1, "timeout_s": 240,
             "base": {"epochs": 1, "bs_per_gpu": 4, "num_workers": 0, "device": "cpu", "log_every": 1,
                      "clip_len": 2, "frame_size": 32, "frame_rate": 1,
                      "test_data": labelled_shards(tmp_path / "test", 4, seed=1)},
             "grid": {"lr": [1.0e-3, 1.0e-4]},
             "tasks": {"toy": {"data": labelled_shards(tmp_path / "train", 8, seed=0)}}}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    params = {"sweep": str(sweep_file), "checkpoint": f"latest:{tmp_path / 'pre'}"}

    _prefect(["work-pool", "create", "vimpac-process", "--type", "process"], env)
    _prefect(["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "finetune-sweep"], env)
    (deployment,) = _api(env, "POST", "/deployments/filter",
                         {"deployments": {"name": {"any_": ["finetune-sweep"]}}})
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]
    assert deployment["schedules"][0]["active"] is True
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert deployment["parameters"]["checkpoint"] == "latest:runs/pretrain"

    first = _run(env, params)
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([*PREFECT, "worker", "start", "--pool", "vimpac-process"], cwd=tmp_path, env=env,
                              stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        running = _wait_state(env, first, lambda s: s["type"] in ("RUNNING", "COMPLETED", "FAILED", "CRASHED"), 180)
        assert running["state"]["type"] == "RUNNING", running["state"]
        second = _run(env, params)  # while the first is active
        cancelled = _wait_state(env, second, lambda s: s["type"] not in ("SCHEDULED", "PENDING"), 60)
        assert cancelled["state"]["type"] == "CANCELLED", cancelled["state"]
        assert "concurrency limit" in cancelled["state"]["message"].lower()
        history = [s["type"] for s in _api(env, "GET", f"/flow_run_states/?flow_run_id={second}")]
        assert "RUNNING" not in history and cancelled["run_count"] == 0, history  # it never ran
        done = _wait_state(env, first, lambda s: s["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), 600)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        worker_log.close()
    assert done["state"]["type"] == "COMPLETED", (done["state"], (tmp_path / "worker.log").read_text()[-4000:])
    rows = read_results(str(tmp_path / "sweep")).to_pylist()
    assert [(r["task"], r["lr"], r["status"]) for r in rows] == [("toy", 1e-3, "ok"), ("toy", 1e-4, "ok")]
    assert {r["checkpoint"] for r in rows} == {str(checkpoint)}
    assert all(0.0 <= r["top1"] <= 1.0 and r["wall_time_s"] > 0 for r in rows)
    assert len({r["sweep_id"] for r in rows}) == 1  # the cancelled run wrote nothing
