"""Fine-tuning and evaluation under real torchrun with 2 gloo ranks on real shards."""

from __future__ import annotations

import os
import signal

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from tests.finetune.helpers import finetune_flat, time_order_rows, time_order_shards
from tests.train.helpers import rank_processes, tiny_config
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.shards.synthetic import write_token_shards
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.finetune_config import FinetuneConfig
from vimpac_core.train.launch import (
    TrainingFailed,
    TrainingInterrupted,
    kill_tree,
    launch_stage,
    run_streaming,
    torchrun_command,
    write_stage_config,
)
from vimpac_core.train.pretrain import train as pretrain
from vimpac_core.train.resolve import resolve_finetune

pytestmark = pytest.mark.slow
CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny backbone pre-trained briefly on the training videos (4 steps)."""
    root = tmp_path_factory.mktemp("ft-ddp")
    train = time_order_shards(root / "train", 16, seed=0)
    pretrain(tiny_config(train, str(root / "pre"), clip_len=4, epochs=1, max_steps=4, bs_per_gpu=4), CPU)
    # 21 test videos over uneven shards (5, 5, 5, 5, 1 rows): ranks and batches do not divide them.
    rows = time_order_rows(11, seed=1, prefix="t")[:21]
    write_token_shards(str(root / "test"), rows, rows_per_shard=5, row_group_size=2)
    return root, train, str(root / "test"), str(root / "pre" / "checkpoints" / "final")


def _config(root, train, test, load, name, **over) -> FinetuneConfig:
    flat = finetune_flat(train, str(root / name), load=load, test_data=test, nproc_per_node=2, bs_per_gpu=4, **over)
    return resolve_finetune(FinetuneConfig.from_flat(flat))


def test_learns_time_order_and_evaluates_every_video_once(backbone):
    """Forward vs backward copies of the same frames: only time order tells the classes apart."""
    root, train, test, load = backbone
    cfg = _config(root, train, test, load, "learn", epochs=5, eval_per_epochs=100)
    metrics = launch_stage(cfg, on_line=lambda _: None, timeout_s=400)
    assert metrics["world_size"] == 2 and metrics["step"] == 5 * 4  # 32 videos / (2 ranks x 4) per step
    assert metrics["test_top1"] >= 0.85, metrics  # chance is 0.5
    evaluation = cfg.eval_config(metrics["checkpoint"], str(root / "eval"), [1, 2])
    summary = launch_stage(evaluation, on_line=lambda _: None, timeout_s=300)
    ids = [v.video_id for v in ShardIndex.build(test).videos]
    for clips in ("1", "2"):
        table = pq.read_table(summary["clips"][clips]["predictions"]).to_pylist()
        assert sorted(r["video_id"] for r in table) == sorted(ids) and len(ids) == 21  # each exactly once
        assert summary["clips"][clips]["top1"] >= 0.85
        labels = {v.video_id: v.label for v in ShardIndex.build(test).videos}
        assert all(r["label"] == labels[r["video_id"]] for r in table)


def _weights(output) -> dict[str, torch.Tensor]:
    final = output / "checkpoints" / "final"
    return {**load_file(str(final / "model.safetensors")),
            **{f"adam/{k}": v for k, v in load_file(str(final / "optimizer.safetensors")).items()}}


COMMON = dict(epochs=3, dropout=0.1, eval_per_epochs=1, num_workers=1)


@pytest.fixture(scope="module")
def reference(backbone):
    """An uninterrupted 2-rank run: 3 epochs of 4 steps, evaluated after each epoch."""
    root, train, test, load = backbone
    metrics = launch_stage(_config(root, train, test, load, "ref", **COMMON), on_line=lambda _: None, timeout_s=400)
    assert metrics["step"] == 12
    return metrics, _weights(root / "ref")


def test_killed_finetune_resumes_to_identical_weights(backbone, reference):
    root, train, test, load = backbone
    common = {**COMMON, "save_every": 3}

    killed = _config(root, train, test, load, "run", **common)
    procs = []

    def kill_at_step_7(line: str) -> None:  # after step 6's checkpoint (mid epoch 1), evaluations in between
        if line.startswith("[finetune] epoch 1 step 7:"):
            kill_tree(procs[0].pid, signal.SIGKILL)

    with pytest.raises(TrainingFailed, match="code -9"):
        run_streaming(torchrun_command(write_stage_config(killed), 2, killed.ENTRY), on_line=kill_at_step_7,
                      on_start=procs.append, timeout_s=400)
    latest = (root / "run" / "checkpoints" / "latest").read_text().strip()
    assert latest.startswith("step_") and int(latest[5:]) < 12
    resumed = launch_stage(killed.model_copy(update={"resume": True}), on_line=lambda _: None, timeout_s=400)
    assert resumed["step"] == 12 and resumed["test_top1"] == reference[0]["test_top1"]
    _assert_same(reference[1], _weights(root / "run"))


def _assert_same(ref: dict, got: dict) -> None:
    different = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert ref.keys() == got.keys() and not different, f"resumed run differs in {different[:5]}"


def test_sigterm_to_the_ranks_saves_the_step_and_a_retry_resumes_it(backbone, reference):
    """Preemption: SIGTERM to every rank (as a cluster sends before reclaiming a machine) stops
    them at the next step with a checkpoint of it, although save_every is off; the launch is an
    interruption (retriable) whose resume point is that checkpoint, and resuming ends identical."""
    root, train, test, load = backbone
    cfg = _config(root, train, test, load, "preempt", **COMMON)
    procs = []

    def sigterm_ranks_at_step_6(line: str) -> None:
        if line.startswith("[finetune] epoch 1 step 6:") and not procs:
            procs.extend(rank_processes(os.getpid(), "vimpac_core.train.finetune"))
            for proc in procs:
                proc.send_signal(signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="Preempted: SIGTERM: stopped after step") as interrupted:
        launch_stage(cfg, on_line=sigterm_ranks_at_step_6, timeout_s=400)
    assert len(procs) >= 2  # both ranks (and their DataLoader workers)
    point = interrupted.value.resume_from
    assert point is not None and 6 <= int(point.name[5:]) < 12  # the step the ranks agreed to stop at
    resumed = launch_stage(cfg.model_copy(update={"resume": True}), on_line=lambda _: None, timeout_s=400)
    assert resumed["step"] == 12
    _assert_same(reference[1], _weights(root / "preempt"))
