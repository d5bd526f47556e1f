"""The checkpoint format (config.json + model.safetensors), weight loading and positional resizing.

One format for every model class: the folder holds the VimpacConfig, the class name, and the
state_dict without the tied aliases of the decoder (they are restored from their sources).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vimpac_core.errors import CheckpointError
from vimpac_core.model_folder import (  # noqa: F401 (the CLI imports them from here)
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights,
    read_model_folder,
    write_model_folder,
)

from .config import VimpacConfig

log = logging.getLogger(__name__)

# alias -> source: the decoder of the mask-prediction head shares the embedding and its bias.
TIED_KEYS = {"mlm_head.decoder.weight": "backbone.embedding.weight", "mlm_head.decoder.bias": "mlm_head.bias"}
HEAD_PREFIXES = ("mlm_head.", "cls_head.", "cls_fc.")
# Positional tables (key suffix) -> the grid axes they run along ("cls" rows are never resized).
POSITION_AXES = {
    "positional_embedding.temporal_pos_embedding": "T",
    "positional_embedding.height_pos_embedding": "H",
    "positional_embedding.width_pos_embedding": "W",
    "positional_embedding.spatial_pos_embedding": "HW",
    "positional_embedding.positional_embedding": "THW",  # default variant: row 0 is CLS
}
INIT_STD = 0.02  # BERT's initializer_range, as in the original


def init_weights(module: nn.Module) -> None:
    """Linear/Embedding weights N(0, 0.02), biases 0, LayerNorm 1/0, ``cls_param`` N(0, 0.02).

    Positional tables are initialised where they are made (backbone.PositionalEmbedding), and the
    pre-activation variant scales its residual projections afterwards (VimpacModel), as the original.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    for name, param in module.named_parameters(recurse=False):
        if name == "cls_param":
            nn.init.normal_(param, std=INIT_STD)


def interpolate_positional_embedding(table: torch.Tensor, src: tuple[int, ...], dst: tuple[int, ...]) -> torch.Tensor:
    """table [prod(src), D] laid out over axes of sizes ``src`` -> [prod(dst), D].

    Linear (bi-/tri-linear for 2/3 axes) interpolation, align_corners=False, features as channels.
    """
    if tuple(src) == tuple(dst):
        return table.clone()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(src)]
    grid = table.reshape(*src, -1).movedim(-1, 0)[None].float()
    out = F.interpolate(grid, size=tuple(dst), mode=mode, align_corners=False)
    return out[0].movedim(0, -1).reshape(math.prod(dst), -1).to(table.dtype)


def _axis_sizes(config: VimpacConfig, axes: str) -> tuple[int, ...]:
    t, h, w = config.grid_shape
    return tuple({"T": t, "H": h, "W": w}[a] for a in axes)


def resize_state_dict(
    state_dict: dict[str, torch.Tensor], src: VimpacConfig, dst: VimpacConfig
) -> dict[str, torch.Tensor]:
    """Interpolate every positional table from src's grid (clip_len, grid) to dst's.

    Works on weights and on any tensor shaped like them (Adam's exp_avg / exp_avg_sq). Keys are
    matched by suffix, so a ``backbone.`` prefix (or none) is fine; other tensors are returned as is.
    """
    if src.pos_emb != dst.pos_emb:
        raise CheckpointError(
            f"pos_emb: cannot resize {src.pos_emb!r} positional tables into a {dst.pos_emb!r} model"
        )
    out = dict(state_dict)
    for key, value in state_dict.items():
        suffix = next((s for s in POSITION_AXES if key.endswith(s)), None)
        if suffix is None:
            continue
        axes = POSITION_AXES[suffix]
        old, new = _axis_sizes(src, axes), _axis_sizes(dst, axes)
        if axes == "THW":
            out[key] = torch.cat([value[:1], interpolate_positional_embedding(value[1:], old, new)])
        else:
            out[key] = interpolate_positional_embedding(value, old, new)
    return out


def resize_optimizer_state(
    tensors: dict[str, torch.Tensor], src: VimpacConfig, dst: VimpacConfig
) -> dict[str, torch.Tensor]:
    """Optimizer tensors by name, ``"<parameter>/<slot>"`` (e.g. Adam's ``exp_avg``, ``exp_avg_sq``,
    as checkpoints store them), with the positional tables' slots interpolated from ``src``'s token
    grid to ``dst``'s like the tables themselves; every other entry is returned unchanged."""
    out = {}
    for key, value in tensors.items():
        name = key.rsplit("/", 1)[0]
        resize = _is_position(name) and torch.is_tensor(value) and value.dim() == 2
        out[key] = resize_state_dict({name: value}, src, dst)[name] if resize else value
    return out


