"""The checkpoint a sweep fine-tunes from: ``latest:`` resolution, its digest, and pinning it.

``latest:<pre-training output>`` names the newest complete checkpoint of a (possibly running)
pre-training: of a two-stage output (``stage1/``, ``stage2/``) the highest stage that has one,
else ``<output>/checkpoints``; "complete" is what train/checkpoint.latest_checkpoint says (the
folder the ``latest`` pointer names, or the newest complete one when a save was interrupted).

The digest (sha256 of ``model.safetensors``) identifies the weights whatever folder holds them;
it is cached beside the file in ``model.safetensors.sha256.json``, valid while the file's size
and mtime are unchanged, so gigabytes are hashed once.

A running pre-training prunes its older step folders, so a sweep pins the checkpoint it resolved:
``config.json`` and ``model.safetensors`` are hard-linked (copied across file systems) into
``<sweep output>/checkpoints/<digest[:16]>/`` and every run loads that copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vimpac_core.errors import CheckpointError
from vimpac_core.model_folder import CONFIG_NAME, WEIGHTS_NAME
from vimpac_core.storage import atomic_write_bytes, complete_dir, staged_dir
from vimpac_core.train.checkpoint import STATE_NAME, latest_checkpoint

log = logging.getLogger(__name__)

LATEST_PREFIX = "latest:"
DIGEST_CACHE_SUFFIX = ".sha256.json"
CHUNK = 8 << 20
STAGE_DIR = re.compile(r"^stage(\d+)$")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """``path``: the checkpoint folder to load; ``source``: what was asked; ``note``: why this one."""

    path: Path
    source: str
    note: str


def checkpoint_digest(folder: str | Path) -> str:
    """sha256 hex of ``<folder>/model.safetensors``, from the cache beside it when still valid."""
    weights = Path(folder) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME} here; give a checkpoint folder (config.json + "
                              f"{WEIGHTS_NAME}) or {LATEST_PREFIX}<pre-training output>")
    stat = weights.stat()
    cache = weights.with_name(weights.name + DIGEST_CACHE_SUFFIX)
    try:
        cached = json.loads(cache.read_text())
        if (cached["size"], cached["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or a stale or broken one: hash again
    sha = hashlib.sha256()
    with open(weights, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
    value = sha.hexdigest()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
    try:
        atomic_write_bytes(str(cache), (json.dumps(record) + "\n").encode())
    except OSError as err:  # a read-only checkpoint folder: hash again next time
        log.warning("cannot cache the digest of %s (%s)", weights, err)
    return value


def _stage_dirs(root: Path) -> list[tuple[int, Path]]:
    """``stage<i>`` folders under ``root``, highest stage first."""
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = STAGE_DIR.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return sorted(found, reverse=True)


def _newest_in(checkpoints: Path) -> Path | None:
    try:
        return latest_checkpoint(checkpoints)
    except CheckpointError as err:  # the pointer names nothing complete: no checkpoint here yet
        log.warning("%s", err)
        return None


def _step(folder: Path) -> object:
    try:
        return json.loads((folder / STATE_NAME).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_latest(output: str | Path) -> ResolvedCheckpoint:
    """The newest complete checkpoint of pre-training output ``output`` (module docstring)."""
    root = Path(output)
    source = f"{LATEST_PREFIX}{output}"
    stages = _stage_dirs(root)
    places = [(f"stage {n} of {stages[0][0]}", path / "checkpoints") for n, path in stages]
    places.append(("single stage", root / "checkpoints"))
    places.append(("checkpoint folder", root))  # latest:<output>/checkpoints works too
    for label, checkpoints in places:
        found = _newest_in(checkpoints) if checkpoints.is_dir() else None
        if found is not None:
            note = f"{label}: newest complete checkpoint {found.name} (step {_step(found)}) in {checkpoints}"
            return ResolvedCheckpoint(found, source, note)
        if stages and label.startswith("stage"):
            log.info("%s has no complete checkpoint yet", checkpoints)
    raise CheckpointError(
        f"{source}: no complete checkpoint under {root} (looked in stage*/checkpoints, checkpoints/); "
        "wait for pre-training to save one, or give a checkpoint folder"
    )


def resolve_checkpoint(spec: str) -> ResolvedCheckpoint:
    """A checkpoint folder as given, or ``latest:<pre-training output>`` resolved."""
    if spec.startswith(LATEST_PREFIX):
        return resolve_latest(spec[len(LATEST_PREFIX):])
    path = Path(spec)
    if not (path / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"checkpoint {spec!r}: no {WEIGHTS_NAME} there; give a checkpoint folder "
                              f"(e.g. <pre-training output>/checkpoints/final) or {LATEST_PREFIX}<pre-training output>")
    return ResolvedCheckpoint(path, spec, "given")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(src, dst)


def pin_checkpoint(folder: str | Path, sha256: str, pins: str | Path) -> Path:
    """``<pins>/<sha256[:16]>`` holding the model files of ``folder`` (hard links, else copies)."""
    final = Path(pins) / sha256[:16]
    existing = complete_dir(final)
    if existing is not None and checkpoint_digest(existing) == sha256:
        return existing
    with staged_dir(final) as tmp:
        for name in (CONFIG_NAME, WEIGHTS_NAME, WEIGHTS_NAME + DIGEST_CACHE_SUFFIX):
            if (Path(folder) / name).is_file():
                _link_or_copy(Path(folder) / name, tmp / name)
        if checkpoint_digest(tmp) != sha256:
            raise CheckpointError(f"{folder}: {WEIGHTS_NAME} changed while it was pinned; run the sweep again")
    return final
