"""The one folder format of every saved model, the VIMPAC transformers and the VQ-VAE tokenizer:
``config.json`` (the model's config, with ``architecture``: the class that wrote it) beside
``model.safetensors`` (the state_dict; no pickle anywhere).

`write_model_folder` writes both into a hidden temporary folder next to the target and swaps it in
(``storage.replace_dir``), so a reader sees the old folder or the new one, never half of one;
`read_model_folder` reads one back, also from where a kill during that swap left it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vimpac_core.errors import CheckpointError
from vimpac_core.storage import complete_dir, staged_dir

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def write_model_folder(
    path: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any], architecture: str,
    *, metadata: dict[str, str] | None = None, sort_keys: bool = False,
) -> Path:
    """Write ``state`` (moved to CPU, contiguous) and ``{"architecture": ..., **config}`` as the
    folder ``path`` atomically; ``metadata`` goes into the safetensors header. Returns ``path``."""
    final = Path(path)
    with staged_dir(final) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata=metadata)
        meta = {"architecture": architecture, **config}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=sort_keys) + "\n")
    return final


def read_model_folder(path: str | Path, what: str = "a saved model folder") -> tuple[dict[str, Any], str, Path]:
    """-> (config as saved, without ``architecture``; the architecture, "" when the folder predates
    it; the path of its weights). Raises CheckpointError naming the folder when it is not one."""
    folder = complete_dir(path) or Path(path)
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{folder} is not {what} (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        raw = json.loads(config_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object of config fields")
    return raw, str(raw.pop("architecture", "")), weights


def load_weights(weights: Path) -> dict[str, torch.Tensor]:
    """The state_dict of a folder's ``model.safetensors`` (on CPU)."""
    return load_file(str(weights), device="cpu")
