"""The finetune-sweep flow under the session's Prefect server: a 2x2 sweep (2 tasks x 2 learning
rates) with one injected real failure (a data folder that does not exist), the results table and
artifacts, a rerun that only redoes the failed run, and `vimpac sweep` on the same sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sweep.helpers import labelled_shards, save_tiny_checkpoint
from vimpac_core.sweep import read_results

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LRS = [1.0e-3, 1.0e-4]


def _sweep(tmp_path: Path) -> dict:
    good = labelled_shards(tmp_path / "b-train", 8, seed=2)
    return {
        "name": "two-by-two", "output": str(tmp_path / "sweep"), "max_parallel": 2, "timeout_s": 240,
        "base": {"epochs": 1, "bs_per_gpu": 4, "num_workers": 0, "device": "cpu", "log_every": 1, "clip_len": 2,
                 "frame_size": 32, "frame_rate": 1, "test_data": labelled_shards(tmp_path / "test", 4, seed=1)},
        "grid": {"lr": LRS},
        "tasks": {"a": {"data": labelled_shards(tmp_path / "a-train", 8, seed=0)},
                  # task b at lr 1e-4 reads a folder that does not exist: a real failure of one run
                  "b": {"data": good, "grid": {"lr": [LRS[0]], "data": [good, str(tmp_path / "missing")]}}},
    }


def _artifacts(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a.data for a in found}


def _subflows(sweep_flow_run_id, run_ids: list[str]) -> tuple[list, dict]:
    """The sweep's fine-tune subflow runs (named by run id) and, per subflow, its task runs' tags."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=run_ids)))
        parents = {r.id: client.read_task_run(r.parent_task_run_id) for r in runs if r.parent_task_run_id}
        tags = {r.id: [t.tags for t in client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[r.id])))] for r in runs}
    assert all(parents[r.id].flow_run_id == sweep_flow_run_id for r in runs)  # each a subflow of the sweep
    return runs, tags


def test_two_by_two_sweep_records_a_failure_and_a_rerun_only_redoes_it(prefect_server, tmp_path):
    from vimpac_flows.finetune_sweep import finetune_sweep

    checkpoint = save_tiny_checkpoint(tmp_path / "pre" / "checkpoints" / "final", step=4)
    sweep = _sweep(tmp_path)
    state = finetune_sweep(sweep=sweep, checkpoint=f"latest:{tmp_path / 'pre'}", return_state=True)
    assert state.is_completed(), state.message  # one failed run does not fail the sweep
    first = state.result()
    assert (first["ok"], first["failed"], first["skipped"]) == (3, 1, 0)
    rows = read_results(sweep["output"]).to_pylist()
    by_point = {(r["task"], r["lr"], Path(r["data"]).name): r for r in rows}
    assert sorted(by_point) == [("a", LRS[1], "a-train"), ("a", LRS[0], "a-train"), ("b", LRS[0], "b-train"),
                                ("b", LRS[0], "missing")]
    failed = by_point[("b", LRS[0], "missing")]
    assert failed["status"] == "failed" and "missing" in failed["error"] and failed["top1"] is None
    for row in (r for r in rows if r is not failed):
        assert row["status"] == "ok" and 0.0 <= row["top1"] <= row["top5"] <= 1.0, row
        assert row["wall_time_s"] > 0 and Path(row["output"], "metrics.json").is_file()
        assert json.loads(row["config"])["lr"] == row["lr"]
    assert {r["checkpoint"] for r in rows} == {str(checkpoint)} and len({r["sweep_id"] for r in rows}) == 1
    subflows, tags = _subflows(state.state_details.flow_run_id, [r["run_id"] for r in rows])
    assert len(subflows) == 4 and all(r.flow_id == subflows[0].flow_id for r in subflows)
    assert all(any("gpu" in t for t in tags[r.id]) for r in subflows if r.state.is_completed())
    spans = [(r.start_time, r.end_time) for r in subflows]
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) == 2  # max_parallel 2, and it was used
    artifacts = _artifacts(state.state_details.flow_run_id)
    table = artifacts["sweep-two-by-two-results"]
    table = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["status"] for r in table) == ["failed", "ok", "ok", "ok"]
    summary = artifacts["sweep-two-by-two-summary"]
    assert summary == Path(sweep["output"], "summary.md").read_text() == first["summary"]
    assert "- runs: 4: 3 ok, 1 failed, 0 skipped" in summary and "## Failed runs" in summary

    again = finetune_sweep(sweep=sweep, checkpoint=f"latest:{tmp_path / 'pre'}")
    assert (again["ok"], again["failed"], again["skipped"]) == (0, 1, 3)  # only the failed run ran again
    rows = read_results(sweep["output"]).to_pylist()
    second = [r for r in rows if r["sweep_id"] == again["sweep_id"]]
    assert sorted(r["status"] for r in second) == ["failed", "skipped", "skipped", "skipped"]
    assert {r["output"] for r in second if r["status"] == "skipped"} == {
        r["output"] for r in rows[:4] if r["status"] == "ok"}
    assert f"- previous sweep: {first['sweep_id']}" in again["summary"]

    # the CLI: a plan first (nothing runs), then the sweep; a failed run is exit status 1
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vimpac_cli", "sweep", str(sweep_file), "--checkpoint", f"latest:{tmp_path / 'pre'}"]
    check = subprocess.run([*cmd, "--check"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.splitlines()[-1] == "4 run(s): 1 to do, 3 already done"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "- runs: 4: 0 ok, 1 failed, 3 skipped" in done.stdout and "1 run(s) failed" in done.stderr
    assert read_results(sweep["output"]).num_rows == 12


def test_cli_bad_sweep_and_missing_checkpoint_fail_before_any_work(prefect_server, tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "grid": {"lr": [1e-3, -1.0]},
                                          "tasks": {"a": {"data": str(tmp_path)}}}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vimpac_cli", "sweep", str(sweep_file)]
    bad = subprocess.run([*cmd, "--checkpoint", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "lr" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    sweep_file.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "tasks": {"a": {"data": str(tmp_path)}}}))
    none = subprocess.run([*cmd, "--checkpoint", f"latest:{tmp_path / 'pre'}"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert none.returncode == 2 and "no complete checkpoint" in none.stderr, none.stderr
    assert not (tmp_path / "out").exists()
