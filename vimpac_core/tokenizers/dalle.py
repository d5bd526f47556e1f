"""The DALL-E discrete VAE (Ramesh et al., 2021), encoder and decoder, as released.

Our own modules whose ``state_dict`` keys and shapes are exactly those of the official
``encoder.pkl`` / ``decoder.pkl`` (74 / 76 tensors: ``blocks.input.w``,
``blocks.group_1.block_1.res_path.conv_1.w``, ...), so the official weights load with
``strict=True``. Inference only: activations are reused in place, which does not change a single
float operation, and the block sum keeps the released order ``id_path(x) + post_gain * res(x)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOGIT_LAPLACE_EPS = 0.1
WIDTH_MULTIPLIERS = (1, 2, 4, 8)  # group widths in units of n_hid: 256, 512, 1024, 2048


class Conv2d(nn.Module):
    """'same' convolution with the release's parameter names ``w`` [out, in, k, k] and ``b`` [out]."""

    def __init__(self, n_in: int, n_out: int, kw: int) -> None:
        super().__init__()
        self.padding = (kw - 1) // 2
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw**2), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(n_out), requires_grad=False)
        self.packed: tuple[torch.Tensor, torch.Tensor] | None = None
        self._packed_from: tuple[int, int] | None = None  # (w, b) version counters the copy was made from
        self._w_channels_last: torch.Tensor | None = None
        self._w_channels_last_from: tuple | None = None  # (storage, version, dtype, device) of w copied

    def prepack(self) -> None:
        """Keep a copy of the weights in oneDNN's blocked layout (not part of the state dict)."""
        pad = (self.padding, self.padding)
        w = torch._C._nn.mkldnn_reorder_conv2d_weight(self.w.detach().to_mkldnn(), pad, (1, 1), (1, 1), 1)
        self.packed = (w, self.b.detach().to_mkldnn())
        self._packed_from = (self.w._version, self.b._version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_mkldnn:
            # load_state_dict and in-place edits bump the version counters: never run stale weights.
            if self._packed_from != (self.w._version, self.b._version):
                self.prepack()
            w, b = self.packed
            pad = (self.padding, self.padding)
            return torch.mkldnn_convolution(x, w, b, pad, (1, 1), (1, 1), 1)
        return F.conv2d(x, self.weight_for(x), self.b, padding=self.padding)

    def weight_for(self, x: torch.Tensor) -> torch.Tensor:
        """``w``, or for a channels-last input its channels-last copy, made once and kept.

        Given a channels-last input, ``F.conv2d`` runs channels-last and copies a k x k weight into
        that layout first, on every call (126 MB per call of the full encoder, ~4% of a 64 px
        encode on one thread). Handing it that same copy gives the kernel the same numbers. 1x1
        weights are in both layouts already; other inputs, and weights being trained, get ``w``,
        so the layout ``F.conv2d`` picks is never changed.
        """
        w = self.w
        if (x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last)
                or w.is_contiguous(memory_format=torch.channels_last) or (w.requires_grad and torch.is_grad_enabled())):
            return w
        source = (w.untyped_storage().data_ptr(), w._version, w.dtype, w.device)
        if self._w_channels_last_from != source:  # new weights (load_state_dict, .to()): copy again
            with torch.inference_mode(False):  # a normal tensor, usable outside inference mode too
                self._w_channels_last = w.detach().contiguous(memory_format=torch.channels_last)
            self._w_channels_last_from = source
        return self._w_channels_last


