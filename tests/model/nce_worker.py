"""Run under torchrun (gloo): nce_loss on this rank's share of a fixed global batch.

Rank r holds videos r*B..(r+1)*B-1: its first clips then its second clips. The projections come
from a Linear layer, so both input gradients and parameter gradients (averaged like DDP does)
are recorded. Writes {loss, input_grad, weight_grad} to OUT_DIR/rank{r}.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from vimpac_core.model import nce_loss

VIDEOS_PER_RANK, IN_DIM = 3, 8


def global_batch(world: int) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """-> (first clips [world*B, IN], second clips [world*B, IN], projection layer), all seeded."""
    g = torch.Generator().manual_seed(0)
    n = world * VIDEOS_PER_RANK
    first, second = torch.randn(n, IN_DIM, generator=g), torch.randn(n, IN_DIM, generator=g)
    torch.manual_seed(1)
    return first, second, torch.nn.Linear(IN_DIM, 16)


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    first, second, layer = global_batch(world)
    rows = slice(rank * VIDEOS_PER_RANK, (rank + 1) * VIDEOS_PER_RANK)
    x = torch.cat([first[rows], second[rows]]).requires_grad_(True)
    loss = nce_loss(layer(x), temperature=0.2)
    loss.backward()
    weight_grad = layer.weight.grad.clone()
    dist.all_reduce(weight_grad)
    weight_grad /= world  # what DDP does with parameter gradients
    torch.save({"loss": loss.detach(), "input_grad": x.grad, "weight_grad": weight_grad},
               out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
