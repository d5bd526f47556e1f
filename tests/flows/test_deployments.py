"""deployments/prefect.yaml against the session's real Prefect server: create the process pool,
`prefect deploy --all`, then run the `rerun-failed` and `full-pipeline` deployments with
`prefect deployment run` and let a real `prefect worker start --run-once` execute them in subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

from tests.ingest.conftest import write_csv
from vimpac_core.config import DownloadConfig, IngestConfig
from vimpac_core.pipeline_config import PipelineConfig
from vimpac_core.shards.manifest import read_all_manifests
from vimpac_flows.ingest import run_ingest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
PIPE_STAGE = dict(layers=1, hid_dim=128, frame_size=32, clip_len=2, frame_rate=1, vocab_size=64, nce_proj_hid_dim=64,
                  mask_blocks=2, bs_per_gpu=2, num_workers=0, epochs=1, log_every=1, device="cpu")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _prefect(args: list[str], env: dict, timeout: float = 120) -> str:
    proc = subprocess.run([*PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _latest(manifest_rows: list[dict]) -> dict[str, dict]:
    return {r["video_id"]: r for r in manifest_rows}  # rows are in attempt order: the last one wins


def test_deploy_all_then_worker_runs_rerun_failed(prefect_server, tmp_path, clips, tiny_tokenizer, http_server):
    base, handler = http_server
    flaky = f"/flaky/{clips[1].name}"
    handler.flaky_left[flaky] = 6  # outlasts the download retries and the task retry of the first ingest
    rows = [{"uri": str(clips[0]), "label": 0}, {"uri": base + flaky, "label": 1}]
    cfg = IngestConfig(inputs=str(write_csv(tmp_path / "l.csv", rows)), out=str(tmp_path / "out"),
                       tokenizer=tiny_tokenizer, fps=4.0, frame_size=32, batch_size=8, decode_window=4, shard_size=1,
                       max_workers=1, task_retries=1, download=DownloadConfig(retries=1, backoff_s=0.01, timeout_s=5))
    first = run_ingest(cfg)
    assert (first["ok"], first["failed"]) == (1, 1)
    assert _latest(read_all_manifests(cfg.out).to_pylist())["clip1"]["status"] == "failed"

    env = {**os.environ, "PREFECT_API_URL": prefect_server, "VIMPAC_REPO": str(REPO),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with get_client(sync_client=True) as client:
        pools = {pool.name for pool in client.read_work_pools()}
    if "vimpac-process" not in pools:  # the session's server may have it from another test
        _prefect(["work-pool", "create", "vimpac-process", "--type", "process"], env)
    _prefect(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env, timeout=180)
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=["full-pipeline", "rerun-failed", "pretrain"])))
        found = {d.name: d for d in deployments}
        assert set(found) == {"full-pipeline", "rerun-failed", "pretrain"}
        assert {d.work_pool_name for d in deployments} == {"vimpac-process"}
        assert found["full-pipeline"].entrypoint == "vimpac_flows/pipeline.py:pipeline"
        assert found["rerun-failed"].pull_steps[0]["prefect.deployments.steps.set_working_directory"] == {
            "directory": str(REPO)}

    handler.flaky_left[flaky] = 0  # the server recovered
    out = _prefect(["deployment", "run", "rerun-failed/rerun-failed", "--param", f"out={cfg.out}"], env)
    run_id = UUID.findall(out.split("UUID", 1)[-1])[0]
    # the whole DAG too, its PipelineConfig parameter passed as JSON (given tokenizer, one stage)
    pipe = PipelineConfig(videos=str(write_csv(tmp_path / "p.csv", [{"uri": str(clips[0])}, {"uri": str(clips[2])}])),
                          out=str(tmp_path / "pipe"), tokenizer=tiny_tokenizer, ingest={"fps": 4.0, "max_workers": 1},
                          pretrain=PIPE_STAGE, timeout_s=200)
    out = _prefect(["deployment", "run", "pipeline/full-pipeline", "--params",
                    json.dumps({"config": pipe.model_dump(mode="json")})], env)
    pipe_run_id = UUID.findall(out.split("UUID", 1)[-1])[0]
    worker = subprocess.run([*PREFECT, "worker", "start", "--pool", "vimpac-process", "--run-once"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stdout + worker.stderr

    with get_client(sync_client=True) as client:
        run, pipe_run = client.read_flow_run(run_id), client.read_flow_run(pipe_run_id)
    assert run.state.is_completed(), (run.state, worker.stdout[-3000:], worker.stderr[-3000:])
    assert pipe_run.state.is_completed(), (pipe_run.state, worker.stdout[-3000:], worker.stderr[-3000:])
    assert (tmp_path / "pipe" / "pretrain" / "checkpoints" / "final" / "model.safetensors").is_file()
    assert len(list((tmp_path / "pipe" / "tokens32" / "shards").glob("*.parquet"))) == 1
    assert run.deployment_id == found["rerun-failed"].id and run.parameters["out"] == cfg.out
    latest = _latest(read_all_manifests(cfg.out).to_pylist())
    assert latest["clip1"]["status"] == "ok" and latest["clip1"]["attempts"] == 2
    assert latest["clip0"]["attempts"] == 1  # the good video was left alone
    assert handler.hits[flaky] >= 1
