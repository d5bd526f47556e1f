"""Import a released VIMPAC snapshot (folder or .zip holding classifier.pt + args.pickle/args.txt).

The weights are read with ``torch.load(weights_only=True)``; the run's flags come from
``args.pickle`` through an unpickler that allows argparse.Namespace and nothing else, or from
``args.txt``. Our parameter names are the released ones, so the state_dict loads strictly; the
only rename is dropping a ``module.`` prefix left by DistributedDataParallel.
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

from .config import VimpacConfig
from .modeling import VimpacForClassification, VimpacForPreTraining

WEIGHTS_FILE = "classifier.pt"
# Original flag names that are VimpacConfig fields (same names, by design).
_FLAGS = set(VimpacConfig.model_fields) - {"num_labels", "gradient_checkpointing"}


class NamespaceUnpickler(pickle.Unpickler):
    """Allows exactly one global, argparse.Namespace; anything else is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        raise UnsafePickleError(
            f"args.pickle names {module}.{name}; only argparse.Namespace is allowed. The file was "
            "refused and nothing in it was executed: use args.txt or re-create the pickle"
        )


def load_args_pickle(data: bytes, source: str = "args.pickle") -> dict[str, Any]:
    """Bytes of a pickled argparse.Namespace -> its flags as a dict."""
    try:
        obj = NamespaceUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{source}: not a readable pickle of argparse.Namespace ({exc})") from exc
    if not isinstance(obj, argparse.Namespace):
        raise UnsafePickleError(f"{source} holds a {type(obj).__name__}, not an argparse.Namespace")
    return vars(obj)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_args_txt(text: str) -> dict[str, Any]:
    """args.txt -> dict. Accepts JSON, ``Namespace(a=1, ...)`` or one ``key: value``/``key=value`` per line."""
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    if text.startswith("Namespace("):
        call = ast.parse(text, mode="eval").body
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    flags: dict[str, Any] = {}
    for line in text.splitlines():
        for sep in (":", "=", " "):
            if sep in line:
                key, value = line.split(sep, 1)
                flags[key.strip().lstrip("-")] = _literal(value.strip())
                break
    return flags


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
    return read(weights), sibling("args.pickle"), txt.decode() if txt is not None else None, str(weights)


def config_from_flags(flags: dict[str, Any], state: dict[str, torch.Tensor]) -> VimpacConfig:
    """Original flags (+ what the weights tell: vocabulary, head sizes, classes) -> VimpacConfig."""
    values = {k: v for k, v in flags.items() if k in _FLAGS and v is not None}
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
        raise CheckpointError(f"the snapshot's flags do not make a valid VimpacConfig: {exc}") from exc


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
        flags = load_args_pickle(pickled, f"{path}: args.pickle")
    elif txt is not None:
        flags = parse_args_txt(txt)
    else:
        raise CheckpointError(f"{path}: no args.pickle or args.txt next to {where}; the flags are needed")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: {where} is not a loadable state_dict ({exc})") from exc
    state = {k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()}
    if "backbone.embedding.weight" not in state:
        raise CheckpointError(f"{path}: {where} has no backbone.embedding.weight; not a VIMPAC checkpoint")
    config = config_from_flags(flags, state)
    model_cls = VimpacForClassification if "cls_fc.weight" in state else VimpacForPreTraining
    model = model_cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the flags' model ({exc})") from exc
    return model.eval()
