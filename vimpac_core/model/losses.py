"""Mask-then-predict and contrastive (InfoNCE, SimCLR form) losses, as released.

``nce_loss`` gathers negatives from every rank when ``torch.distributed`` is initialised, with
gradients flowing back to the rank that owns each projection.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for our slice (SimCLR GatherLayer)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * n : (rank + 1) * n]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x [N, ...] on every rank -> (all ranks' rows [world*N, ...] in rank order, offset of ours)."""
    if not _distributed():
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


def nce_loss(proj: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE over two clips per video, multiplied by the temperature (as released).

    proj [2B, P]: rows 0..B-1 first clips, B..2B-1 second clips of the same videos.
    For clip-1 rows the logits are [h1·h2ᵀ, h1·h1ᵀ without self] / τ and the target is the
    matching clip-2 row; symmetric for clip-2 rows. Returns (loss_1 + loss_2) * τ, a scalar.
    """
    if proj.dim() != 2 or proj.shape[0] % 2:
        raise ValueError(f"nce_loss needs [2B, P] projections (two clips per video), got {tuple(proj.shape)}")
    z = F.normalize(proj, dim=-1)
    b = z.shape[0] // 2
    h1, h2 = z[:b], z[b:]
    all_h1, offset = gather_with_grad(h1)
    all_h2, _ = gather_with_grad(h2)
    target = torch.arange(b, device=z.device) + offset
    self_mask = F.one_hot(target, all_h1.shape[0]).bool()

    def side(a: torch.Tensor, all_a: torch.Tensor, all_other: torch.Tensor) -> torch.Tensor:
        positives = a @ all_other.T / temperature
        negatives = (a @ all_a.T / temperature).masked_fill(self_mask, float("-inf"))
        return F.cross_entropy(torch.cat([positives, negatives], dim=1), target)

    return (side(h1, all_h1, all_h2) + side(h2, all_h2, all_h1)) * temperature


def mask_then_predict_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over predicted positions.

    logits [M, V+5] and labels [M] (only masked positions), or logits [..., V+5] with labels [...]
    holding -100 where nothing is predicted. Returns (mean loss, accuracy), both scalars; with no
    masked position the loss is 0 (still attached to the graph) and the accuracy 0.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    chosen = labels != -100
    count = int(chosen.sum())  # one host sync
    if count == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    if count < chosen.numel():  # rows already restricted to masked positions need no copy
        logits, labels = logits[chosen], labels[chosen]
    loss = F.cross_entropy(logits, labels)
    accuracy = (logits.detach().argmax(dim=-1) == labels).float().mean()
    return loss, accuracy
