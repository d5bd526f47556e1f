"""Import a released VIMPAC snapshot (folder or .zip holding classifier.pt + args.pickle/args.txt).

The weights are read with ``torch.load(weights_only=True)``; the run's flags come from
``args.pickle`` through an unpickler that allows argparse.Namespace and nothing else, or from
``args.txt``. Our parameter names are the released ones, so the state_dict loads strictly; the
only rename is dropping a ``module.`` prefix left by DistributedDataParallel.

Flags keep the original's names (argparse dests of airsplay/vimpac ``vimpac/param.py``); the one
that differs from ours is ``model``: the layout with an ``efflayout`` prefix (``efflayoutT,H|W``),
which pretrain.py / finetune.py strip with ``args.model[len("efflayout"):]``.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from vimpac_core.errors import CheckpointError, UnsafePickleError

from .config import LAYOUT_PREFIX, VimpacConfig, layout_from_model_flag
from .modeling import VimpacForClassification, VimpacForPreTraining

WEIGHTS_FILE = "classifier.pt"
# Original flag names that are VimpacConfig fields (same names, by design); the layout comes from `model`.
_FLAGS = set(VimpacConfig.model_fields) - {"num_labels", "gradient_checkpointing", "layout"}


class NamespaceUnpickler(pickle.Unpickler):
    """Allows exactly one global, argparse.Namespace; anything else is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        raise UnsafePickleError(
            f"the pickle names {module}.{name}; only argparse.Namespace is allowed. The file was "
            "refused and nothing in it was executed: use args.txt or re-create the pickle"
        )


