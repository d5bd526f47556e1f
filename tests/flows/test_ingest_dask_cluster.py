"""Ingest on a real multi-process Dask cluster (distributed.LocalCluster, 2 worker processes, 1 thread
each) reached through ``dask_address``, as a user points ingest at an existing scheduler.

- The shards equal the default thread runner's (same tokens per video and view), and each Dask
  worker process ran its own decoder worker processes.
- A worker killed with SIGKILL in the middle of a shard (while it downloads a slow video) loses
  nothing: Dask runs the shard again on a live worker, every video is committed once, and no row or
  manifest entry is duplicated.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from tests.flows.test_ingest_flow import _all_rows, _config
from tests.ingest.conftest import write_csv
from vimpac_core.ingest import load_plan
from vimpac_core.shards.manifest import read_all_manifests
from vimpac_core.shards.writer import read_shard
from vimpac_flows.ingest import run_ingest


@pytest.fixture
def dask_cluster():
    """A LocalCluster of 2 separate worker processes (nannies restart a killed one); -> (cluster, client)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        yield cluster, client


def _tokens(out: str) -> dict[tuple[str, str], list[int]]:
    rows = {}
    for shard in load_plan(out).shards:
        table = read_shard(out, shard.shard_id)
        for r in table.select(["video_id", "view", "tokens"]).to_pylist():
            rows[(r["video_id"], r["view"])] = r["tokens"]
    return rows


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


@pytest.mark.slow
def test_dask_cluster_gives_the_default_runners_shards(prefect_server, tmp_path, clips, tiny_tokenizer, dask_cluster):
    cluster, client = dask_cluster
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(c), "label": i % 2} for i, c in enumerate(clips)])
    threads = run_ingest(_config(lst, tmp_path / "threads", tiny_tokenizer, shard_size=1))
    on_dask = run_ingest(_config(lst, tmp_path / "dask", tiny_tokenizer, shard_size=1, task_runner="dask",
                                 dask_address=cluster.scheduler_address))
    assert (on_dask["shards"], on_dask["ok"], on_dask["failed"]) == (4, 4, 0)
    assert on_dask == threads
    expected = _tokens(str(tmp_path / "threads"))
    assert len(expected) == 4 and _tokens(str(tmp_path / "dask")) == expected

    from vimpac_core.video import live_worker_pids

    decoders = client.run(lambda: sorted(live_worker_pids()))  # per Dask worker: its decoder processes
    pids = _worker_pids(client)
    assert len(decoders) == 2 and all(decoders.values()), decoders  # both workers decoded
    for addr, children in decoders.items():
        assert pids[addr] != os.getpid()
        assert all(psutil.Process(c).ppid() == pids[addr] for c in children)  # started by that worker


def _downloading_worker(pids: dict[str, int], port: int) -> int | None:
    """The Dask worker process holding a TCP connection to the test's HTTP server, if any."""
    for pid in pids.values():
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == port for c in conns):
            return pid
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_shard_loses_nothing(prefect_server, tmp_path, clips, tiny_tokenizer, http_server,
                                                dask_cluster):
    cluster, client = dask_cluster
    base, handler = http_server
    handler.trickle_step = (64, 0.25)  # the slow video keeps its shard busy for seconds
    slow = f"/trickle/{clips[2].name}"
    rows = [{"uri": str(c), "label": 0} for c in clips[:2]] + [{"uri": base + slow, "label": 1},
                                                                {"uri": str(clips[3]), "label": 1}]
    cfg = _config(write_csv(tmp_path / "l.csv", rows), tmp_path / "out", tiny_tokenizer, shard_size=2,
                  task_runner="dask", dask_address=cluster.scheduler_address)
    pids = _worker_pids(client)
    port = int(base.rsplit(":", 1)[1])
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_ingest(cfg)), daemon=True)
    runner.start()

    deadline, victim = time.monotonic() + 180, None
    while victim is None and time.monotonic() < deadline:  # the shard has started once its download has
        victim = _downloading_worker(pids, port) if handler.hits.get(slow) else None
        time.sleep(0.05)
    assert victim is not None, "no Dask worker started the slow shard's download"
    assert read_all_manifests(cfg.out).num_rows in (0, 2)  # at most the other shard was committed
    os.kill(victim, signal.SIGKILL)
    handler.trickle_step = (4096, 0.0)  # the redone download is quick
    runner.join(timeout=300)
    assert not runner.is_alive(), "the ingest flow did not finish after the worker was killed"

    assert (result["shards"], result["ok"], result["failed"]) == (2, 4, 0)
    assert handler.hits[slow] == 2  # the killed attempt, then the redone shard
    assert victim not in _worker_pids(client).values()  # the nanny started a new process
    keys = _all_rows(cfg.out)
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 4  # no duplicate row
    manifest = read_all_manifests(cfg.out).to_pylist()
    assert sorted(r["video_id"] for r in manifest) == ["clip0", "clip1", "clip2", "clip3"]  # one attempt each
    assert all(r["status"] == "ok" for r in manifest)
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


def test_an_existing_cluster_needs_a_prefect_server(tmp_path, tiny_tokenizer, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from vimpac_core.errors import ConfigError
    from vimpac_flows.ingest import build_task_runner

    cfg = _config(tmp_path / "l.csv", tmp_path / "out", tiny_tokenizer, task_runner="dask",
                  dask_address="tcp://10.0.0.5:8786")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ConfigError, match=r"dask_address tcp://10.0.0.5:8786: the Dask workers need a Prefect"):
            build_task_runner(cfg)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert type(build_task_runner(cfg)).__name__ == "DaskTaskRunner"
