"""What is checked before training (issue 11): data folders exist and hold committed shards, their
token grid fits frame_size, their tokenizer's codebook fits vocab_size, and `vocab_size: auto`."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.train.helpers import tiny_flat, tiny_shards
from vimpac_cli import main
from vimpac_core.errors import ConfigError
from vimpac_core.shards.synthetic import token_rows, write_token_shards
from vimpac_core.train.config import PretrainConfig, parse_stages
from vimpac_core.train.preflight import check_pretrain

DALLE_ID = "dalle:" + "ab" * 32


def _dalle_shards(root) -> str:
    rows = token_rows(4, grid=4, vocab_size=64)
    for row in rows:
        row["tokenizer"] = DALLE_ID
    write_token_shards(str(root), rows)
    return str(root)


def _vqvae_shards(root, codes: int) -> str:
    """Shards of a VQ-VAE with ``codes`` codes: the ingest plan names its folder (config.json)."""
    sha = "cd" * 32
    folder = root / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"codebook_size": codes}))
    rows = token_rows(4, grid=4, vocab_size=codes)
    for row in rows:
        row["tokenizer"] = f"vqvae:{sha}"
    write_token_shards(str(root / "d"), rows)
    plan = {"tokenizer_id": f"vqvae:{sha}", "config": {"tokenizer": f"vqvae:{folder}"}}
    (root / "d" / "ingest_plan.json").write_text(json.dumps(plan))
    return str(root / "d")


def test_missing_folder_wrong_grid_and_small_vocab_fail_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data: .*nowhere' does not exist"):
        check_pretrain(PretrainConfig.from_flat(tiny_flat(str(tmp_path / "nowhere"), str(tmp_path / "o"))))
    (tmp_path / "empty" / "shards").mkdir(parents=True)
    with pytest.raises(ConfigError, match="data: no shard files"):
        check_pretrain(PretrainConfig.from_flat(tiny_flat(str(tmp_path / "empty"), str(tmp_path / "o"))))
    data8 = tiny_shards(tmp_path / "g8", grid=8)
    with pytest.raises(ConfigError, match="frame_size: the model expects a 4x4 token grid .* holds 8x8 grids"):
        check_pretrain(PretrainConfig.from_flat(tiny_flat(data8, str(tmp_path / "o"))))
    dalle = _dalle_shards(tmp_path / "dalle")
    with pytest.raises(ConfigError, match=r"vocab_size: 64 is smaller than the codebook .* \(8192 codes\)"):
        check_pretrain(PretrainConfig.from_flat(tiny_flat(dalle, str(tmp_path / "o"))))
    check_pretrain(PretrainConfig.from_flat(tiny_flat(dalle, str(tmp_path / "o"), vocab_size=8192)))
    with pytest.raises(ConfigError, match="knn_data: .*absent' does not exist"):
        check_pretrain(PretrainConfig.from_flat(tiny_flat(dalle, str(tmp_path / "o"), vocab_size=8192,
                                                          knn_data=str(tmp_path / "absent"))))


def test_vocab_auto_takes_the_codebook_of_the_shards_tokenizer(tmp_path):
    data = _vqvae_shards(tmp_path / "vq", codes=48)
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({**tiny_flat(data, str(tmp_path / "out")), "vocab_size": "auto"}))
    (stage,) = parse_stages(preset)
    assert stage.model.vocab_size == 48
    check_pretrain(stage)
    with pytest.raises(ConfigError, match="vocab_size: 40 is smaller than the codebook .* \\(48 codes\\)"):
        check_pretrain(stage.model_copy(update={"model": stage.model.model_copy(update={"vocab_size": 40})}))
    unknown = tmp_path / "u.yaml"
    unknown.write_text(yaml.safe_dump({**tiny_flat(tiny_shards(tmp_path / "t"), str(tmp_path / "o")), "vocab_size": "auto"}))
    with pytest.raises(ConfigError, match="vocab_size: 'auto' cannot size the tokenizer"):
        parse_stages(unknown)


def test_cli_check_refuses_bad_data_with_one_line(tmp_path, capsys):
    dalle = _dalle_shards(tmp_path / "dalle")
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump(tiny_flat(dalle, str(tmp_path / "out"))))
    assert main(["pretrain", str(preset), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vocab_size: 64 is smaller than the codebook" in err
    assert main(["pretrain", str(preset), "--check", "--vocab-size", "auto"]) == 0
    assert '"vocab_size": 8192' in capsys.readouterr().out
