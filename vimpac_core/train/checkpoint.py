"""Training checkpoints: one folder each, written atomically, loaded without pickle.

A checkpoint folder ``<output>/checkpoints/step_XXXXXXXX`` (and ``final``) holds::

    config.json, model.safetensors   the model (VimpacForPreTraining.from_pretrained reads it)
    optimizer.safetensors            Adam moments by parameter name: "<name>/exp_avg", "/exp_avg_sq", "/step"
    rng.safetensors                  per rank: torch (and CUDA) generator states, numpy key array
    trainer_state.json               epoch, data position, optimizer step, schedule, optimizer
                                     hyper-parameters, fp16 loss-scaler state, the rest of every
                                     rank's RNG state, config (written last: its presence marks a
                                     complete folder)

Everything is written into a hidden temporary folder that is renamed into place last, and the
``latest`` pointer file is replaced atomically after it, so a run killed at any instant leaves
either the previous checkpoint or the new one, never a partial one. Re-saving a name that exists
(``final``, or ``step_N`` saved at a step that also ends an epoch) moves the old folder aside to
``.<name>.old-*`` first; a kill between the two renames leaves ``latest`` naming a missing folder,
and `latest_checkpoint` then falls back to the newest complete checkpoint (the moved-aside one).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vimpac_core.errors import CheckpointError
from vimpac_core.optim_state import optimizer_tensors
from vimpac_core.storage import atomic_write_bytes, staged_dir

log = logging.getLogger(__name__)

STATE_NAME, OPTIM_NAME, RNG_NAME, LATEST = "trainer_state.json", "optimizer.safetensors", "rng.safetensors", "latest"


@dataclass
class TrainerState:
    """Where training stands. ``batch`` counts this rank's micro-batches consumed in ``epoch``."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    schedule: dict | None = None
    metrics: dict | None = None


def capture_rng() -> dict[str, Any]:
    """This process's RNG states: torch CPU (and CUDA), numpy's global, python's ``random``."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_rest": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": _python_state_to_json(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of capture_rng."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    name, pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state((name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _python_state_to_json(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    rng_per_rank: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    grad_scaler: dict[str, float | int] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (call on rank 0 with every rank's capture_rng()).

    ``grad_scaler``: ``GradScaler.state_dict()`` of an fp16 run (loss scale and growth counter),
    stored as JSON so a resumed run keeps its loss scale instead of starting over."""
    final = Path(folder)
    with staged_dir(final) as tmp:  # two renames at the end: latest_checkpoint copes with a kill in between
        model.save_pretrained(tmp)  # first: it replaces the folder it is given
        save_file(optimizer_tensors(optimizer), str(tmp / OPTIM_NAME))
        rng_tensors, rng_json = {}, []
        for rank, rng in enumerate(rng_per_rank):
            for key in ("torch", "cuda", "numpy_keys"):
                if key in rng:
                    rng_tensors[f"rank{rank}/{key}"] = rng[key].contiguous()
            rng_json.append({"numpy_rest": rng["numpy_rest"], "python": rng["python"]})
        save_file(rng_tensors, str(tmp / RNG_NAME))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        payload = {
            **state.__dict__, "optimizer_groups": groups, "rng": rng_json, "grad_scaler": grad_scaler or None,
            **(extra or {}),
        }
        atomic_write_bytes(str(tmp / STATE_NAME), (json.dumps(payload, indent=1, default=_json_default) + "\n").encode())
    _write_pointer(final.parent, final.name)
    _remove_leftovers(final.parent, keep=None)
    return final


def _leftovers(folder: Path) -> list[Path]:
    """Hidden folders of interrupted saves: ``.<name>.old-*`` (moved aside) and ``.<name>.tmp-*``."""
    return [p for p in folder.glob(".*") if p.is_dir() and (".old-" in p.name or ".tmp-" in p.name)]


