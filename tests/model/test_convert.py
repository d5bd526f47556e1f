"""Importing released snapshots: a faithful fixture built from the reference module tree."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from tests.model import reference as ref
from tests.model.helpers import config_from, random_codes
from vimpac_core.cli import main as cli_main
from vimpac_core.errors import CheckpointError, UnsafePickleError
from vimpac_core.model import (
    VimpacConfig,
    VimpacForClassification,
    VimpacForPreTraining,
    load_original_checkpoint,
)

KEYS_FILE = Path("/work/shared/reference/original-pretrain-checkpoint-keys.txt")


def _released_model(f: Namespace) -> ref.ModelWithHead:
    torch.manual_seed(5)
    model = ref.ModelWithHead(f)
    for name, module in model.named_modules():  # running stats that matter in eval mode
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(17)
            assert name.startswith("cls_head.mlp.bn_")
    return model.eval()


def _write_snapshot(folder: Path, state: dict, f: Namespace, *, pickled: bool = True, txt: str | None = None) -> Path:
    folder.mkdir(parents=True)
    torch.save(state, folder / "classifier.pt")
    if pickled:
        (folder / "args.pickle").write_bytes(pickle.dumps(f))
    if txt is not None:
        (folder / "args.txt").write_text(txt)
    return folder


def _zip(folder: Path, root: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in folder.rglob("*"):
            zf.write(p, p.relative_to(root).as_posix())
    return out


@pytest.mark.parametrize("overrides", [{}, {"pre_activation": True, "layout": "H|W,T", "pos_emb": "default",
                                            "halve_mlp": True, "nce_proj_layers": 3, "nce_bn_after_proj": True}])
def test_pretraining_zip_gives_identical_outputs(tmp_path: Path, overrides: dict) -> None:
    f = ref.flags(layers=2, **overrides)
    released = _released_model(f)
    folder = _write_snapshot(tmp_path / "src" / "vimpac_small" / "run1", released.state_dict(), f)
    archive = _zip(folder, tmp_path / "src", tmp_path / "vimpac_small.zip")
    model = load_original_checkpoint(archive)
    assert isinstance(model, VimpacForPreTraining) and not model.training
    assert model.config == config_from(f, dropout=f.dropout)
    codes = random_codes(model.config, batch=3)
    with torch.no_grad():
        out = model(codes)
        proj, logits = released(codes)
    torch.testing.assert_close(out.cls_projection, proj, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, logits, atol=2e-5, rtol=1e-5)


def test_finetuned_folder_with_args_txt_only(tmp_path: Path) -> None:
    f = ref.flags(layers=1, pos_emb="temporal_separation", halve_att=True)
    torch.manual_seed(2)
    released = ref.ModelWithClassifier(f, num_classes=7).eval()
    state = {f"module.{k}": v for k, v in released.state_dict().items()}  # saved from DDP
    txt = repr(Namespace(**{k: v for k, v in vars(f).items() if k != "layers"}))  # layers: from the keys
    _write_snapshot(tmp_path / "snap" / "deep" / "er", state, f, pickled=False, txt=txt)
    model = load_original_checkpoint(tmp_path / "snap")
    assert isinstance(model, VimpacForClassification) and model.config.num_labels == 7
    assert model.config.layers == 1 and model.config.halve_att
    codes = random_codes(model.config, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model(codes).logits, released(codes), atol=2e-5, rtol=1e-5)
        out = model(codes, torch.tensor([3, 6]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([3, 6])))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vimpac-pwned-by-args-pickle",))


def test_malicious_args_pickle_is_refused(tmp_path: Path) -> None:
    f = ref.flags()
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), f, pickled=False)
    (folder / "args.pickle").write_bytes(pickle.dumps(Namespace(layers=1, payload=_Evil())))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        load_original_checkpoint(folder)
    assert not Path("/tmp/vimpac-pwned-by-args-pickle").exists()
    (folder / "args.pickle").write_bytes(pickle.dumps({"layers": 1}))
    with pytest.raises(UnsafePickleError, match="dict"):
        load_original_checkpoint(folder)


def test_bad_snapshots_are_explained(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such"):
        load_original_checkpoint(tmp_path / "absent.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="exactly one classifier.pt"):
        load_original_checkpoint(tmp_path / "empty")
    f = ref.flags(layers=2)
    folder = _write_snapshot(tmp_path / "wrong", _released_model(f).state_dict(), ref.flags(layers=1))
    with pytest.raises(CheckpointError, match="do not match"):
        load_original_checkpoint(folder)


def test_small_model_keys_match_the_release() -> None:
    expected = set()
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = re.match(r"(\S+) (\(.*\)) (\S+)", line).groups()
        expected.add((key, shape.replace(",)", ")").replace("()", "()"), dtype))
    model = VimpacForPreTraining(VimpacConfig(layers=1))  # the small model's first layer
    ours = {(k, str(tuple(v.shape)).replace(",)", ")"), str(v.dtype)) for k, v in model.state_dict().items()}
    assert ours == expected


def test_cli_import_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = ref.flags()
    folder = _write_snapshot(tmp_path / "src" / "a", _released_model(f).state_dict(), f)
    archive = _zip(folder, tmp_path / "src", tmp_path / "snap.zip")
    assert cli_main(["import-checkpoint", str(archive), str(tmp_path / "out")]) == 0
    assert "VimpacForPreTraining" in capsys.readouterr().out
    loaded = VimpacForPreTraining.from_pretrained(tmp_path / "out").eval()
    codes = random_codes(loaded.config, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(codes).logits, _released_model(f)(codes)[1], atol=2e-5, rtol=1e-5)
    assert cli_main(["import-checkpoint", str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2


def test_args_txt_formats() -> None:
    from vimpac_core.model.convert import parse_args_txt

    expected = {"layers": 2, "layout": "T,H|W", "halve_att": True}
    assert parse_args_txt("layers: 2\nlayout: T,H|W\nhalve_att: True\n") == expected
    assert parse_args_txt("--layers=2\n--layout=T,H|W\n--halve_att=True") == expected
    assert parse_args_txt('{"layers": 2, "layout": "T,H|W", "halve_att": true}') == expected
    assert parse_args_txt("Namespace(layers=2, layout='T,H|W', halve_att=True)") == expected
