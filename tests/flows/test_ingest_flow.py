"""The ingest and rerun_failed flows under a real Prefect server: caching across runs,
rerun of only failed videos, artifacts, and the Dask runner."""

from __future__ import annotations

import asyncio
import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.ingest.conftest import write_csv
from vimpac_core.config import DownloadConfig, IngestConfig
from vimpac_core.ingest import load_plan
from vimpac_core.shards.manifest import read_all_manifests
from vimpac_core.shards.writer import read_shard
from vimpac_flows.ingest import run_ingest, run_rerun_failed

pytestmark = pytest.mark.slow


def _config(lst, out, tokenizer, **kw) -> IngestConfig:
    base = dict(inputs=str(lst), out=str(out), tokenizer=tokenizer, fps=4.0, frame_size=32, batch_size=8,
                decode_window=4, shard_size=2, max_workers=2, task_retries=1,
                download=DownloadConfig(retries=1, backoff_s=0.01, timeout_s=5))
    return IngestConfig(**{**base, **kw})


async def _task_states(flow_run_id) -> dict[str, list[str]]:
    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states: dict[str, list[str]] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        states.setdefault(name, []).append(run.state.name)
        if name in ("tokenize-shard", "retry-shard"):
            assert "gpu" in run.tags, run.tags
    return states


async def _artifacts(flow_run_id) -> list:
    async with get_client() as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def _all_rows(out: str) -> list[tuple[str, str]]:
    keys = []
    for shard in load_plan(out).shards:
        keys += [(r["video_id"], r["view"]) for r in read_shard(out, shard.shard_id).select(["video_id", "view"]).to_pylist()]
    return keys


def test_ingest_caches_across_runs_and_rerun_failed_retries_only_failed(prefect_server, tmp_path, clips,
                                                                        tiny_tokenizer, http_server):
    base, handler = http_server
    flaky = f"/flaky/{clips[3].name}"
    handler.flaky_left[flaky] = 6  # fails the download retries and the task (it is per video, not fatal)
    rows = [{"uri": str(c), "label": i % 2} for i, c in enumerate(clips[:3])] + [{"uri": base + flaky, "label": 1},
                                                                               {"uri": f"{base}/gone.mp4", "label": 0}]
    cfg = _config(write_csv(tmp_path / "l.csv", rows), tmp_path / "out", tiny_tokenizer)

    first = run_ingest(cfg)
    assert (first["shards"], first["ok"], first["failed"], first["skipped_shards"]) == (3, 3, 2, 0)
    flow_runs = asyncio.run(_recent_flow_runs("ingest"))
    states = asyncio.run(_task_states(flow_runs[0].id))
    assert states["tokenize-shard"] == ["Completed"] * 3
    artifacts = {a.type: a for a in asyncio.run(_artifacts(flow_runs[0].id))}
    assert sorted(artifacts) == ["progress", "table"]
    assert float(artifacts["progress"].data) == 100.0
    table = artifacts["table"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["shard_id"] for r in table) == sorted(s.shard_id for s in load_plan(cfg.out).shards)
    assert sum(r["ok"] for r in table) == 3 and sum(r["failed"] for r in table) == 2

    second = run_ingest(cfg)  # a brand-new flow run: the manifests say every shard is done
    assert (second["ok"], second["skipped_shards"], second["extracted_videos"]) == (3, 3, 0)
    flow_runs = asyncio.run(_recent_flow_runs("ingest"))
    assert asyncio.run(_task_states(flow_runs[0].id))["tokenize-shard"] == ["Completed"] * 3
    third = run_ingest(cfg.model_copy(update={"max_workers": 1, "batch_size": 4}))  # runtime knobs: same key
    assert third == second
    flow_runs = asyncio.run(_recent_flow_runs("ingest"))
    assert asyncio.run(_task_states(flow_runs[0].id))["tokenize-shard"] == ["Cached"] * 3

    hits_before = handler.hits.get(flaky, 0)
    handler.flaky_left[flaky] = 0  # the server recovered
    rerun = run_rerun_failed(cfg.out)
    assert (rerun["shards"], rerun["extracted_videos"], rerun["failed"]) == (1, 1, 0)  # the 404 (permanent) is left
    assert handler.hits[flaky] == hits_before + 1
    attempts = [(r["video_id"], r["attempts"], r["status"]) for r in read_all_manifests(cfg.out).to_pylist()]
    assert [a for a in attempts if a[0] == "clip3"] == [("clip3", 1, "failed"), ("clip3", 2, "ok")]
    manifest = {r["video_id"]: r for r in read_all_manifests(cfg.out).to_pylist()}  # last row = latest attempt
    assert manifest["clip3"]["status"] == "ok" and manifest["clip3"]["attempts"] == 2
    assert manifest["gone"]["attempts"] == 1 and manifest["clip0"]["attempts"] == 1
    keys = _all_rows(cfg.out)
    assert sorted(keys) == sorted(set(keys)) and {k[0] for k in keys} == {"clip0", "clip1", "clip2", "clip3"}

    again = run_rerun_failed(cfg.out)  # nothing retriable left: nothing runs
    assert again["shards"] == 0
    fourth = run_ingest(cfg)  # the retry changed a manifest: its figures are today's, not the cached ones
    assert (fourth["ok"], fourth["failed"], fourth["skipped_shards"]) == (4, 1, 3)
    assert read_all_manifests(cfg.out).num_rows == len(attempts)  # skipping added no attempt

    plan = load_plan(cfg.out)  # a shard's files deleted while its cached result is kept: redone, not trusted
    gone = plan.shards[0].shard_id
    for sub in ("shards", "manifest"):
        (tmp_path / "out" / sub / f"{gone}.parquet").unlink()
    fifth = run_ingest(cfg)
    assert (fifth["ok"], fifth["skipped_shards"], fifth["extracted_videos"]) == (4, 2, 2)
    assert read_shard(cfg.out, gone).num_rows == 2


async def _recent_flow_runs(name: str):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                                           sort=FlowRunSort.START_TIME_DESC, limit=5)


def test_dask_local_cluster_runner(prefect_server, tmp_path, clips, tiny_tokenizer):
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(c)} for c in clips[:2]])
    cfg = _config(lst, tmp_path / "out", tiny_tokenizer, task_runner="dask", max_workers=1, shard_size=1)
    summary = run_ingest(cfg)
    assert (summary["shards"], summary["ok"], summary["rows"]) == (2, 2, 2)


def test_only_transient_errors_are_retried(prefect_server):
    from prefect import flow, task

    from vimpac_core.errors import DownloadError, TransientDownloadError
    from vimpac_tasks.retry import only_transient

    calls: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=only_transient, persist_result=False)
    def fails(kind: str) -> None:
        calls.append(kind)
        raise (TransientDownloadError if kind == "transient" else DownloadError)(f"{kind} failure")

    @flow
    def both() -> list[str]:
        for kind in ("transient", "permanent"):
            state = fails(kind, return_state=True)
            assert state.is_failed()
        return calls

    assert both() == ["transient"] * 3 + ["permanent"]


def test_the_shipped_tasks_use_that_retry_rule():
    from vimpac_tasks.ingest import prepare_ingest, retry_shard, tokenize_shard
    from vimpac_tasks.retry import only_transient
    from vimpac_tasks.tokenizer import sample_frames_task, train_task

    for task_ in (prepare_ingest, tokenize_shard, retry_shard, sample_frames_task, train_task):
        assert task_.retry_condition_fn is only_transient and task_.retries >= 1, task_.name
    assert {"gpu"} <= tokenize_shard.tags and {"gpu"} <= retry_shard.tags