def load_args_pickle(data: bytes, source: str = "args.pickle") -> dict[str, Any]:
    """Bytes of a pickled argparse.Namespace -> its flags as a dict."""
    try:
        obj = NamespaceUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except Exception as exc:
        raise CheckpointError(f"{source}: not a readable pickle of argparse.Namespace ({exc})") from exc
    if not isinstance(obj, argparse.Namespace):
        raise UnsafePickleError(f"{source} holds a {type(obj).__name__}, not an argparse.Namespace")
    return vars(obj)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _dict_literal(text: str, source: str) -> dict[str, Any]:
    """A dict display: pprint of vars(args) (pretrain.py) or JSON. Never eval: literals only."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            value = json.loads(text)
        except ValueError:
            raise CheckpointError(
                f"{source}: starts with '{{' but is neither a Python dict literal (pprint of the flags) "
                f"nor JSON ({type(exc).__name__}: {exc})"
            ) from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CheckpointError(f"{source}: expected a dict of flag names, found a {type(value).__name__}")
    return value


def _namespace_literal(text: str, source: str) -> dict[str, Any]:
    """``Namespace(a=1, **{'odd-name': 2})``: str(args), as finetune.py writes it. Literals only."""
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("not a call with keyword arguments only")
        flags: dict[str, Any] = {}
        for kw in call.keywords:
            value = ast.literal_eval(kw.value)
            if kw.arg is None:  # Namespace(**{...}) holds names that are not identifiers
                if not isinstance(value, dict):
                    raise ValueError("** needs a dict")
                flags.update(value)
            else:
                flags[kw.arg] = value
        return flags
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise CheckpointError(f"{source}: not a readable Namespace(...) of literal flags ({exc})") from exc


def parse_args_txt(text: str, source: str = "args.txt") -> dict[str, Any]:
    """args.txt -> dict of flags; every malformed input raises CheckpointError naming ``source``.

    Accepts what the original writes, ``pprint.pprint(vars(args))`` (a dict literal, pretrain.py)
    and ``str(args)`` (``Namespace(...)``, finetune.py), plus JSON and one ``key: value`` /
    ``--key=value`` / ``key value`` per line.
    """
    text = text.strip()
    if not text:
        raise CheckpointError(f"{source}: empty; it should hold the run's flags")
    if text.startswith("{"):
        return _dict_literal(text, source)
    if text.startswith("Namespace("):
        return _namespace_literal(text, source)
    flags: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        seps = [s for s in (":", "=", " ") if s in line]
        key, value = line.split(min(seps, key=line.index), 1) if seps else ("", "")
        key = key.strip().lstrip("-")
        if not key:
            raise CheckpointError(f"{source}: line {number} {line[:60]!r} is not 'name: value'")
        flags[key] = _literal(value.strip())
    return flags


def layout_from_flags(flags: dict[str, Any], source: str) -> str:
    """The original ``model`` flag ('efflayoutT,H|W') -> our layout ('T,H|W')."""
    model = flags.get("model")
    layout = layout_from_model_flag(model)
    if layout is None:
        raise CheckpointError(
            f"{source}: flag model={model!r} does not name a layout; the original writes "
            f"'{LAYOUT_PREFIX}' + layout (e.g. '{LAYOUT_PREFIX}T,H|W'), and the layout's axes "
            "cannot be read from the weights: give the run's --model flag"
        )
    return layout


def _read_snapshot(path: Path) -> tuple[bytes, bytes | None, str | None, str]:
    """-> (classifier.pt bytes, args.pickle bytes, args.txt text, where) from a folder or a zip."""
    if path.is_dir():
        found = sorted(path.rglob(WEIGHTS_FILE))
        read = lambda p: p.read_bytes()  # noqa: E731
        names = found
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = sorted(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == WEIGHTS_FILE)
        read = archive.read
    else:
        raise CheckpointError(f"{path}: not a folder or a zip file; pass a released snapshot")
    if len(names) != 1:
        raise CheckpointError(f"{path}: expected exactly one {WEIGHTS_FILE} inside, found {len(names)}: {names}")
    weights = names[0]
    folder = str(weights)[: -len(WEIGHTS_FILE)]

    def sibling(name: str) -> bytes | None:
        try:
            return read(Path(folder) / name if path.is_dir() else folder + name)
        except (FileNotFoundError, KeyError):
            return None

    txt = sibling("args.txt")
    try:
        text = txt.decode() if txt is not None else None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: args.txt next to {weights} is not UTF-8 text ({exc})") from exc
    return read(weights), sibling("args.pickle"), text, str(weights)


def config_from_flags(
    flags: dict[str, Any], state: dict[str, torch.Tensor], source: str = "flags"
) -> VimpacConfig:
    """Original flags (+ what the weights tell: vocabulary, head sizes, classes) -> VimpacConfig."""
    values = {k: v for k, v in flags.items() if k in _FLAGS and v is not None}
    values["layout"] = layout_from_flags(flags, source)
    values["vocab_size"] = state["backbone.embedding.weight"].shape[0] - 5
    values.setdefault("hid_dim", state["backbone.embedding.weight"].shape[1])
    blocks = {int(k.split(".")[3]) for k in state if k.startswith("backbone.transformer.resblocks.")}
    if blocks:
        values.setdefault("layers", max(blocks) + 1)
    proj = sorted(k for k in state if k.startswith("cls_head.mlp.linear_") and k.endswith(".weight"))
    if proj:
        values["nce_proj_layers"] = len(proj)
        if len(proj) > 1:
            values["nce_proj_hid_dim"] = state[proj[0]].shape[0]
        values["nce_bn_after_proj"] = f"cls_head.mlp.bn_{len(proj) - 1}.weight" in state
    if "cls_fc.weight" in state:
        values["num_labels"] = state["cls_fc.weight"].shape[0]
    try:
        return VimpacConfig(**values)
    except ValueError as exc:
        raise CheckpointError(f"{source}: the flags do not make a valid VimpacConfig: {exc}") from exc


def load_original_checkpoint(path: str | Path) -> VimpacForPreTraining | VimpacForClassification:
    """A released snapshot (folder or .zip; classifier.pt found anywhere inside) -> our model, in eval mode.

    Pre-training checkpoints (backbone. / mlm_head. / cls_head.mlp.) give VimpacForPreTraining,
    fine-tuned ones (backbone. / cls_fc.) VimpacForClassification, with identical outputs.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    weights, pickled, txt, where = _read_snapshot(path)
    if pickled is not None:
        source = f"{path}: args.pickle"
        flags = load_args_pickle(pickled, source)
    elif txt is not None:
        source = f"{path}: args.txt"
        flags = parse_args_txt(txt, source)
    else:
        raise CheckpointError(f"{path}: no args.pickle or args.txt next to {where}; the flags are needed")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: {where} is not a loadable state_dict ({exc})") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: {where} does not hold a state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "backbone.embedding.weight" not in state:
        raise CheckpointError(f"{path}: {where} has no backbone.embedding.weight; not a VIMPAC checkpoint")
    config = config_from_flags(flags, state, source)
    model_cls = VimpacForClassification if "cls_fc.weight" in state else VimpacForPreTraining
    model = model_cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the flags' model ({exc})") from exc
    return model.eval()
