"""VimpacForClassification's start points: pre-training checkpoints, imported release snapshots,
fine-tuned models; different-shape interpolation, shape mismatch and missing-key errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench import reference_model as ref
from tests.finetune.helpers import finetune_flat, time_order_shards
from tests.model.test_convert import _released_model, _write_snapshot
from tests.train.helpers import tiny_config
from vimpac_core.errors import CheckpointError, ConfigError
from vimpac_core.model import VimpacForPreTraining, interpolate_positional_embedding, load_original_checkpoint
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.finetune import setup_run
from vimpac_core.train.finetune_config import FinetuneConfig
from vimpac_core.train.pretrain import train as pretrain
from vimpac_core.train.resolve import resolve_finetune

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
HEIGHT = "backbone.positional_embedding.height_pos_embedding"
TEMPORAL = "backbone.positional_embedding.temporal_pos_embedding"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    data = time_order_shards(root / "d32", 4, seed=0)
    pretrain(tiny_config(data, str(root / "pre"), clip_len=4, epochs=1, max_steps=2), CPU)
    return root, data, root / "pre" / "checkpoints" / "final"


def _config(data, output, **over) -> FinetuneConfig:
    return resolve_finetune(FinetuneConfig.from_flat(finetune_flat(data, str(output), **over)))


def test_pretraining_checkpoint_gives_backbone_vocab_and_a_zero_classifier(pretrained):
    root, data, final = pretrained
    cfg = _config(data, root / "ft", load=str(final))
    assert cfg.model.vocab_size == 64 and cfg.model.num_labels == 2 and cfg.model.layers == 1  # from checkpoint/data
    run = setup_run(cfg, CPU)
    saved = load_file(str(final / "model.safetensors"))
    state = run.model.state_dict()
    backbone = [k for k in saved if k.startswith("backbone.")]
    assert backbone and all(torch.equal(state[k], saved[k]) for k in backbone)
    assert not state["cls_fc.weight"].any() and not state["cls_fc.bias"].any()
    assert not any(k.startswith(("mlm_head.", "cls_head.")) for k in state)


def test_different_shape_interpolates_positions(pretrained, tmp_path):
    root, _, final = pretrained
    data64 = time_order_shards(tmp_path / "d64", 2, seed=1, views=("s64-center-noflip",))
    _regrid(tmp_path / "d64")
    cfg = _config(data64, tmp_path / "ft", load=str(final), frame_size=64, clip_len=2, different_shape=True)
    run = setup_run(cfg, CPU)
    saved = load_file(str(final / "model.safetensors"))
    state = run.model.state_dict()
    assert torch.allclose(state[HEIGHT], interpolate_positional_embedding(saved[HEIGHT], (4,), (8,)))
    assert torch.allclose(state[TEMPORAL], interpolate_positional_embedding(saved[TEMPORAL], (4,), (2,)))


def _regrid(folder):
    """Rewrite the 4x4 shards of ``folder`` as 8x8 grids (each token repeated 2x2)."""
    import pyarrow.parquet as pq

    from vimpac_core.shards.synthetic import write_token_shards

    rows = []
    for path in sorted((folder / "shards").glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
        path.unlink()
    for row in rows:
        grid = torch.tensor(row["tokens"]).reshape(row["num_frames"], 4, 4)
        row.update(tokens=grid.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(-1).tolist(), grid_h=8, grid_w=8)
    write_token_shards(str(folder), rows)


def test_shape_mismatch_without_different_shape_names_both_shapes(pretrained, tmp_path):
    root, data, final = pretrained
    with pytest.raises(CheckpointError, match=r"clip_len 4, frame_size 32 \(4x4x4 tokens\).*clip_len 2, frame_size 32"):
        _config(data, tmp_path / "ft", load=str(final), clip_len=2)
    with pytest.raises(ConfigError, match="hid_dim: the run asks 256 but the load checkpoint was saved with 128"):
        _config(data, tmp_path / "ft", load=str(final), hid_dim=256)


def test_missing_backbone_key_is_an_error(pretrained, tmp_path):
    root, data, final = pretrained
    broken = tmp_path / "broken"
    VimpacForPreTraining.from_pretrained(final).save_pretrained(broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights["backbone.transformer.resblocks.0.mlp.c_fc.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    cfg = _config(data, tmp_path / "ft", load=str(broken))
    with pytest.raises(CheckpointError, match=r"missing keys \['backbone.transformer.resblocks.0.mlp.c_fc.weight'\]"):
        setup_run(cfg, CPU)


def test_imported_release_snapshot_and_finetuned_checkpoints_load(pretrained, tmp_path):
    _, _, _ = pretrained
    f = ref.flags(clip_len=4, vocab_size=64)
    released = _released_model(f)
    snapshot = _write_snapshot(tmp_path / "snap", released.state_dict(), f)
    imported = load_original_checkpoint(snapshot).save_pretrained(tmp_path / "imported")
    data = time_order_shards(tmp_path / "d", 2, seed=2)
    cfg = _config(data, tmp_path / "ft", load=str(imported), epochs=1)
    run = setup_run(cfg, CPU)
    ref_state = released.state_dict()
    key = "backbone.transformer.resblocks.0.mlp.c_fc.weight"
    assert torch.equal(run.model.state_dict()[key], ref_state[key])
    # A fine-tuned model (cls_fc trained) starts another run with its classifier.
    with torch.no_grad():
        run.model.cls_fc.weight.fill_(0.5)
    tuned = run.model.save_pretrained(tmp_path / "tuned")
    again = setup_run(_config(data, tmp_path / "ft2", load=str(tuned)), CPU)
    assert torch.equal(again.model.cls_fc.weight, torch.full_like(again.model.cls_fc.weight, 0.5))
    with pytest.raises(CheckpointError, match=r"parameter cls_fc.bias: checkpoint shape \(2,\) != model shape \(5,\)"):
        setup_run(_config(data, tmp_path / "ft3", load=str(tuned), num_labels=5), CPU)


def test_test_labels_beyond_the_model_classes_fail_before_work(pretrained, tmp_path):
    root, data, final = pretrained
    from tests.finetune.helpers import time_order_rows
    from vimpac_core.shards.synthetic import write_token_shards

    rows = time_order_rows(2, seed=5, prefix="x")
    rows[0]["label"] = 4  # a class the training data does not have
    write_token_shards(str(tmp_path / "test"), rows)
    with pytest.raises(ConfigError, match=r"test_data: .* has label 4, but the model has 2 classes"):
        _config(data, tmp_path / "ft", load=str(final), test_data=str(tmp_path / "test"))


def test_training_videos_without_a_train_view_are_left_out_and_counted(pretrained, tmp_path):
    from tests.finetune.helpers import VIEWS, time_order_rows
    from vimpac_core.shards.synthetic import write_token_shards
    from vimpac_core.train.finetune import train as finetune

    root, _, final = pretrained
    rows = time_order_rows(4, seed=6, prefix="y") + time_order_rows(1, seed=7, prefix="z", views=VIEWS[1:])
    write_token_shards(str(tmp_path / "d"), rows)
    cfg = _config(str(tmp_path / "d"), tmp_path / "ft", load=str(final), train_views=[VIEWS[0]], epochs=1,
                  test_views=[VIEWS[0]])
    metrics = finetune(cfg, CPU)
    assert metrics["train_left_out"] == 2 and metrics["step"] == 2  # the z pair has only the other view: 8 videos, 2 x 4
    assert metrics["test_top1"] >= 0.0 and metrics["eval_epoch"] == 1
