"""finetune, evaluate and sweep refuse an output folder that holds files they did not write (one
line, exit 2, before any work), and the demo accepts a rerun over its own earlier outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.sweep.helpers import TINY, labelled_shards, save_tiny_checkpoint
from vimpac_cli.demo import DEMO_OUTPUT
from vimpac_core.model import VimpacForClassification
from vimpac_core.storage import check_output_dir

from .conftest import last_line, vimpac

REFUSAL = ("vimpac {cmd}: error: {out} holds files {cmd} did not write (notes.txt); give a new or empty folder, "
           "or pass --overwrite to write {cmd}'s files beside them (nothing else there is touched)")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_outputs")
    data = Path(labelled_shards(root / "tokens", 8, seed=0))
    checkpoint = save_tiny_checkpoint(root / "pre" / "checkpoints" / "final", step=1)
    classifier = VimpacForClassification(TINY.model_copy(update={"num_labels": 2})).save_pretrained(root / "clf")
    preset = root / "ft.yaml"
    preset.write_text(yaml.safe_dump({"frame_size": 32, "clip_len": 2, "frame_rate": 1, "bs_per_gpu": 2,
                                      "num_workers": 0, "epochs": 1, "device": "cpu", "nproc_per_node": 1}))
    mine = root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    return {"root": root, "data": data, "checkpoint": checkpoint, "classifier": classifier, "preset": preset,
            "mine": mine}


def test_finetune_refuses_a_folder_with_other_files(world):
    args = ["finetune", str(world["preset"]), "--data", str(world["data"]), "--load", str(world["checkpoint"]),
            "--output", str(world["mine"]), "--check"]
    proc = vimpac(*args)
    assert proc.returncode == 2 and last_line(proc.stderr) == REFUSAL.format(cmd="finetune", out=world["mine"])
    assert vimpac(*args, "--overwrite").returncode == 0  # writes beside the user's files (here: checks only)
    assert [p.name for p in world["mine"].iterdir()] == ["notes.txt"]


def test_evaluate_refuses_a_folder_with_other_files(world):
    proc = vimpac("evaluate", str(world["classifier"]), "--data", str(world["data"]), "--output", str(world["mine"]),
                  "--check")
    assert proc.returncode == 2 and last_line(proc.stderr) == REFUSAL.format(cmd="evaluate", out=world["mine"])


def test_sweep_refuses_a_folder_with_other_files(world):
    sweep = world["root"] / "sweep.yaml"
    sweep.write_text(json.dumps({"output": str(world["mine"]), "checkpoint": str(world["checkpoint"]),
                                 "base": yaml.safe_load(world["preset"].read_text()),
                                 "grid": {"seed": [0, 1]}, "tasks": {"t": {"data": str(world["data"])}}}))
    proc = vimpac("sweep", str(sweep), "--check")
    assert proc.returncode == 2 and last_line(proc.stderr) == REFUSAL.format(cmd="sweep", out=world["mine"])
    assert vimpac("sweep", str(sweep), "--check", "--overwrite").returncode == 0


def test_demo_accepts_its_own_earlier_outputs_and_refuses_others(tmp_path):
    for name in ("data", "tokenizer", "tokens32", "pretrain", "tasks", "reports", "sweeps"):
        (tmp_path / name).mkdir()
    assert sorted(check_output_dir(str(tmp_path), DEMO_OUTPUT, overwrite=False, owner="demo")) == [
        "data", "pretrain", "reports", "sweeps", "tasks", "tokenizer", "tokens32"]
    (tmp_path / "notes.txt").write_text("mine")
    proc = vimpac("demo", "--out", str(tmp_path))
    assert proc.returncode == 2 and last_line(proc.stderr) == REFUSAL.format(cmd="demo", out=tmp_path)
