"""Ctrl-C and SIGTERM during `vimpac ingest`, as a terminal delivers them: to the whole process
group of a real CLI process that started its own temporary Prefect server.

Before the fix the server died with the command, which then spun on connection errors, and the
video whose decoder the signal killed was committed as a permanent failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from .conftest import cli_env, clip_list, last_line, short_clips, vimpac

pytestmark = pytest.mark.slow
STOPPED = re.compile(r"^vimpac ingest: stopped by (Ctrl-C \(SIGINT\)|SIGTERM); (\d+) committed shard\(s\) in (\S+) "
                     r"are kept, the shard in flight was not committed; run the same command again to finish$")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("short")
    clips_ = short_clips(folder / "clips", 15)
    from .conftest import make_vqvae

    return clip_list(folder / "list.csv", clips_), make_vqvae(folder / "tok")


def _ingest_args(lst: Path, out: Path, tokenizer: str) -> list[str]:
    return ["ingest", str(lst), "--out", str(out), "--fps", "16", "--frame-size", "64", "--tokenizer", tokenizer,
            "--shard-size", "3", "--max-workers", "1", "--batch-size", "16"]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """The CLI in a session of its own, with no Prefect API configured: it starts a temporary server."""
    env = cli_env()
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "vimpac_cli", *args], start_new_session=True, env=env,
                            stdout=open(tmp_path / "stdout", "w"), stderr=open(tmp_path / "stderr", "w"))
    proc.stderr_file = tmp_path / "stderr"  # what _stop_when shows when the command ends too early
    return proc


def _committed(out: Path) -> bool:
    return (out / "manifest").is_dir() and any((out / "manifest").glob("*.parquet"))


def _stop_when(proc: subprocess.Popen, ready: Callable[[], bool], *signums: int, timeout_s: float = 240,
               wait_s: float = 60) -> tuple[int, list[psutil.Process]]:
    """Once ``ready()`` (the command still running), send ``signums`` one after the other to its
    process group, as a terminal does; -> (its exit code, the processes it had started by then).
    Whatever happens, the command does not outlive the test."""
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            assert proc.poll() is None, f"the command ended early ({proc.returncode}): {proc.stderr_file.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.05)
        helpers = _descendants(proc.pid)  # e.g. the temporary server, decoder workers, torchrun
        for number, signum in enumerate(signums):
            if number:
                time.sleep(0.3)  # two signals at once would be delivered as one
            os.killpg(proc.pid, signum)
        return proc.wait(timeout=wait_s), helpers
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _all_gone(procs: list[psutil.Process], timeout_s: float = 15) -> list[int]:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return [p.pid for p in alive]


def _manifests(out: Path) -> dict[str, list[dict]]:
    return {p.stem: pq.read_table(p).to_pylist() for p in sorted((out / "manifest").glob("*.parquet"))}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_mid_ingest_keeps_committed_shards_and_a_rerun_completes(sig, tmp_path, clip_folder,
                                                                        prefect_server):
    lst, tokenizer = clip_folder
    out = tmp_path / "out"
    args = _ingest_args(lst, out, tokenizer)
    code, helpers = _stop_when(_start(args, tmp_path), lambda: _committed(out), sig)
    stderr = (tmp_path / "stderr").read_text()
    assert code == 128 + sig, stderr[-3000:]
    match = STOPPED.match(last_line(stderr))
    assert match, last_line(stderr)
    assert sum(bool(STOPPED.match(line)) for line in stderr.splitlines()) == 1
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr[-3000:]
    assert not _all_gone(helpers), "a helper process outlived the command"

    kept = _manifests(out)
    assert int(match.group(2)) == len(kept) >= 1
    assert all(row["status"] == "ok" for rows in kept.values() for row in rows)  # no video blamed for the signal
    committed = set(kept)
    assert {p.stem for p in (out / "shards").glob("*.parquet")} >= committed

    rerun = vimpac(*args)  # the same command, as the line says
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = _manifests(out)
    assert len(done) == 5 and all(row["status"] == "ok" for rows in done.values() for row in rows)
    for name in committed:  # kept as they were: not redone
        assert [r["attempts"] for r in done[name]] == [1, 1, 1]
    ids = [v for p in sorted((out / "shards").glob("*.parquet")) for v in pq.read_table(p).column("video_id").to_pylist()]
    assert sorted(ids) == sorted(f"c{i:02d}" for i in range(15))  # every good video exactly once


def test_a_second_ctrl_c_stops_at_once(tmp_path, clip_folder):
    lst, tokenizer = clip_folder
    out = tmp_path / "out"
    code, helpers = _stop_when(_start(_ingest_args(lst, out, tokenizer), tmp_path), lambda: _committed(out),
                               signal.SIGINT, signal.SIGINT, wait_s=30)
    assert code == 130
    assert not _all_gone(helpers), "a helper process outlived the command"
    assert all(row["status"] == "ok" for rows in _manifests(out).values() for row in rows)


TOKENIZER_STOPPED = re.compile(r"^vimpac train-tokenizer: stopped by Ctrl-C \(SIGINT\); the checkpoint (\S+) is kept; "
                               r"run the same command with --resume to continue from it$")


def test_ctrl_c_during_tokenizer_training_keeps_a_checkpoint_to_resume(tmp_path, clip_folder):
    from vimpac_core.tokenizers.train import TRAINER_STATE
    from vimpac_core.tokenizers.vqvae import VQVAE

    lst, _ = clip_folder
    out = tmp_path / "tok"
    args = ["train-tokenizer", str(lst), "--out", str(out), "--steps", "100000", "--frame-size", "32",
            "--codebook-size", "16", "--channels", "4", "8", "8", "--embed-dim", "4", "--num-res-blocks", "0",
            "--batch-size", "4", "--checkpoint-every", "20", "--log-every", "20"]
    code, _ = _stop_when(_start(args, tmp_path), lambda: (out / "checkpoint" / TRAINER_STATE).is_file(), signal.SIGINT)
    stderr = (tmp_path / "stderr").read_text()
    assert code == 130, stderr[-3000:]
    assert TOKENIZER_STOPPED.match(last_line(stderr)), last_line(stderr)
    VQVAE.from_pretrained(out / "checkpoint")  # the kept checkpoint is whole


PRETRAIN_STOPPED = re.compile(r"^vimpac pretrain: stopped by SIGTERM; the checkpoints up to (\S+) are kept; "
                              r"run the same command with --resume true to continue$")


def test_sigterm_during_pretraining_stops_torchrun_and_keeps_checkpoints(tmp_path, clip_folder):
    from vimpac_core.config import IngestConfig
    from vimpac_core.ingest import get_tokenizer, prepare_output, process_shard
    from vimpac_core.train.checkpoint import latest_checkpoint

    lst, tokenizer = clip_folder
    config = IngestConfig(inputs=str(lst), out=str(tmp_path / "tokens"), tokenizer=tokenizer, fps=4, frame_size=32,
                          shard_size=8, batch_size=16)
    tok = get_tokenizer(config.tokenizer, config.device, config.batch_size)
    for shard in prepare_output(config, tok.tokenizer_id).shards:
        process_shard(shard, config, tok)
    out = tmp_path / "run"
    proc = _start(["pretrain", "tiny", "--data", config.out, "--stage2.data", config.out, "--stage2.frame-size", "32",
                   "--vocab-size", "auto", "--output", str(out), "--epochs", "100000", "--schedule-epochs", "100000"],
                  tmp_path)
    code, helpers = _stop_when(proc, lambda: latest_checkpoint(out / "stage1" / "checkpoints") is not None,
                               signal.SIGTERM, timeout_s=300)
    stderr = (tmp_path / "stderr").read_text()
    assert code == 143, stderr[-3000:]
    match = PRETRAIN_STOPPED.match(last_line(stderr))
    assert match, last_line(stderr)
    assert Path(match.group(1)).is_dir()
    assert not _all_gone(helpers), "a helper process (server, torchrun, rank) outlived the command"
