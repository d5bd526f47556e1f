"""Flags generated from the config models: --help lists every field (with its description), the
original VIMPAC names are aliases, and every parse error is one line `vimpac CMD: error: ...`, exit 2."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from vimpac_cli import main
from vimpac_cli.train import parse_flags
from vimpac_core.model import VimpacConfig
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig

# command -> the models whose fields are its flags, and the fields that are not flags (positionals, nesting)
CONFIG_COMMANDS: dict[str, tuple[tuple[type[BaseModel], ...], set[str]]] = {
    "pretrain": ((PretrainConfig, VimpacConfig), {"model"}),
    "finetune": ((FinetuneConfig, VimpacConfig), {"model"}),
    "evaluate": ((EvaluateConfig,), {"checkpoint"}),
}


def help_text(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping inside a description (argparse breaks at hyphens)
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare word runs


def expected_fields(models: tuple[type[BaseModel], ...], skip: set[str]):
    for model in models:
        for name, info in model.model_fields.items():
            if name not in skip:
                yield name, info


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_help_lists_every_field_with_its_description_and_default(command, capsys, monkeypatch):
    text = help_text(command, capsys, monkeypatch)
    models, skip = CONFIG_COMMANDS[command]
    fields = list(expected_fields(models, skip))
    assert len(fields) > 10
    fields_part = text[text.index(f"{models[0].__name__} fields"):]  # after the usage and the description
    for name, info in fields:
        flag = f"--{name.replace('_', '-')} "
        assert flag in text, f"{command} --help lacks {flag}"
        if info.description:
            assert " ".join(info.description.split()) in text, f"{command} --help lacks the description of {name}"
        if isinstance(info.default, int | float | str) and not info.is_required():  # the model's default
            shown = re.search(r"\((default: [^)]*|required[^)]*)\)", fields_part.split(flag, 1)[1]).group(1)
            assert shown.startswith("default: ") and shown.endswith(f" {info.default}"), f"{command} --help shows {shown!r} for {name}"


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
