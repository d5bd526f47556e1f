"""`vimpac ingest` flags -> IngestConfig: the original extraction script's flags, class index,
and one-line errors (exit 2) for bad input instead of tracebacks."""

from __future__ import annotations

import pytest

from vimpac_cli import build_parser, main
from vimpac_cli.ingest import config_from_args


def _config(*flags: str):
    args = build_parser().parse_args(["ingest", "list.csv", "--out", "out", "--tokenizer", "vqvae:tok", *flags])
    return config_from_args(args)


def test_original_extraction_flags_make_one_view():
    cfg = _config("--frame-out-size", "128", "--frame-shorter-size", "160", "--crop-type", "top", "--hflip")
    assert (cfg.frame_size, cfg.views) == (128, "s160-top-flip")
    assert _config("--crop-type", "bottom").views == "s128-bottom-noflip"
    assert _config().views == "pretrain"
    assert _config("--views", "finetune", "--no-flip").views == "finetune"
    assert _config("--class-index", "s3://b/train_tokens").class_index == "s3://b/train_tokens"


@pytest.mark.parametrize(("flags", "message"), [
    (["--views", "pretrain", "--hflip"], "either --views or --frame-shorter-size"),
    (["--views", "s160-diag-flip"], "bad view name 's160-diag-flip'"),
    (["--frame-size", "100"], "--frame-size: 100 is not a multiple of 8"),
    (["--tokenizer", "jpeg:x"], "jpeg"),
])
def test_bad_flags_fail_in_one_line_before_any_work(tmp_path, capsys, flags, message):
    lst = tmp_path / "list.csv"
    lst.write_text("uri\nx.mp4\n")
    code = main(["ingest", str(lst), "--out", str(tmp_path / "out"), "--tokenizer", "vqvae:tok", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("vimpac ingest: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_list_and_missing_tokenizer_are_named(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o"), "--tokenizer", "vqvae:t"]) == 2
    assert "video list" in capsys.readouterr().err
    lst = tmp_path / "list.csv"
    lst.write_text("uri\nx.mp4\n")
    assert main(["ingest", str(lst), "--out", str(tmp_path / "o"), "--tokenizer", f"vqvae:{tmp_path / 'tok'}"]) == 2
    assert "is not a VQ-VAE folder" in capsys.readouterr().err
    assert main(["rerun-failed", str(tmp_path / "o")]) == 2
    assert "run `vimpac ingest` into it first" in capsys.readouterr().err
