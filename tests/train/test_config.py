"""PretrainConfig validation, presets, stage parsing and the CLI's flag parsing / early failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vimpac_cli import main
from vimpac_cli.train import parse_flags
from vimpac_core.errors import ConfigError
from vimpac_core.train.config import PretrainConfig, parse_stages

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


def test_flat_routes_model_fields_and_round_trips():
    cfg = PretrainConfig.from_flat({"data": "d", "output": "o", "hid_dim": 256, "lr": 3e-4, "layers": 2})
    assert cfg.model.hid_dim == 256 and cfg.model.layers == 2 and cfg.lr == 3e-4
    assert PretrainConfig.from_flat(cfg.to_flat()) == cfg


@pytest.mark.parametrize(
    "change,field",
    [
        ({"lr": -1}, "lr"),
        ({"lr_scheduler": "step"}, "lr_scheduler"),
        ({"hid_dim": 100}, "hid_dim"),
        ({"batch_size": 100, "bs_per_gpu": 32}, "batch_size"),
        ({"batch_size": 64, "bs_per_gpu": 8, "gradient_accumulation": 3}, "gradient_accumulation"),
        ({"amp": "fp16", "device": "cpu"}, "amp"),
        ({"mask_blocks": 0}, "mask_blocks"),
        ({"learning_rate": 1.0}, "learning_rate"),
    ],
)
def test_bad_values_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        PretrainConfig.from_flat({"data": "d", "output": "o", **change})


def test_accumulation_is_derived_from_the_global_batch():
    cfg = PretrainConfig.from_flat({"data": "d", "output": "o", "batch_size": 1024, "bs_per_gpu": 32, "nproc_per_node": 8})
    assert cfg.accumulation_steps() == 4
    assert PretrainConfig.from_flat({"data": "d", "output": "o", "gradient_accumulation": 3}).accumulation_steps() == 3


def test_presets_parse_and_follow_the_recipe():
    small = parse_stages(PRESETS / "small.yaml")
    assert len(small) == 1 and small[0].model.layers == 6 and small[0].model.hid_dim == 512
    assert small[0].lr == 1e-3 and small[0].warm_up == 0.1 and small[0].epochs == 10
    large1, large2 = parse_stages(PRESETS / "large.yaml", {"output": "/runs/x"})
    assert (large1.model.layers, large1.model.hid_dim, large1.model.frame_size) == (24, 1024, 128)
    assert (large2.model.frame_size, large2.epochs, large1.epochs, large1.schedule_epochs) == (256, 10, 90, 100)
    assert large2.different_shape and large2.load_optimizer
    assert large2.load == "/runs/x/stage1/checkpoints/final" and large2.output == "/runs/x/stage2"
    assert large1.accumulation_steps() * large1.bs_per_gpu * large1.nproc_per_node == 1024
    assert large2.accumulation_steps() * large2.bs_per_gpu * large2.nproc_per_node == 1024
    alone = parse_stages(PRESETS / "large_frame256cont.yaml")
    assert len(alone) == 1 and alone[0].load and alone[0].model.frame_size == 256
    tiny1, tiny2 = parse_stages(PRESETS / "tiny.yaml")
    assert tiny1.model.grid_size == 4 and tiny2.model.grid_size == 8 and tiny1.device == "cpu"


def test_flag_parsing():
    flags = parse_flags(["--hid-dim", "768", "--lr=3e-4", "--resume", "--views", "a,b", "--amp", "none"])
    assert flags == {"hid_dim": 768, "lr": 3e-4, "resume": True, "views": ["a", "b"], "amp": "none"}
    with pytest.raises(ConfigError, match="--hidden-dim: no such flag .did you mean --hid-dim"):
        parse_flags(["--hidden-dim", "3"])


def test_stage2_flags_change_stage2_only():
    flags = parse_flags(["--data", "s3://b/t128", "--stage2.data", "s3://b/t256", "--stage2-epochs", "3"])
    assert flags == {"data": "s3://b/t128", "stage2.data": "s3://b/t256", "stage2.epochs": 3}
    one, two = parse_stages(PRESETS / "large.yaml", flags)
    assert (one.data, two.data, one.epochs, two.epochs) == ("s3://b/t128", "s3://b/t256", 90, 3)
    with pytest.raises(ConfigError, match="stage2.data.*no stage 2"):
        parse_stages(PRESETS / "small.yaml", {"stage2.data": "x"})
    with pytest.raises(ConfigError, match="--stage2.timeout: no such flag"):
        parse_flags(["--stage2.timeout", "3"])


def test_cli_fails_before_any_work_naming_the_field(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"data": str(tmp_path / "nowhere"), "output": str(tmp_path / "out")}))
    assert main(["pretrain", str(preset), "--warm-up", "2.5"]) == 2  # >= 1 counts steps: whole numbers only
    assert "warm_up" in capsys.readouterr().err
    assert main(["pretrain", str(preset), "--output", "s3://bucket/run"]) == 2
    assert "output: 's3://bucket/run' is a s3:// URL" in capsys.readouterr().err
    assert main(["pretrain", str(preset), "--layout", "T,X"]) == 2
    assert "layout" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["pretrain", str(preset), "--check"]) == 2  # --check looks at the data folder too
    assert "data: " in capsys.readouterr().err


def test_original_flag_names_are_aliases_of_our_fields():
    """vimpac/param.py's names for the fields we call otherwise (scripts/pretrain/large.sh uses them)."""
    original = parse_flags(["--model", "efflayoutT,H,W", "--epsilon", "1e-6", "--clip-grad-norm", "0.5", "--fp16",
                            "--grad-checkpoint", "--warm-up", "500", "--stage2.model", "efflayoutH|W,T"])
    ours = parse_flags(["--layout", "T,H,W", "--eps", "1e-6", "--grad-clip", "0.5", "--amp", "fp16",
                        "--gradient-checkpointing", "--warm-up", "500", "--stage2.layout", "H|W,T"])
    assert original == ours
    flat = {"data": "d", "output": "o", "device": "auto"}
    assert parse_stages(PRESETS / "large.yaml", {**flat, **original}) == parse_stages(PRESETS / "large.yaml", {**flat, **ours})
    cfg = PretrainConfig.from_flat({**flat, **{k: v for k, v in original.items() if "." not in k}})
    assert (cfg.model.layout, cfg.eps, cfg.grad_clip, cfg.amp, cfg.model.gradient_checkpointing, cfg.warm_up) == (
        "T,H,W", 1e-6, 0.5, "fp16", True, 500)
    assert parse_flags(["--fp16", "false"]) == {"amp": "none"}
    with pytest.raises(ConfigError, match="model.*efflayout"):
        parse_flags(["--model", "bert"])


