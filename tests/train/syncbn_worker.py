"""torchrun worker for test_ddp: GlooSyncBatchNorm on 2 ranks == BatchNorm1d on the joined batch."""

from __future__ import annotations

import sys

import torch
from torch import nn

from vimpac_core.train.distributed import GlooSyncBatchNorm, cleanup, init_distributed


def main(out_dir: str) -> None:
    env = init_distributed("cpu")
    torch.manual_seed(0)
    x = torch.randn(8, 6)
    w = torch.randn(8, 6)
    ref = nn.BatchNorm1d(6)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    sync = GlooSyncBatchNorm(6)
    sync.load_state_dict(ref.state_dict())
    xr = x.clone().requires_grad_(True)
    yr = ref(xr)
    (yr * w).sum().backward()
    part = slice(4 * env.rank, 4 * env.rank + 4)
    xs = x[part].clone().requires_grad_(True)
    ys = sync(xs)
    (ys * w[part]).sum().backward()
    for p in (sync.weight, sync.bias):
        torch.distributed.all_reduce(p.grad)  # what DDP does with parameter gradients
    checks = {
        "output": torch.allclose(ys, yr[part], atol=1e-5),
        "input_grad": torch.allclose(xs.grad, xr.grad[part], atol=1e-5),
        "weight_grad": torch.allclose(sync.weight.grad, ref.weight.grad, atol=1e-5),
        "bias_grad": torch.allclose(sync.bias.grad, ref.bias.grad, atol=1e-5),
        "running_mean": torch.allclose(sync.running_mean, ref.running_mean, atol=1e-6),
        "running_var": torch.allclose(sync.running_var, ref.running_var, atol=1e-6),
    }
    with open(f"{out_dir}/rank{env.rank}.txt", "w") as f:
        f.write(" ".join(k for k, ok in checks.items() if not ok) or "OK")
    cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
