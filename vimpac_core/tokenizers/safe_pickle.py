"""Read the official DALL-E ``encoder.pkl`` / ``decoder.pkl`` without executing their code.

Those files are pickles of whole ``dall_e`` modules. ``torch.load`` on them would import
``dall_e`` and run whatever globals the pickle names. Here the unpickler resolves only an
allow-list: the dall_e / torch.nn module classes become inert stand-ins that just keep their
attribute dicts, tensors are rebuilt by torch's storage loader, and any other global (``os.system``,
``builtins.eval``, ...) raises :class:`UnsafePickleError` before anything is called. Both torch
formats work: zip (torch >= 1.6) and legacy, through ``torch.load(pickle_module=...)``.
"""

from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from typing import IO, Any

import torch
import torch._utils

from vimpac_core.errors import TokenizerError, UnsafePickleError

# Module classes a released dVAE pickle references; each maps to an inert stand-in.
MODULE_CLASSES = frozenset({
    ("dall_e.encoder", "Encoder"), ("dall_e.encoder", "EncoderBlock"),
    ("dall_e.decoder", "Decoder"), ("dall_e.decoder", "DecoderBlock"),
    ("dall_e.utils", "Conv2d"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.pooling", "MaxPool2d"),
    ("torch.nn.modules.linear", "Identity"),
    ("torch.nn.modules.upsampling", "Upsample"),
})


class ModuleStandIn:
    """Holds a pickled module's attribute dict; has no behaviour. ``qualname`` names the original."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


def _device(*args: Any) -> str:
    """Stand-in for ``torch.device(...)``: the device is irrelevant, tensors go to map_location."""
    return ":".join(str(a) for a in args)


def _rebuild_parameter(data: torch.Tensor, requires_grad: Any = False, backward_hooks: Any = None,
                       *_: Any) -> torch.Tensor:
    """Keep the tensor, drop hooks and the Parameter wrapper."""
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("a pickled parameter does not hold a tensor; the file is not a dVAE checkpoint")
    return data


def _rebuild_tensor_v2(storage: Any, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    """Like torch's, but checks the view fits in its storage (a crafted file could point past it)."""
    n_elem = storage.size() if hasattr(storage, "size") else len(storage)
    if len(size) != len(stride) or min(size, default=1) < 0 or min(stride, default=0) < 0 or offset < 0:
        raise UnsafePickleError("a pickled tensor has an invalid shape/stride; refusing the file")
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) if all(size) else offset - 1
    if last >= n_elem:
        raise UnsafePickleError("a pickled tensor points outside its storage; refusing the file")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())


ALLOWED_FUNCTIONS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch", "device"): _device,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}

_STAND_INS: dict[tuple[str, str], type] = {
    key: type(f"StandIn_{key[1]}", (ModuleStandIn,), {"qualname": ".".join(key)}) for key in MODULE_CLASSES
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` knows only the allow-list above."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _STAND_INS:
            return _STAND_INS[key]
        if key in ALLOWED_FUNCTIONS:
            return ALLOWED_FUNCTIONS[key]
        raise UnsafePickleError(
            f"pickle refers to {module}.{name}, which is not part of a DALL-E dVAE checkpoint; refused "
            "without running it. Use the official encoder.pkl/decoder.pkl, or a folder made by `vimpac convert-dalle`."
        )


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``."""

    Unpickler = RestrictedUnpickler

    @staticmethod
    def load(f: IO[bytes], **kwargs: Any) -> Any:
        return RestrictedUnpickler(f, **kwargs).load()


def load_module_pickle(f: IO[bytes], name: str) -> ModuleStandIn:
    """Unpickle a whole-module torch checkpoint (zip or legacy) into stand-ins; ``name`` is for errors."""
    try:
        with warnings.catch_warnings():
            # Legacy files carry module source for a check that does not apply to stand-ins, and
            # sizing a TypedStorage warns about its deprecation: neither concerns the caller.
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(f, map_location="cpu", pickle_module=_RestrictedPickleModule, weights_only=False)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{name}: {exc}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, AttributeError) as exc:
        raise TokenizerError(f"{name} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, ModuleStandIn):
        raise TokenizerError(f"{name} does not hold a pickled dall_e module (found {type(obj).__name__})")
    return obj


def stand_in_state_dict(root: ModuleStandIn) -> tuple[str, dict[str, torch.Tensor]]:
    """Flatten a stand-in module tree like ``nn.Module.state_dict``: (root class, {"a.b.w": tensor})."""
    out: dict[str, torch.Tensor] = {}

    def visit(mod: Any, prefix: str) -> None:
        if not isinstance(mod, ModuleStandIn):
            raise TokenizerError(f"unexpected object {type(mod).__name__} at {prefix or 'root'} in the module tree")
        for table in ("_parameters", "_buffers"):
            for key, tensor in (mod.state.get(table) or {}).items():
                if tensor is not None:
                    out[prefix + key] = tensor
        for key, child in (mod.state.get("_modules") or {}).items():
            visit(child, f"{prefix}{key}.")

    visit(root, "")
    return root.qualname, out
