"""Importing released snapshots: a faithful fixture built from the reference module tree."""

from __future__ import annotations

import os
import pickle
import pprint
import re
import zipfile
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from bench import reference_model as ref
from tests.model.helpers import config_from, random_codes
from vimpac_cli import main as cli_main
from vimpac_core.errors import CheckpointError, UnsafePickleError
from vimpac_core.model import (
    VimpacConfig,
    VimpacForClassification,
    VimpacForPreTraining,
    load_original_checkpoint,
)
from vimpac_core.model.convert import parse_args_txt

# A copy of shared/reference/original-pretrain-checkpoint-keys.txt (the released checkpoint's keys), kept
# in the repository so that a clean clone tests against it wherever it runs.
KEYS_FILE = Path(__file__).parent / "data" / "original-pretrain-checkpoint-keys.txt"


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
    """What the original's save_model writes: classifier.pt, args.pickle (an argparse.Namespace), args.txt."""
    folder.mkdir(parents=True)
    torch.save(state, folder / "classifier.pt")
    if pickled:
        (folder / "args.pickle").write_bytes(pickle.dumps(Namespace(**vars(f))))
    if txt is not None:
        (folder / "args.txt").write_text(txt)
    return folder


def _zip(folder: Path, root: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in folder.rglob("*"):
            zf.write(p, p.relative_to(root).as_posix())
    return out


@pytest.mark.parametrize("overrides", [
    {},
    {"layout": "T,H,W", "pos_emb": "temporal_separation"},
    {"pre_activation": True, "layout": "H|W,T", "pos_emb": "default", "halve_mlp": True, "nce_proj_layers": 3,
     "nce_bn_after_proj": True},
])
def test_pretraining_zip_gives_identical_outputs(tmp_path: Path, overrides: dict) -> None:
    f = ref.flags(layers=2, **overrides)
    assert "layout" not in vars(f) and f.model.startswith("efflayout")  # the original's flag names only
    released = _released_model(f)
    folder = _write_snapshot(tmp_path / "src" / "vimpac_small" / "run1", released.state_dict(), f)
    archive = _zip(folder, tmp_path / "src", tmp_path / "vimpac_small.zip")
    model = load_original_checkpoint(archive)
    assert isinstance(model, VimpacForPreTraining) and not model.training
    assert model.config == config_from(f, dropout=f.dropout)
    assert model.config.layout == overrides.get("layout", "T,H|W")
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
    expected = {"layers": 2, "model": "efflayoutT,H|W", "halve_att": True}
    assert parse_args_txt("layers: 2\nmodel: efflayoutT,H|W\n\nhalve_att: True\n") == expected
    assert parse_args_txt("--layers=2\n--model=efflayoutT,H|W\n--halve_att=True") == expected
    assert parse_args_txt("--output=/runs/a:b\nlayers 2") == {"output": "/runs/a:b", "layers": 2}
    assert parse_args_txt('{"layers": 2, "model": "efflayoutT,H|W", "halve_att": true}') == expected
    assert parse_args_txt("{'layers': 2, 'model': 'efflayoutT,H|W', 'halve_att': True}") == expected
    assert parse_args_txt("Namespace(layers=2, model='efflayoutT,H|W', halve_att=True)") == expected
    assert parse_args_txt("Namespace(layers=2, model='efflayoutT,H|W', **{'halve_att': True})") == expected


def test_args_txt_as_pretrain_py_writes_it(tmp_path: Path) -> None:
    """pretrain.py: ``pprint.pprint(vars(args), f)``, a dict repr wrapped over lines (long strings split)."""
    f = ref.flags(layout="T,H,W", output="snap/pretrain/" + "a long experiment name " * 6, load=None)
    txt = pprint.pformat(vars(f))
    assert txt.startswith("{'") and "'\n           '" in txt  # Python quoting; a string split over lines
    assert parse_args_txt(txt) == vars(f)
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), f, pickled=False, txt=txt)
    model = load_original_checkpoint(folder)
    assert model.config == config_from(f, dropout=f.dropout) and model.config.layout == "T,H,W"