def test_remote_output_or_load_fails_naming_the_field():
    for field in ("output", "load"):
        with pytest.raises(ConfigError, match=f"{field}: 's3://b/run' is a s3:// URL.*local folder"):
            PretrainConfig.from_flat({"data": "s3://b/tokens", "output": "o", field: "s3://b/run"})
    assert PretrainConfig.from_flat({"data": "s3://b/tokens", "output": "file:///runs/x"}).output == "/runs/x"
    with pytest.raises(ConfigError, match="output: 's3://b/x/stage1'"):
        parse_stages(PRESETS / "large.yaml", {"output": "s3://b/x"})


def test_pretrain_presets_read_consecutive_2fps_token_frames():
    """The release pre-trains on 2-fps tokens read with stride 1 (FINETUNE.md: no --frame-rate)."""
    from pathlib import Path

    import yaml

    presets = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
    for name in ("small", "large", "large_frame256cont"):
        assert yaml.safe_load((presets / f"{name}.yaml").read_text())["frame_rate"] == 1, name


def test_a_preset_and_the_pipeline_chain_the_same_stages(tmp_path):
    """`vimpac pretrain PRESET` and the pipeline build stage 2 through one rule (chain_stages): the same
    preset gives the same stages, outputs and start checkpoints, whichever reads it."""
    from vimpac_core.pipeline_config import PipelineConfig

    preset = yaml.safe_load((PRESETS / "tiny.yaml").read_text())
    assert isinstance(preset.get("stage2"), dict)  # a two-stage preset
    pretrain = {k: v for k, v in preset.items() if k not in ("data", "output")}
    pretrain["stage2"] = {k: v for k, v in preset["stage2"].items() if k not in ("data", "output")}
    pipeline = PipelineConfig(videos="v.csv", out=str(tmp_path / "run"), tokenizer="vqvae:/x", pretrain=pretrain)
    from_pipeline = pipeline.pretrain_stages()
    file = tmp_path / "preset.yaml"
    file.write_text(yaml.safe_dump({**pretrain, "output": str(tmp_path / "run" / "pretrain")}))
    data1, data2 = (stage.data for stage in from_pipeline)  # the ingest outputs at each stage's frame size
    from_preset = parse_stages(file, {"data": data1, "stage2.data": data2})
    assert from_preset == from_pipeline
    first, second = from_preset
    assert (first.output, second.output) == (str(tmp_path / "run/pretrain/stage1"), str(tmp_path / "run/pretrain/stage2"))
    assert second.load == str(tmp_path / "run/pretrain/stage1/checkpoints/final") and second.different_shape
