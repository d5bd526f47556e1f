"""configs/finetune/: every preset uses only FinetuneConfig's keys, holds the release's / paper's
values for its dataset and setting, names the views ingest makes, and its header's
`vimpac make-list` / `vimpac ingest` commands parse and produce exactly the data it reads."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from vimpac_cli import build_parser
from vimpac_cli.ingest import config_from_args
from vimpac_core.annotations import DATASETS
from vimpac_core.train.config import load_yaml
from vimpac_core.train.finetune_config import FinetuneConfig
from vimpac_core.video import view_set

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "finetune"
# The flat FinetuneConfig keys agreed with the trainer (model fields mixed in; vocab_size comes
# from the checkpoint).
KEYS = {
    "data", "split", "test_data", "test_split", "val_data", "val_split", "train_views", "test_views", "load",
    "different_shape", "dataset", "frame_rate", "num_test_clips", "last_test_clips", "eval_per_epochs", "epochs",
    "lr", "beta1", "beta2", "eps", "weight_decay", "warm_up", "lr_scheduler", "bs_per_gpu", "batch_size",
    "gradient_accumulation", "grad_clip", "amp", "seed", "nproc_per_node", "device", "num_workers", "output",
    "resume", "save_every", "log_every", "label_smoothing", "clip_len", "frame_size", "dropout", "last_dropout",
    "num_labels",
}
EPOCHS = {"ssv2": 22, "diving48": 50, "ucf101": 50, "hmdb51": 50, "kinetics400": 30}
SMALL_EVAL_EVERY = {"ssv2": 8, "diving48": 5, "ucf101": 5, "hmdb51": 5, "kinetics400": 5}
FINAL_FPS = {"ssv2": 4, "diving48": 4, "ucf101": 2, "hmdb51": 4, "kinetics400": 2}
EXTRACTION_FPS = 16
NAMES = [f"{d}_{s}" for d in EPOCHS for s in ("small", "large", "final")]


def _preset(name: str) -> dict:
    return load_yaml(PRESETS / f"{name}.yaml")


def test_the_folder_holds_these_presets_only():
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted([*NAMES, "generic"])


@pytest.mark.parametrize("name", [*NAMES, "generic"])
def test_keys_are_finetune_config_fields(name):
    unknown = set(_preset(name)) - KEYS
    assert not unknown, f"{name}: {sorted(unknown)} are not FinetuneConfig fields"


@pytest.mark.parametrize("name", [*NAMES, "generic"])
def test_every_preset_validates_as_a_finetune_config(name, tmp_path):
    flat = {**_preset(name), "data": str(tmp_path / "data"), "output": str(tmp_path / "out"),
            "load": str(tmp_path / "checkpoint")}
    config = FinetuneConfig.from_flat(flat)
    assert config.accumulation_steps() == 128 // (config.bs_per_gpu * config.nproc_per_node)
    assert config.model.num_labels == flat.get("num_labels")  # generic: from the data
    assert "vocab_size" not in config.model.model_fields_set  # it comes from the checkpoint


@pytest.mark.parametrize("name", NAMES)
def test_values_follow_the_release_and_the_paper(name):
    dataset, setting = name.rsplit("_", 1)
    p = _preset(name)
    final = setting == "final"
    size = 256 if final else 128
    fps = FINAL_FPS[dataset] if final else 2
    assert (p["dataset"], p["num_labels"], p["epochs"]) == (dataset, DATASETS[dataset].num_classes, EPOCHS[dataset])
    assert (p["clip_len"], p["frame_size"], p["different_shape"]) == (10 if final else 5, size, final)
    assert p["frame_rate"] == max(EXTRACTION_FPS // fps, 1)  # the release's stride over 16-fps tokens
    assert p["lr"] == (1e-4 if setting == "small" else 5e-5)
    assert (p["bs_per_gpu"], p["batch_size"]) == (2 if size == 256 else 4, 128)
    assert p["batch_size"] % (p["bs_per_gpu"] * p["nproc_per_node"]) == 0
    assert (p["num_test_clips"], p.get("last_test_clips")) == ((10, None) if final else (1, [2, 5, 10]))
    assert p["eval_per_epochs"] == (SMALL_EVAL_EVERY[dataset] if setting == "small" else 1000)
    common = dict(warm_up=0.1, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=1.0, dropout=0.1,
                  last_dropout=0.0, lr_scheduler="linear", seed=9595)
    assert {k: p[k] for k in common} == common


@pytest.mark.parametrize("name", [*NAMES, "generic"])
def test_views_are_the_ones_ingest_makes(name):
    p = _preset(name)
    size, flip = p["frame_size"], p["dataset"] != "ssv2"
    assert p["train_views"] == [v.name for v in view_set("finetune", size, flip=flip)]
    test = [v.name for v in view_set("test", size)]
    assert p["test_views"] == ([f"s{size}-center-noflip"] if p["dataset"] == "ssv2" else test)
    assert len(p["train_views"]) == (6 if p["dataset"] == "ssv2" else 12)


def _commands(name: str) -> list[list[str]]:
    lines = (PRESETS / f"{name}.yaml").read_text().splitlines()
    return [shlex.split(line.split("$ ", 1)[1]) for line in lines if line.startswith("#   $ vimpac ")]


@pytest.mark.parametrize("name", [*NAMES, "generic"])
def test_header_commands_make_the_data_the_preset_reads(name):
    p = _preset(name)
    parser = build_parser()
    made_lists, ingests = set(), {}
    for argv in _commands(name):
        args = parser.parse_args(argv[1:])
        if args.command == "make-list":
            assert args.dataset == p["dataset"]
            if p["dataset"] in ("ucf101", "hmdb51"):
                assert args.split_id == 1  # the preset's data folder is split 1's
            made_lists.add(args.out)
        else:
            assert args.command == "ingest"
            config = config_from_args(args)
            assert (config.fps, config.frame_size) == (EXTRACTION_FPS, p["frame_size"])
            if p["dataset"] != "generic":
                assert config.inputs in made_lists and config.class_index.endswith(".classes.json")
            ingests[config.out] = {v.name for v in view_set(config.views, config.frame_size, flip=config.flip)}
    assert set(p["train_views"]) <= ingests[p["data"]]
    assert set(p["test_views"]) <= ingests[p["test_data"]]


@pytest.mark.parametrize(("name", "saved_shape"), [("ucf101_small", (5, 128)), ("ssv2_final", (5, 256))])
def test_vimpac_finetune_check_resolves_a_preset_against_a_checkpoint_and_its_data(name, saved_shape, tmp_path,
                                                                                 capsys):
    """`vimpac finetune PRESET --check` (in-process): the analysis preset loads a T5/S128 model as it is,
    the final one a T5/S256 model with clip_len 5 -> 10 (different_shape); the data has the preset's views."""
    from vimpac_cli import main
    from vimpac_core.model import VimpacConfig, VimpacForPreTraining
    from vimpac_core.shards.synthetic import token_rows, write_token_shards

    p = _preset(name)
    clip_len, size = saved_shape
    checkpoint = VimpacForPreTraining(VimpacConfig(layers=1, hid_dim=128, frame_size=size, clip_len=clip_len,
                                                   vocab_size=64, nce_proj_hid_dim=32)).save_pretrained(tmp_path / "ckpt")
    views = tuple(dict.fromkeys([*p["train_views"], *p["test_views"]]))
    write_token_shards(str(tmp_path / "data"), token_rows(3, grid=size // 8, frames=12, views=views, vocab_size=64))
    argv = ["finetune", str(PRESETS / f"{name}.yaml"), "--data", str(tmp_path / "data"), "--test-data",
            str(tmp_path / "data"), "--test-split", "train", "--load", str(checkpoint), "--output",
            str(tmp_path / "out"), "--nproc-per-node", "1", "--device", "cpu", "--amp", "none", "--check"]
    assert main(argv) == 0
    resolved = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (resolved["clip_len"], resolved["frame_size"], resolved["num_labels"]) == (
        p["clip_len"], p["frame_size"], p["num_labels"])
    assert (resolved["vocab_size"], resolved["layers"], resolved["hid_dim"]) == (64, 1, 128)  # the checkpoint's
