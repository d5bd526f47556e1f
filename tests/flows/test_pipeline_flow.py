"""The whole DAG: PipelineConfig checks, the `pipeline` flow with a given tokenizer (subflows,
failed videos recorded, resumable), and `vimpac demo` (the README's command) end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ingest.conftest import write_csv
from vimpac_core.errors import ConfigError
from vimpac_core.pipeline_config import PipelineConfig, load_pipeline_config
from vimpac_core.shards.manifest import read_all_manifests

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"


def _one_stage(**over) -> dict:
    flat = dict(layers=1, hid_dim=128, frame_size=32, clip_len=2, frame_rate=1, vocab_size=64, nce_proj_hid_dim=64,
                mask_blocks=2, bs_per_gpu=2, num_workers=0, epochs=1, log_every=1, device="cpu")
    return {**flat, **over}


def test_demo_config_stages_read_the_ingest_outputs(tmp_path):
    cfg = load_pipeline_config(DEMO, videos="pool.csv", out=str(tmp_path), task_videos="task.csv")
    assert cfg.tokenizer is None and cfg.frame_sizes() == [32] and cfg.compare_scratch
    [stage] = cfg.pretrain_stages()
    assert stage.data == str(tmp_path / "tokens32") and stage.output == str(tmp_path / "pretrain")
    # our VQ-VAE's codebook is the model's vocabulary unless a stage says otherwise
    assert stage.model.vocab_size == cfg.train_tokenizer.codebook_size == 64
    ing = cfg.ingest_config(32, "vqvae:/x")
    assert (ing.inputs, ing.out, ing.frame_size, ing.views) == ("pool.csv", str(tmp_path / "tokens32"), 32, "pretrain")
    [task] = cfg.finetune
    tokens = tmp_path / "tasks" / "grow-or-shrink" / "tokens32"
    task_ing = cfg.task_ingest_config(task, "vqvae:/x")
    assert (task_ing.inputs, task_ing.out, task_ing.views, task_ing.fps) == ("task.csv", str(tokens), "finetune", 4.0)
    tuned, scratch = cfg.finetune_config(task), cfg.finetune_config(task, scratch=True)
    assert tuned.load == str(tmp_path / "pretrain" / "checkpoints" / "final") and scratch.load is None
    assert tuned.data == tuned.test_data == scratch.data == str(tokens)
    assert (tuned.split, tuned.test_split) == ("train", "test")
    assert tuned.output == str(tmp_path / "tasks" / "grow-or-shrink" / "finetune")
    assert scratch.output == str(tmp_path / "tasks" / "grow-or-shrink" / "scratch")
    # the scratch run is the same fine-tuning with the pre-trained model's architecture, from random weights
    for name in ("layers", "hid_dim", "vocab_size", "layout", "clip_len", "frame_size"):
        assert getattr(scratch.model, name) == getattr(stage.model, name)
    same = {k: v for k, v in tuned.to_flat().items() if k not in ("load", "output")}
    assert all(scratch.to_flat()[k] == v for k, v in same.items() if k in ("lr", "epochs", "seed", "train_views"))


@pytest.mark.parametrize("change, words", [
    ({"ingest": {"out": "x"}}, "set by the pipeline"),
    ({"ingest": {"fsp": 2}}, "unknown field"),
    ({"pretrain": _one_stage(data="x")}, "pretrain.data"),
    ({"pretrain": _one_stage(stage2={"output": "x"})}, "pretrain.output"),
    ({"pretrain": _one_stage(hid_dim=100)}, "hid_dim"),
    ({"train_tokenizer": {"train": {"stepz": 3}}}, "stepz"),
    ({"tokenizer": "nonsense:/x"}, "nonsense"),
    ({"finetune": [{"name": "t", "videos": "l.csv", "config": {"load": "x"}}]}, "set by the pipeline"),
    ({"finetune": [{"name": "t", "videos": "l.csv", "config": {"lr": -1}}]}, "lr"),
    ({"finetune": [{"name": "t", "videos": "a.csv"}, {"name": "t", "videos": "b.csv"}]}, "unique"),
    ({"finetune": [{"name": "../up", "videos": "a.csv"}]}, "name"),
    ({"finetune": [{"name": "t", "videos": "a.csv", "ingest": {"views": "nope"}}]}, "views"),
])
def test_bad_pipeline_configs_name_the_field(tmp_path, change, words):
    data = {"videos": "v.csv", "out": "o", "pretrain": _one_stage(), **change}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises((ConfigError, ValueError), match=words):
        load_pipeline_config(path)


@pytest.mark.slow
def test_pipeline_flow_through_finetuning_then_rerun_skips_finished_stages(prefect_server, tmp_path, clips,
                                                                          tiny_tokenizer):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from vimpac_flows.pipeline import pipeline

    rows = [{"uri": str(c), "label": i % 2} for i, c in enumerate(clips)] + [{"uri": "missing.mp4", "label": 0}]
    task_rows = [{"uri": str(c), "label": i % 2, "split": "train" if i < 2 else "test"} for i, c in enumerate(clips)]
    task = {"name": "tiny", "videos": str(write_csv(tmp_path / "task.csv", task_rows)),
            "ingest": {"views": "s32-center-noflip,s32-center-flip"},
            "config": {"epochs": 2, "bs_per_gpu": 1, "nproc_per_node": 1, "device": "cpu", "num_workers": 0,
                       "lr": 1e-3, "num_test_clips": 2, "last_test_clips": [1],
                       "test_views": ["s32-center-noflip"]}}
    swept = {**task, "name": "swept", "config": {**task["config"], "epochs": 1, "last_test_clips": []},
             "sweep": {"grid": {"seed": [1, 2]}}}
    cfg = PipelineConfig(videos=str(write_csv(tmp_path / "l.csv", rows)), out=str(tmp_path / "run"),
                         tokenizer=tiny_tokenizer, ingest={"fps": 4.0, "shard_size": 3, "batch_size": 8,
                                                           "max_workers": 1, "task_retries": 0},
                         pretrain=_one_stage(epochs=2), finetune=[task, swept], compare_scratch=True, timeout_s=180)
    state = pipeline(config=cfg, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["tokenizer"] is None and not (tmp_path / "run" / "tokenizer").exists()
    assert summary["ingest"]["32"]["ok"] == 4 and summary["ingest"]["32"]["failed"] == 1
    manifest = {r["video_id"]: r for r in read_all_manifests(str(tmp_path / "run" / "tokens32")).to_pylist()}
    assert manifest["missing"]["status"] == "failed" and manifest["missing"]["error_class"] == "permanent"
    [stage] = summary["pretrain"]
    assert stage["step"] == 4 and Path(stage["checkpoint"]).is_relative_to(tmp_path / "run" / "pretrain")
    tiny = summary["finetune"]["tiny"]
    assert tiny["ingest"]["ok"] == 4 and tiny["ingest"]["rows"] == 8  # 4 videos x 2 views
    for variant, folder in (("pretrained", "finetune"), ("scratch", "scratch")):
        result = tiny[variant]
        assert result["videos"] == 2 and 0 <= result["top1"] <= 1 and set(result["clips"]) == {"2", "1"}
        evaluated = json.loads((tmp_path / "run" / "tasks" / "tiny" / folder / "eval" / "metrics.json").read_text())
        assert evaluated["top1"] == result["top1"]
    pictures = summary["pictures"]
    assert any("mask-then-predict" in k for k in pictures) and any("confusion" in k for k in pictures)
    assert all(Path(p).is_file() for p in pictures.values())
    assert summary["skipped"] == []
    sweep = summary["finetune"]["swept"]["sweep"]
    assert (sweep["ok"], sweep["failed"], sweep["skipped"]) == (2, 0, 0)
    assert "scratch" not in summary["finetune"]["swept"]  # a sweep task runs its grid only
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])))
        names = sorted(client.read_flow(r.flow_id).name for r in children)
    assert names == ["finetune", "finetune", "finetune-sweep", "ingest", "ingest", "ingest", "pretrain"]
    assert all(r.state.is_completed() for r in children)
    # A rerun on the same output redoes nothing that finished: same results, every training stage skipped.
    finals = {v: (tmp_path / "run" / "tasks" / "tiny" / d / "checkpoints" / "final" / "model.safetensors").stat().st_mtime_ns
              for v, d in (("pretrained", "finetune"), ("scratch", "scratch"))}
    again = pipeline(config=cfg)
    assert again["skipped"] == ["pretrain-stage-1", "tiny/pretrained", "tiny/scratch"]
    assert (again["finetune"]["swept"]["sweep"]["ok"], again["finetune"]["swept"]["sweep"]["skipped"]) == (0, 2)
    assert again["finetune"]["tiny"]["pretrained"]["top1"] == tiny["pretrained"]["top1"]
    for v, d in (("pretrained", "finetune"), ("scratch", "scratch")):
        path = tmp_path / "run" / "tasks" / "tiny" / d / "checkpoints" / "final" / "model.safetensors"
        assert path.stat().st_mtime_ns == finals[v]


@pytest.mark.slow
def test_vimpac_demo_end_to_end_pretraining_beats_scratch(prefect_server, installed_wheel, tmp_path):
    """`vimpac demo --out DIR` with the demo's own config: pool -> VQ-VAE -> tokens -> pre-training ->
    the grow-or-shrink task fine-tuned from pre-training and from scratch. The README promises about
    +10 points or more; this test allows a looser margin (+5) for run-to-run noise. It runs the
    installed wheel's `vimpac` from a folder outside the checkout (packaged presets, every process
    of the pipeline, torchrun ranks and decoder workers included, importing the installed copy)."""
    out = tmp_path / "demo"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(installed_wheel)}
    proc = subprocess.run([str(installed_wheel / "bin" / "vimpac"), "demo", "--out", str(out), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert f"outputs in {out}" in proc.stdout and "pre-training gain" in proc.stdout
    assert not any(str(REPO / p) in json.dumps(summary) for p in ("vimpac_cli", "vimpac_core", "configs"))
    assert len(list((out / "data" / "clips").glob("*.mp4"))) == 192 + 32 + 64
    tok = json.loads((out / "tokenizer" / "metrics.json").read_text())
    assert summary["tokenizer"]["tokenizer_id"] == tok["tokenizer_id"] and tok["psnr_gain_db"] > 0
    assert summary["ingest"]["32"]["ok"] == 192
    task = summary["finetune"]["grow-or-shrink"]
    assert task["ingest"]["ok"] == 96 and task["pretrained"]["videos"] == task["scratch"]["videos"] == 64
    assert task["pretrained"]["top1"] >= task["scratch"]["top1"] + 0.05, task
    assert json.loads((out / "tasks" / "grow-or-shrink" / "tokens32" / "classes.json").read_text())["classes"] == [
        "grow", "shrink"]
    assert all(Path(p).is_file() for p in summary["pictures"].values()) and len(summary["pictures"]) >= 5


def test_a_sweep_task_becomes_a_sweep_over_the_last_stage_checkpoint(tmp_path):
    from vimpac_core.sweep import load_sweep

    task = {"name": "t", "videos": "t.csv", "config": {"epochs": 2, "lr": 1e-3},
            "sweep": {"grid": {"lr": [1e-3, 5e-4], "seed": [0, 1]}, "max_parallel": 2}}
    cfg = PipelineConfig(videos="v.csv", out=str(tmp_path), tokenizer="vqvae:/x", pretrain=_one_stage(),
                         finetune=[task])
    cfg.check()
    sweep = load_sweep(cfg.sweep_mapping(cfg.finetune[0]))
    assert sweep.checkpoint == str(tmp_path / "pretrain" / "checkpoints" / "final")
    assert sweep.output == str(tmp_path / "tasks" / "t" / "sweep") and sweep.max_parallel == 2
    assert sweep.grid == {"lr": [1e-3, 5e-4], "seed": [0, 1]} and list(sweep.tasks) == ["t"]
    assert sweep.base["data"] == sweep.base["test_data"] == str(tmp_path / "tasks" / "t" / "tokens32")
    assert (sweep.base["split"], sweep.base["test_split"], sweep.base["epochs"]) == ("train", "test", 2)
    with pytest.raises(ValueError, match="grid"):
        PipelineConfig(videos="v.csv", out="o", pretrain=_one_stage(),
                       finetune=[{**task, "sweep": {"lr": [1e-3]}}])
