"""Stage 2 continues stage 1: interpolated positions and Adam moments, schedule and counters carry on."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import VOCAB, tiny_config, tiny_shards
from vimpac_core.errors import CheckpointError
from vimpac_core.model import VimpacForPreTraining, interpolate_positional_embedding
from vimpac_core.shards.synthetic import token_rows, write_token_shards
from vimpac_core.train.checkpoint import load_checkpoint
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.knn import knn_top1
from vimpac_core.train.pretrain import setup_run, train
from vimpac_core.train.trainer import make_grad_scaler, save

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
HEIGHT = "backbone.positional_embedding.height_pos_embedding"


KNN_CLASSES, KNN_PER_CLASS = 3, 4


def knn_shards(root) -> str:
    """Labelled 2-frame videos (one clip each, the kNN monitor's centre clip): the videos of a class
    share their tokens but one, so the classes are apart and their members near each other."""
    rng = torch.Generator().manual_seed(5)
    rows = token_rows(KNN_CLASSES * KNN_PER_CLASS, grid=4, frames=2, vocab_size=VOCAB, num_labels=KNN_CLASSES)
    bases = [torch.randint(0, VOCAB, (32,), generator=rng) for _ in range(KNN_CLASSES)]
    for v, row in enumerate(rows):
        codes = bases[row["label"]].clone()
        codes[v % 32] = v  # one token of its own
        row["tokens"] = codes.tolist()
    write_token_shards(str(root), rows, rows_per_shard=5, row_group_size=2)
    return str(root)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-stage")
    data32, data64 = tiny_shards(root / "d32", grid=4), tiny_shards(root / "d64", grid=8)
    cfg = tiny_config(data32, str(root / "s1"), epochs=1, schedule_epochs=2, knn_data=knn_shards(root / "knn"),
                      knn_k=3)
    metrics = train(cfg, CPU)
    return cfg, metrics, data64, root


def test_stage1_writes_metrics_tensorboard_and_knn(stage1):
    cfg, metrics, _, root = stage1
    assert metrics["step"] == 8 and metrics["epoch"] == 1
    assert json.loads((root / "s1" / "metrics.json").read_text())["checkpoint"].endswith("final")
    events = list((root / "s1" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/mask_accuracy", "train/nce_loss", "train/lr", "train/grad_norm",
            "train/clips_per_s", "knn/top1"} <= tags


def test_knn_monitor_scores_the_final_backbone_as_by_hand(stage1):
    """The monitor ran at the epoch's end on the weights saved as final: embedding every kNN video
    by hand with those weights and voting gives the figure metrics.json holds (1.0: classes apart)."""
    cfg, metrics, _, root = stage1
    recorded = json.loads((root / "s1" / "metrics.json").read_text())["knn_top1"]
    model = VimpacForPreTraining.from_pretrained(root / "s1" / "checkpoints" / "final").eval()
    rows = pq.read_table(root / "knn" / "shards", columns=["tokens", "label"]).to_pylist()
    codes = torch.tensor([row["tokens"] for row in rows]).reshape(-1, 2, 4, 4)
    labels = torch.tensor([row["label"] for row in rows])
    with torch.no_grad():
        features = model.backbone(codes.long())[0]
    by_hand = knn_top1(features, labels, k=3)
    assert recorded == metrics["knn_top1"] == pytest.approx(by_hand) == 1.0
    assert knn_top1(features, labels.sort().values, k=3) < 0.5  # labels not the videos': the figure drops


def test_stage2_resizes_weights_and_moments_and_continues_schedule(stage1):
    cfg1, metrics, data64, root = stage1
    final = root / "s1" / "checkpoints" / "final"
    cfg2 = tiny_config(data64, str(root / "s2"), frame_size=64, epochs=1, load=str(final), different_shape=True)
    run = setup_run(cfg2, CPU)
    weights, moments = load_file(str(final / "model.safetensors")), load_file(str(final / "optimizer.safetensors"))
    expected = interpolate_positional_embedding(weights[HEIGHT], (4,), (8,))
    assert torch.allclose(run.model.state_dict()[HEIGHT], expected)
    state = {n: p for g in run.optimizer.param_groups for n, p in zip(g["names"], g["params"], strict=True)}
    adam = run.optimizer.state[state[HEIGHT]]
    assert adam["exp_avg"].shape == (8, 128)
    assert torch.allclose(adam["exp_avg"], interpolate_positional_embedding(moments[f"{HEIGHT}/exp_avg"], (4,), (8,)))
    q = "backbone.transformer.resblocks.0.mlp.c_fc.weight"
    assert torch.equal(run.optimizer.state[state[q]]["exp_avg_sq"], moments[f"{q}/exp_avg_sq"])
    assert run.state.step == metrics["step"] == 8 and run.state.epoch == 1 and run.end_epoch == 2
    assert run.schedule.total_steps == 16  # stage 1's schedule: 2 epochs of 8 steps, warm-up 1
    out = train(cfg2, CPU)
    assert out["step"] == 16 and out["epoch"] == 2 and out["lr"] == pytest.approx(1e-3 / 15)


def test_shape_mismatch_without_different_shape_names_the_parameter(stage1):
    _, _, data64, root = stage1
    cfg = tiny_config(data64, str(root / "bad"), frame_size=64, load=str(root / "s1" / "checkpoints" / "final"))
    with pytest.raises(CheckpointError, match="height_pos_embedding"):
        setup_run(cfg, CPU)


def test_stage2_after_a_mid_epoch_stop_runs_all_its_epochs(stage1):
    _, _, data64, root = stage1
    data32 = str(root / "d32")
    # Stage 1 stops at max_steps inside epoch 0 (8 steps per epoch): its final checkpoint has batch > 0.
    mid = train(tiny_config(data32, str(root / "mid1"), epochs=1, max_steps=3), CPU)
    assert (mid["step"], mid["epoch"], mid["batch_in_epoch"]) == (3, 0, 3)
    cfg2 = tiny_config(data64, str(root / "mid2"), frame_size=64, epochs=2, different_shape=True,
                       load=str(root / "mid1" / "checkpoints" / "final"))
    run = setup_run(cfg2, CPU)
    assert (run.state.epoch, run.state.batch, run.stage_start_epoch) == (1, 0, 1)  # next epoch boundary
    assert run.end_epoch - run.state.epoch == 2  # both of stage 2's epochs, not epochs - 1


def test_fp16_loss_scale_is_saved_and_restored(stage1):
    """fp16 runs only on CUDA; the scaler's state is the same on CPU, so the save/restore path runs here."""
    _, _, _, root = stage1
    data32 = str(root / "d32")
    run = setup_run(tiny_config(data32, str(root / "fp16"), epochs=1), CPU)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    run.scaler.load_state_dict({**run.scaler.state_dict(), "scale": 512.0, "_growth_tracker": 11})
    folder = save(run, "step_00000000")
    loaded = load_checkpoint(folder)
    restored = make_grad_scaler("fp16", CPU.device, loaded)
    assert restored.state_dict() == run.scaler.state_dict() and restored.get_scale() == 512.0
    assert make_grad_scaler("fp16", CPU.device, None).get_scale() == 2.0**16  # a fresh run starts from the default
    assert make_grad_scaler("none", CPU.device, loaded) is None  # amp none: no scaler