@pytest.mark.parametrize("txt", [
    "{'layers': 2, 'model': 'efflayoutT,H|W',",  # truncated pprint
    "{'layers': __import__('os').getpid()}",  # not a literal: refused, never evaluated
    "{'layers': 2, 'halve_att': true",  # neither Python nor JSON
    "{1: 2}",
    "Namespace(layers=2, model=open('x'))",
    "Namespace(layers=2",
    "layers: 2\njust_a_word\n",
    "   \n",
])
def test_malformed_args_txt_is_a_checkpoint_error(tmp_path: Path, txt: str) -> None:
    f = ref.flags()
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), f, pickled=False, txt=txt)
    with pytest.raises(CheckpointError, match=r"snap: args\.txt"):
        load_original_checkpoint(folder)
    assert cli_main(["import-checkpoint", str(folder), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_args_txt_that_is_not_text(tmp_path: Path) -> None:
    f = ref.flags()
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), f, pickled=False)
    (folder / "args.txt").write_bytes(b"\xff\xfe{'layers': 1}")
    with pytest.raises(CheckpointError, match="args.txt.*not UTF-8"):
        load_original_checkpoint(folder)


@pytest.mark.parametrize("model_flag", [None, "bert", "T,H|W"])
def test_layout_comes_from_the_model_flag_only(tmp_path: Path, model_flag: str | None) -> None:
    """The original has no ``layout`` flag: a missing or unprefixed ``model`` is an error, not a default."""
    f = ref.flags(layout="T,H,W")
    args = {k: v for k, v in vars(f).items() if k != "model"}
    if model_flag is not None:
        args["model"] = model_flag
    args["layout"] = "T,H,W"  # not an original flag: ignored
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), Namespace(**args))
    with pytest.raises(CheckpointError, match=r"args\.pickle: flag model=.*efflayout"):
        load_original_checkpoint(folder)


def test_cli_refuses_a_malicious_pickle_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = ref.flags()
    folder = _write_snapshot(tmp_path / "snap", _released_model(f).state_dict(), f, pickled=False)
    (folder / "args.pickle").write_bytes(pickle.dumps(Namespace(layers=1, payload=_Evil())))
    assert cli_main(["import-checkpoint", str(folder), str(tmp_path / "out")]) == 2
    assert "only argparse.Namespace is allowed" in capsys.readouterr().err
    assert not Path("/tmp/vimpac-pwned-by-args-pickle").exists()


# Names in the original source (airsplay/vimpac vimpac/modeling.py, positional_embedding.py) for the
# variants the released keys file does not show: pre-activation blocks hold dense / LayerNorm themselves
# (MultiPatternAttention), the default positional table is PositionalEmbedding.positional_embedding.
PRE_ACTIVATION_DEFAULT_KEYS = {
    "backbone.cls_param", "backbone.embedding.weight", "backbone.positional_embedding.positional_embedding",
    *(f"backbone.transformer.resblocks.0.attention_blocks.{b}.attentions.0.attention.{p}.{t}"
      for b in (0, 1) for p in ("query", "key", "value") for t in ("weight", "bias")),
    *(f"backbone.transformer.resblocks.0.attention_blocks.{b}.{m}.{t}"
      for b in (0, 1) for m in ("dense", "LayerNorm") for t in ("weight", "bias")),
    *(f"backbone.transformer.resblocks.0.{m}.{t}" for m in ("mlp.c_fc", "mlp.c_proj", "ln") for t in ("weight", "bias")),
    "backbone.ln_post.weight", "backbone.ln_post.bias",
}


def test_pre_activation_and_default_position_names_are_the_originals() -> None:
    config = VimpacConfig(layers=1, hid_dim=128, layout="T,H", pos_emb="default", pre_activation=True,
                          frame_size=32, clip_len=3, vocab_size=40)
    ours = VimpacForClassification(config.model_copy(update={"num_labels": 3})).state_dict()
    assert set(ours) == PRE_ACTIVATION_DEFAULT_KEYS | {"cls_fc.weight", "cls_fc.bias"}
    assert ours["backbone.positional_embedding.positional_embedding"].shape == (1 + 3 * 4 * 4, 128)
    f = ref.flags(layout="T,H", pos_emb="default", pre_activation=True)
    assert set(ref.ModelWithClassifier(f, num_classes=3).state_dict()) == set(ours)  # the fixture agrees