def _align_prefix(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map between a bare backbone (VimpacModel) and a task model holding it as ``backbone.``."""
    want_prefix = any(k.startswith("backbone.") for k in target)
    has_prefix = any(k.startswith("backbone.") for k in state)
    if want_prefix and not has_prefix:
        return {f"backbone.{k}": v for k, v in state.items()}
    if has_prefix and not want_prefix:
        return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _is_position(key: str) -> bool:
    return any(key.endswith(s) for s in POSITION_AXES)


def load_pretrained_weights(
    model: nn.Module, state_dict: dict[str, torch.Tensor], *, src_config: VimpacConfig, different_shape: bool
) -> None:
    """Load ``state_dict`` (saved from a model of ``src_config``) into ``model``.

    Strict about keys, except heads: a checkpoint's heads the model lacks are dropped, heads the
    checkpoint lacks keep their fresh initialisation (both logged). Positional tables of another
    shape are interpolated when ``different_shape``, else CheckpointError names the parameter and
    both shapes. An embedding with more rows (another vocabulary) keeps its first rows.
    """
    target = model.state_dict()
    state = _align_prefix({k: v for k, v in state_dict.items() if k not in TIED_KEYS}, target)
    if different_shape:
        state = resize_state_dict(state, src_config, model.config)
    dropped = sorted(k for k in state if k not in target and k.startswith(HEAD_PREFIXES))
    unexpected = sorted(k for k in state if k not in target and k not in dropped)
    missing = sorted(k for k in target if k not in state and k not in TIED_KEYS)
    new_heads = [k for k in missing if k.startswith(HEAD_PREFIXES)]
    missing = [k for k in missing if k not in new_heads]
    if unexpected or missing:
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}: unexpected keys {unexpected[:8]}, "
            f"missing keys {missing[:8]}; check that it was saved from the same layout/pos_emb/layers"
        )
    for key in list(state):
        if key in dropped:
            del state[key]
            continue
        have, want = tuple(state[key].shape), tuple(target[key].shape)
        if have == want:
            continue
        if key.endswith(("embedding.weight", "mlm_head.bias")) and have[0] > want[0] and have[1:] == want[1:]:
            state[key] = state[key][: want[0]]  # another vocabulary: keep the first rows
            continue
        hint = " (pass different_shape=True to interpolate)" if _is_position(key) else ""
        raise CheckpointError(f"parameter {key}: checkpoint shape {have} != model shape {want}{hint}")
    if dropped:
        log.info("checkpoint heads not used by %s: %s", type(model).__name__, ", ".join(dropped))
    if new_heads:
        log.info("newly initialised (not in checkpoint): %s", ", ".join(new_heads))
    model.load_state_dict(state, strict=False)


def read_pretrained(path: str | Path) -> tuple[VimpacConfig, str, dict[str, torch.Tensor]]:
    """-> (config, architecture class name, state_dict) of a saved folder (model_folder's format);
    a folder that a kill left moved aside while being replaced is read from where it survived."""
    raw, architecture, weights = read_model_folder(path)
    return VimpacConfig(**raw), architecture, load_weights(weights)


class PreTrainedMixin:
    """``save_pretrained(dir)`` / ``from_pretrained(dir)`` for the model classes (needs ``self.config``)."""

    config: VimpacConfig

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config.json + model.safetensors to ``path`` atomically (model_folder's format); the
        tied aliases of the decoder are left out (restored from their sources on load)."""
        state = {k: v for k, v in self.state_dict().items() if k not in TIED_KEYS}
        return write_model_folder(path, state, self.config.model_dump(), type(self).__name__)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, config: VimpacConfig | None = None, *, different_shape: bool = False
    ) -> nn.Module:
        """Build this class from a saved folder; ``config`` overrides the saved one (e.g. num_labels,
        frame_size with ``different_shape=True``). Heads of another task are dropped / freshly made."""
        saved_config, _, state = read_pretrained(path)
        model = cls(config or saved_config)
        load_pretrained_weights(model, state, src_config=saved_config, different_shape=different_shape)
        return model
