"""Flags generated from the config models: --help lists every field (with its description), the
original VIMPAC names are aliases, and every parse error is one line `vimpac CMD: error: ...`, exit 2."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from vimpac_cli import main, parse_command_line
from vimpac_cli.ingest import config_from_args
from vimpac_cli.tokenizer import settings_from_flags
from vimpac_cli.train import parse_flags
from vimpac_core.config import DownloadConfig, IngestConfig
from vimpac_core.k8s import K8sJobConfig
from vimpac_core.model import VimpacConfig
from vimpac_core.pipeline_config import PipelineConfig, TokenizerTrainSettings
from vimpac_core.plan import Cluster
from vimpac_core.tokenizers.train import TrainConfig
from vimpac_core.tokenizers.vqvae import VQVAEConfig
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig

# command -> its --help's heading of the config flags, and (model, flag prefix, fields that are no flags of it)
CONFIG_COMMANDS: dict[str, tuple[str, list[tuple[type[BaseModel], str, set[str]]]]] = {
    "pretrain": ("PretrainConfig and VimpacConfig fields", [(PretrainConfig, "", {"model"}), (VimpacConfig, "", set())]),
    "finetune": ("FinetuneConfig and VimpacConfig fields", [(FinetuneConfig, "", {"model"}), (VimpacConfig, "", set())]),
    "evaluate": ("EvaluateConfig fields", [(EvaluateConfig, "", {"checkpoint"})]),  # CHECKPOINT: a positional
    "ingest": ("IngestConfig fields", [(IngestConfig, "", {"inputs", "download"}), (DownloadConfig, "download.", set())]),
    "train-tokenizer": ("TokenizerTrainSettings, TrainConfig and VQVAEConfig fields", [
        (TokenizerTrainSettings, "", {"train"}), (TrainConfig, "", {"model"}), (VQVAEConfig, "", set())]),
    "k8s-manifest": ("K8sJobConfig fields", [(K8sJobConfig, "", set())]),
}


def help_text(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping inside a description (argparse breaks at hyphens)
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare word runs


def expected_fields(command: str):
    for model, prefix, skip in CONFIG_COMMANDS[command][1]:
        for name, info in model.model_fields.items():
            if name not in skip:
                yield f"--{prefix}{name.replace('_', '-')} ", info


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_help_lists_every_field_with_its_description_and_default(command, capsys, monkeypatch):
    text = help_text(command, capsys, monkeypatch)
    fields = list(expected_fields(command))
    assert len(fields) > 10
    fields_part = text[text.index(CONFIG_COMMANDS[command][0]):]  # after the usage and the description
    for flag, info in fields:
        assert flag in fields_part, f"{command} --help lacks {flag}"
        if info.description:
            assert " ".join(info.description.split()) in text, f"{command} --help lacks the description of {flag}"
        if isinstance(info.default, int | float | str) and not info.is_required():  # the model's default
            shown = re.search(r"\((default: [^)]*|required[^)]*)\)", fields_part.split(flag, 1)[1]).group(1)
            assert shown.startswith("default: ") and shown.endswith(f" {info.default}"), f"{command} --help shows {shown!r} for {flag}"


def test_original_names_are_listed_and_accepted_by_finetune_too(capsys, monkeypatch):
    text = help_text("finetune", capsys, monkeypatch)
    for original in ("--epsilon", "--clip-grad-norm", "--grad-checkpoint", "--model", "--fp16", "--different-shape",
                     "--num-test-clips", "--last-test-clips", "--bs-per-gpu"):
        assert f"{original} " in text
    original = parse_flags(["--epsilon", "1e-6", "--clip-grad-norm", "0.5", "--fp16", "--model", "efflayoutT,H|W",
                            "--different-shape", "--last-test-clips", "2,5,10", "--bs-per-gpu", "3"], "finetune")
    assert original == {"eps": 1e-6, "grad_clip": 0.5, "amp": "fp16", "layout": "T,H|W", "different_shape": True,
                        "last_test_clips": [2, 5, 10], "bs_per_gpu": 3}
    assert FinetuneConfig.from_flat({"data": "d", "output": "o", **original}).last_test_clips == [2, 5, 10]


@pytest.mark.parametrize(("args", "line"), [
    (["pretrain", "tiny", "--timeout", "soon"], "vimpac pretrain: error: argument --timeout: invalid float value: 'soon'"),
    (["pretrain"], "vimpac pretrain: error: the following arguments are required: config"),
    (["evaluate", "ckpt", "--data"], "vimpac evaluate: error: argument --data: expected one argument"),
    (["finetune", "generic", "--lr-schedule", "cosine"],
     "vimpac finetune: error: --lr-schedule: no such flag (did you mean --lr-scheduler?); see vimpac finetune --help"),
    (["finetune", "generic", "cosine"], "vimpac finetune: error: unexpected argument 'cosine'"),
    (["pretrain", "tiny", "--hid"], "vimpac pretrain: error: --hid: no such flag (did you mean --hid-dim?); "
                                    "see vimpac pretrain --help"),  # never abbreviated
    (["pretrian", "tiny"], "vimpac: error: argument COMMAND: invalid choice: 'pretrian' (choose from "),
    ([], "vimpac: error: the following arguments are required: COMMAND"),
])
def test_argparse_errors_come_out_as_one_line_with_exit_2(args, line, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.endswith("\n") and captured.err.count("\n") == 1
    assert captured.err.startswith(line)


def test_a_value_of_the_wrong_type_names_the_flag(tmp_path, capsys):
    assert main(["pretrain", "tiny", "--hid-dim", "wide", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vimpac pretrain: error: ") and "hid_dim" in err


def test_ingest_keeps_its_earlier_flag_names_as_aliases():
    def config(*flags: str) -> IngestConfig:
        return config_from_args(parse_command_line(["ingest", "l.csv", "--out", "o", "--tokenizer", "vqvae:t", *flags]))

    earlier = config("--frame-out-size", "64", "--probe-timeout", "5", "--decode-timeout", "9", "--video-store", "s3://v",
                     "--max-bytes", "1000", "--download-timeout", "7", "--download-retries", "1", "--no-flip")
    fields = config("--frame-size", "64", "--probe-timeout-s", "5", "--decode-timeout-s", "9", "--download.store", "s3://v",
                    "--download.max-bytes", "1000", "--download.timeout-s", "7", "--download.retries", "1", "--flip", "false")
    assert earlier == fields
    assert (earlier.frame_size, earlier.download.store, earlier.download.retries, earlier.flip) == (64, "s3://v", 1, False)
    assert config() == IngestConfig(inputs="l.csv", out="o", tokenizer="vqvae:t")  # every default is the model's


def test_train_tokenizer_defaults_are_the_pipelines():
    """Without flags, `vimpac train-tokenizer` trains the tokenizer the pipeline trains by default."""
    args = parse_command_line(["train-tokenizer", "videos.csv", "--out", "tok"])
    settings = settings_from_flags(args.config_flags.values(args))
    pipeline = PipelineConfig.model_fields["train_tokenizer"].get_default(call_default_factory=True)
    assert settings == pipeline and settings.train_config() == pipeline.train_config() == TrainConfig()
    assert settings.train_config().model.channels == VQVAEConfig().channels
    args = parse_command_line(["train-tokenizer", "videos.csv", "--out", "tok", "--channels", "16", "32", "32",
                               "--codebook-size", "64", "--frame-size", "32", "--hflip", "false"])
    changed = settings_from_flags(args.config_flags.values(args))
    assert (changed.frame_size, changed.train_config().model.channels, changed.codebook_size) == (32, (16, 32, 32), 64)
    assert changed.train_config().hflip is False
    args = parse_command_line(["train-tokenizer", "videos.csv", "--out", "tok", "--channels", "16,32,32"])
    assert settings_from_flags(args.config_flags.values(args)).train_config().model.channels == (16, 32, 32)


def test_k8s_manifest_texts_stay_texts_and_plan_defaults_are_the_models():
    args = parse_command_line(["k8s-manifest", "large", "--name", "x", "--image", "i", "--pvc", "claim", "--cpu", "8",
                               "--env", "A=1,B=2", "--service-account", "null"])
    job = K8sJobConfig(**args.config_flags.values(args))
    assert (job.cpu, job.env, job.service_account, job.checkpoint_pvc) == ("8", {"A": "1", "B": "2"}, None, "claim")
    plan = parse_command_line(["plan", "tiny"])
    ingest, cluster = IngestConfig.model_fields, Cluster()
    assert (plan.fps, plan.views, plan.finetune_epochs) == (ingest["fps"].default, ingest["views"].default,
                                                            FinetuneConfig.model_fields["epochs"].default)
    assert (plan.nodes, plan.gpus_per_node, plan.decode_workers_per_node) == (
        cluster.nodes, cluster.gpus_per_node, cluster.decode_workers_per_node)


def test_null_clears_a_list_field():
    flags = parse_flags(["--train-views", "null", "--test-views", "a,b", "--batch-size", "null"], "finetune")
    assert flags == {"train_views": None, "test_views": ["a", "b"], "batch_size": None}


def test_demo_rejects_bad_sizes_in_the_one_line_format(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--pool", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vimpac demo: error: pool=0") and err.count("\n") == 1
    assert not (tmp_path / "demo" / "data").exists()
