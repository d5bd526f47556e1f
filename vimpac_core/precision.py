"""Reduced precision: which devices run bf16 at hardware speed, and the one refusal where they do not.

bf16 pays only where the hardware multiplies in it: CUDA GPUs that report bf16 support (Ampere
and later) and CPUs whose oneDNN bf16 kernels run natively (x86 with AVX-512 / AVX-512 BF16 /
AMX, Arm with BF16). Elsewhere torch still computes bf16 correctly, but by emulation: on an AVX2
core a 2048x256 @ 256x1024 matmul took 9 ms in fp32 and 930 ms in bf16. Asking for bf16 there is
refused with the reason, unless ``VIMPAC_ALLOW_EMULATED_BF16=1`` is set (the test suite sets it to
check the numerics on any machine; nothing else should).

Torch is imported lazily: config validation imports this module without it.
"""

from __future__ import annotations

import os

from vimpac_core.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
ALLOW_EMULATED_ENV = "VIMPAC_ALLOW_EMULATED_BF16"


def bf16_unsupported_reason(device) -> str | None:
    """None when ``device`` (str or torch.device) runs bf16 natively, else why not (one phrase)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return None
        return "this GPU has no native bf16 (needs compute capability 8.0 or later)"
    if device.type == "cpu":
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return None
        return (f"this CPU has no native bf16 (torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
                "needs AVX-512 (BF16) or AMX on x86, BF16 on Arm), so torch would emulate it far slower than fp32")
    return f"bf16 is not supported on device type {device.type!r}"


def check_bf16(device, setting: str, fallback: str) -> None:
    """Raise ConfigError naming ``setting`` unless ``device`` runs bf16 natively (or emulation is
    allowed through ``VIMPAC_ALLOW_EMULATED_BF16=1``). ``fallback``: the fp32 value to suggest."""
    reason = bf16_unsupported_reason(device)
    if reason is None or os.environ.get(ALLOW_EMULATED_ENV) == "1":
        return
    raise ConfigError(f"{setting}: bf16 on {device}: {reason}; use {fallback} "
                      f"(or set {ALLOW_EMULATED_ENV}=1 to run the emulation anyway)")


def check_precision(precision: str, setting: str = "precision") -> str:
    """``precision`` if it is one of PRECISIONS, else ConfigError naming ``setting``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{setting}={precision!r} is not one of {PRECISIONS}")
    return precision