def _remove_leftovers(folder: Path, keep: Path | None) -> None:
    for path in _leftovers(folder):
        if keep is None or path.resolve() != keep.resolve():
            shutil.rmtree(path, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if torch.is_tensor(value):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in {STATE_NAME}")


def _write_pointer(folder: Path, name: str) -> None:
    atomic_write_bytes(str(folder / LATEST), (name + "\n").encode())


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The folder named by ``<checkpoint_dir>/latest``, or None when no checkpoint was written.

    When that folder is missing or incomplete (a save killed while replacing a folder of the same
    name), the newest complete checkpoint instead: the highest optimizer step among the visible
    folders and the moved-aside ``.<name>.old-*`` / finished ``.<name>.tmp-*`` ones. Read-only, so
    every rank may call it at once; the next save removes the leftovers.
    """
    folder = Path(checkpoint_dir)
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    named = folder / pointer.read_text().strip()
    if (named / STATE_NAME).is_file():
        return named
    found = _newest_complete(folder)
    if found is None:
        raise CheckpointError(
            f"{pointer} names {named.name!r}, which is not a complete checkpoint, and no other complete "
            f"checkpoint is under {folder}; start without resume"
        )
    log.warning("%s names %r, which is missing or incomplete; using %s instead", pointer, named.name, found)
    return found


def _newest_complete(folder: Path) -> Path | None:
    # Ties (same step) prefer a committed folder over a moved-aside one over an unrenamed temporary one.
    rank = {"visible": 2, "old": 1, "tmp": 0}
    best: tuple[int, int, Path] | None = None
    candidates = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] + _leftovers(folder)
    for path in candidates:
        try:
            step = int(json.loads((path / STATE_NAME).read_text())["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # incomplete
        kind = "visible" if not path.name.startswith(".") else "old" if ".old-" in path.name else "tmp"
        if best is None or (step, rank[kind]) > best[:2]:
            best = (step, rank[kind], path)
    return None if best is None else best[2]


def prune_checkpoints(checkpoint_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step_* folders (``final`` and ``latest``'s target stay),
    and the leftovers of interrupted saves."""
    folder = Path(checkpoint_dir)
    latest = latest_checkpoint(folder)
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep else steps:
        if latest is None or old.resolve() != latest.resolve():
            shutil.rmtree(old, ignore_errors=True)
    _remove_leftovers(folder, keep=latest)


def resumable_checkpoint(checkpoint_dir: str | Path, config: dict[str, Any], ignore: set[str]) -> Path | None:
    """The latest checkpoint if the run that wrote it had this flat ``config`` (keys in ``ignore``
    aside), else None: only then does resuming continue the same run."""
    try:
        folder = latest_checkpoint(checkpoint_dir)
    except CheckpointError:
        return None
    if folder is None:
        return None
    saved = json.loads((folder / STATE_NAME).read_text()).get("config")
    if not isinstance(saved, dict):
        return None

    def strip(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k not in ignore}

    return folder if strip(saved) == strip(json.loads(json.dumps(config))) else None


@dataclass
class LoadedCheckpoint:
    """What load_checkpoint returns: no live objects, only tensors and JSON values."""

    folder: Path
    state: TrainerState
    optimizer: dict[str, torch.Tensor]
    optimizer_groups: list[dict]
    rng_per_rank: list[dict[str, Any]]
    raw: dict[str, Any]
    grad_scaler: dict[str, float | int] | None = None


def load_checkpoint(folder: str | Path) -> LoadedCheckpoint:
    """Read a checkpoint's trainer state, optimizer tensors and RNG states (model: from_pretrained)."""
    folder = Path(folder)
    for name in (STATE_NAME, OPTIM_NAME, RNG_NAME):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: not a training checkpoint (missing {name}); pass a checkpoint folder")
    raw = json.loads((folder / STATE_NAME).read_text())
    state = TrainerState(**{k: raw.get(k) for k in TrainerState.__dataclass_fields__})
    rng_tensors = load_file(str(folder / RNG_NAME))
    rngs = []
    for rank, rest in enumerate(raw.get("rng", [])):
        rng = dict(rest)
        for key in ("torch", "cuda", "numpy_keys"):
            if f"rank{rank}/{key}" in rng_tensors:
                rng[key] = rng_tensors[f"rank{rank}/{key}"]
        rngs.append(rng)
    scaler = raw.get("grad_scaler") or None
    if scaler is not None and not (
        isinstance(scaler, dict) and all(isinstance(v, (int, float)) for v in scaler.values())
    ):
        raise CheckpointError(f"{folder / STATE_NAME}: grad_scaler must map names to numbers, got {scaler!r}")
    return LoadedCheckpoint(
        folder, state, load_file(str(folder / OPTIM_NAME)), raw["optimizer_groups"], rngs, raw, scaler
    )