class ResPath(nn.Module):
    """relu, conv_1, relu, conv_2, relu, conv_3, relu, conv_4 (kernel sizes given per layer)."""

    def __init__(self, n_in: int, n_hid: int, n_out: int, kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv_1 = Conv2d(n_in, n_hid, kernels[0])
        self.conv_2 = Conv2d(n_hid, n_hid, kernels[1])
        self.conv_3 = Conv2d(n_hid, n_hid, kernels[2])
        self.conv_4 = Conv2d(n_hid, n_out, kernels[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_1(F.relu(x))  # not in place: x also feeds the identity path
        h = self.conv_2(F.relu_(h))
        h = self.conv_3(F.relu_(h))
        return self.conv_4(F.relu_(h))


class Block(nn.Module):
    """out = id_path(x) + post_gain * res_path(x); id_path is a 1x1 conv when widths differ."""

    def __init__(self, n_in: int, n_out: int, n_layers: int, kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.post_gain = 1 / (n_layers**2)
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = ResPath(n_in, n_out // 4, n_out, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # post_gain * r, then (commutative, so bit-identical) + id_path(x), reusing r's memory.
        return self.res_path(x).mul_(self.post_gain).add_(self.id_path(x))


class Group(nn.Module):
    """``block_1`` .. ``block_n`` then an optional 2x resample (max-pool down, nearest up)."""

    def __init__(self, blocks: list[Block], resample: str | None) -> None:
        super().__init__()
        for i, block in enumerate(blocks):
            self.add_module(f"block_{i + 1}", block)
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        if self.resample == "down":
            x = F.max_pool2d(x, kernel_size=2)
        elif self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x


class OutputHead(nn.Module):
    """relu then a 1x1 ``conv``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = Conv2d(n_in, n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu_(x))  # x, the last group's output, is used nowhere else


class Blocks(nn.Module):
    """Container named ``blocks`` in the release: ``input``, ``group_1..4``, ``output``."""

    def __init__(self, input_conv: Conv2d, groups: list[Group], output: OutputHead) -> None:
        super().__init__()
        self.input = input_conv
        for i, group in enumerate(groups):
            self.add_module(f"group_{i + 1}", group)
        self.output = output


class DalleEncoder(nn.Module):
    """Pixels [N, 3, H, W] (after :func:`map_pixels`) -> logits [N, vocab_size, H/8, W/8]."""

    def __init__(self, n_hid: int = 256, vocab_size: int = 8192, n_blk_per_group: int = 2,
                 input_channels: int = 3, group_count: int = 4) -> None:
        super().__init__()
        self.n_hid, self.vocab_size, self.n_blk_per_group = n_hid, vocab_size, n_blk_per_group
        n_layers = group_count * n_blk_per_group
        widths = [n_hid * m for m in WIDTH_MULTIPLIERS[:group_count]]
        groups, n_in = [], n_hid
        for g, width in enumerate(widths):
            blocks = [Block(n_in if i == 0 else width, width, n_layers, (3, 3, 3, 1)) for i in range(n_blk_per_group)]
            groups.append(Group(blocks, "down" if g < group_count - 1 else None))
            n_in = width
        self.blocks = Blocks(Conv2d(input_channels, n_hid, 7), groups, OutputHead(widths[-1], vocab_size))
        self.prepacked = False
        self.source_sha256: str | None = None  # of the file the weights came from (set by the loaders)

    def prepack_cpu(self) -> bool:
        """Opt in to the fast CPU path: fp32 inference through oneDNN with weights reordered once.

        About 1.15x the package's frames/s on one core (bench/README.md). The convolutions then
        run in another memory layout than ``F.conv2d``, so logits differ from the release by
        ~1e-6 and codes can differ at near-ties of the argmax; ``forward(x, exact=True)`` still
        takes the release's path. Returns False (and changes nothing) where oneDNN is unavailable.
        Weights changed later (``load_state_dict``) are re-packed on the next call.
        """
        if not torch.backends.mkldnn.is_available():
            return False
        for conv in (m for m in self.modules() if isinstance(m, Conv2d)):
            conv.prepack()
        self.prepacked = True
        return True

    def forward(self, x: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
        """``exact``: the release's ops, in the input's own memory layout as ``F.conv2d`` picks it,
        even when the oneDNN path is on; logits are then bit-identical to the ``DALL-E`` package's
        for the same input tensor (layout included), batch and thread count (the package's own
        figures vary with each of the three by ~1e-6)."""
        b = self.blocks
        onednn = self.prepacked and not exact and x.device.type == "cpu" and x.dtype == torch.float32
        x = b.input(x.to_mkldnn() if onednn else x)
        for name in (n for n in b._modules if n.startswith("group_")):
            x = b._modules[name](x)
        x = b.output(x)
        return x.to_dense() if onednn else x

    def codes(self, x: torch.Tensor, *, exact: bool = True) -> torch.Tensor:
        """float pixels [N, 3, H, W] holding 0..255 -> codes [N, H/8, W/8] (int64): the VIMPAC input
        transform (:func:`frames_to_encoder_input`, in place), the encoder, argmax. Exact: ``x`` runs
        in its own layout, like the package given the same tensor (frames permuted from [N, H, W, 3],
        as :meth:`encode` and the tokenizers pass them, are channels-last). ``exact=False``
        takes the oneDNN path when it is on (see :meth:`prepack_cpu`). Weights cast to bf16 (by
        ``DalleTokenizer(precision="bf16")``): the transform in fp32, the encoder in bf16 on
        channels-last activations (oneDNN's fast layout), the argmax of its bf16 logits."""
        dtype = self.blocks.input.w.dtype
        if dtype != torch.float32:
            return self(frames_to_encoder_input(x).to(dtype, memory_format=torch.channels_last)).argmax(1)
        return self(frames_to_encoder_input(x), exact=exact).argmax(1)

    @torch.inference_mode()
    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 RGB frames [N, H, W, 3] -> codes [N, H/8, W/8] (int64), exactly as released."""
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3]; got {frames.dtype} {tuple(frames.shape)}")
        return self.codes(frames.to(self.blocks.input.w.device).permute(0, 3, 1, 2).float())


class DalleDecoder(nn.Module):
    """Codes [N, h, w] -> logit-Laplace statistics [N, 2 * output_channels, 8h, 8w].

    The released input layer is a 1x1 conv over one-hot codes; a column lookup gives the same
    numbers (the other terms are exact zeros) without building an [N, 8192, h, w] one-hot tensor.
    """

    def __init__(self, n_init: int = 128, n_hid: int = 256, vocab_size: int = 8192, n_blk_per_group: int = 2,
                 output_channels: int = 3, group_count: int = 4) -> None:
        super().__init__()
        self.vocab_size, self.output_channels = vocab_size, output_channels
        n_layers = group_count * n_blk_per_group
        widths = [n_hid * m for m in reversed(WIDTH_MULTIPLIERS[:group_count])]
        groups, n_in = [], n_init
        for g, width in enumerate(widths):
            blocks = [Block(n_in if i == 0 else width, width, n_layers, (1, 3, 3, 3)) for i in range(n_blk_per_group)]
            groups.append(Group(blocks, "up" if g < group_count - 1 else None))
            n_in = width
        self.blocks = Blocks(Conv2d(vocab_size, n_init, 1), groups, OutputHead(widths[-1], 2 * output_channels))
        self.source_sha256: str | None = None

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b = self.blocks
        w = b.input.w[:, :, 0, 0]  # [n_init, vocab]
        x = (w.t()[codes.long()] + b.input.b).permute(0, 3, 1, 2)  # [N, n_init, h, w]
        for name in (n for n in b._modules if n.startswith("group_")):
            x = b._modules[name](x)
        return b.output(x)


def map_pixels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [eps, 1 - eps], in place: ``(1 - 2 eps) * x + eps`` as released."""
    return x.mul_(1 - 2 * LOGIT_LAPLACE_EPS).add_(LOGIT_LAPLACE_EPS)


def unmap_pixels(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`map_pixels`, clamped to [0, 1]."""
    return torch.clamp((x - LOGIT_LAPLACE_EPS) / (1 - 2 * LOGIT_LAPLACE_EPS), 0, 1)


def frames_to_encoder_input(x: torch.Tensor) -> torch.Tensor:
    """float [N, 3, H, W] holding 0..255 -> the encoder's input, in place, in the VIMPAC release's
    order of float operations: x/255, (x-0.5)/0.5, then back x*0.5+0.5, then map_pixels."""
    x = x.div_(255).sub_(0.5).div_(0.5)
    x = x.mul_(0.5).add_(0.5)
    return map_pixels(x)


def stats_to_pixels(stats: torch.Tensor) -> torch.Tensor:
    """Decoder output [N, 6, H, W] -> pictures [N, 3, H, W] in [0, 1]: unmap(sigmoid(mu))."""
    return unmap_pixels(torch.sigmoid(stats[:, :3]))
