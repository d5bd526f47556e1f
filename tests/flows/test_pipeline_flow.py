"""The whole DAG: PipelineConfig checks, the `pipeline` flow with a given tokenizer (subflows,
failed videos recorded, resumable), and `vimpac demo` (the README's command) end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    cfg = load_pipeline_config(DEMO, videos="v.csv", out=str(tmp_path))
    assert cfg.tokenizer is None and cfg.frame_sizes() == [32, 64]
    s1, s2 = cfg.pretrain_stages()
    assert (s1.data, s2.data) == (str(tmp_path / "tokens32"), str(tmp_path / "tokens64"))
    assert s2.load == str(tmp_path / "pretrain" / "stage1" / "checkpoints" / "final") and s2.different_shape
    # our VQ-VAE's codebook is the model's vocabulary unless a stage says otherwise
    assert s1.model.vocab_size == s2.model.vocab_size == cfg.train_tokenizer.codebook_size == 64
    ing = cfg.ingest_config(64, "vqvae:/x")
    assert (ing.inputs, ing.out, ing.frame_size, ing.shard_size) == ("v.csv", str(tmp_path / "tokens64"), 64, 4)


@pytest.mark.parametrize("change, words", [
    ({"ingest": {"out": "x"}}, "set by the pipeline"),
    ({"ingest": {"fsp": 2}}, "unknown field"),
    ({"pretrain": _one_stage(data="x")}, "pretrain.data"),
    ({"pretrain": _one_stage(stage2={"output": "x"})}, "pretrain.output"),
    ({"pretrain": _one_stage(hid_dim=100)}, "hid_dim"),
    ({"train_tokenizer": {"train": {"stepz": 3}}}, "stepz"),
    ({"tokenizer": "nonsense:/x"}, "nonsense"),
])
def test_bad_pipeline_configs_name_the_field(tmp_path, change, words):
    data = {"videos": "v.csv", "out": "o", "pretrain": _one_stage(), **change}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises((ConfigError, ValueError), match=words):
        load_pipeline_config(path)


@pytest.mark.slow
def test_pipeline_flow_with_given_tokenizer(prefect_server, tmp_path, clips, tiny_tokenizer):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.pipeline import pipeline

    rows = [{"uri": str(c), "label": i % 2} for i, c in enumerate(clips)] + [{"uri": "missing.mp4", "label": 0}]
    cfg = PipelineConfig(videos=str(write_csv(tmp_path / "l.csv", rows)), out=str(tmp_path / "run"),
                         tokenizer=tiny_tokenizer, ingest={"fps": 4.0, "shard_size": 3, "batch_size": 8,
                                                           "max_workers": 1, "task_retries": 0},
                         pretrain=_one_stage(epochs=2), timeout_s=180)
    state = pipeline(config=cfg, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["tokenizer"] is None and not (tmp_path / "run" / "tokenizer").exists()
    assert summary["ingest"]["32"]["ok"] == 4 and summary["ingest"]["32"]["failed"] == 1
    manifest = {r["video_id"]: r for r in read_all_manifests(str(tmp_path / "run" / "tokens32")).to_pylist()}
    assert manifest["missing"]["status"] == "failed" and manifest["missing"]["error_class"] == "permanent"
    [stage] = summary["pretrain"]
    assert stage["step"] == 4 and Path(stage["checkpoint"]).is_relative_to(tmp_path / "run" / "pretrain")
    assert (Path(stage["checkpoint"]) / "model.safetensors").is_file()
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])))
        names = sorted(client.read_flow(r.flow_id).name for r in children)
    assert names == ["ingest", "pretrain"] and all(r.state.is_completed() for r in children)


@pytest.mark.slow
def test_vimpac_demo_end_to_end(prefect_server, tmp_path):
    """`vimpac demo --out DIR`: synthetic data -> trained VQ-VAE -> tokens at 32 and 64 -> two stages."""
    from vimpac_core.model import VimpacForPreTraining

    out = tmp_path / "demo"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "vimpac_core.cli", "demo", "--out", str(out), "--json"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert f"outputs in {out}" in proc.stdout and "pretrain stage 2: step" in proc.stdout
    assert len(list((out / "data" / "clips").glob("*.mp4"))) == 8
    assert json.loads((out / "tokens32" / "classes.json").read_text())["classes"] == ["fast", "slow"]
    tok = json.loads((out / "tokenizer" / "metrics.json").read_text())
    assert summary["tokenizer"]["tokenizer_id"] == tok["tokenizer_id"] and tok["psnr_gain_db"] > 0
    for size in ("32", "64"):
        ing = summary["ingest"][size]
        assert (ing["ok"], ing["failed"], ing["rows"]) == (8, 0, 8)
        assert list((out / f"tokens{size}" / "shards").glob("*.parquet"))
    s1, s2 = summary["pretrain"]
    assert s2["step"] > s1["step"] > 0  # stage 2 continued stage 1's counters
    assert Path(s2["checkpoint"]) == out / "pretrain" / "stage2" / "checkpoints" / "final"
    model = VimpacForPreTraining.from_pretrained(s2["checkpoint"])
    assert (model.config.frame_size, model.config.vocab_size) == (64, 64)
