"""Preemption: SIGTERM to the ranks ends training at the next optimizer step with a checkpoint.

A cluster that reclaims a machine (spot instance, Kubernetes eviction) sends SIGTERM first and
kills later. The handler only sets a flag; after every optimizer step the ranks agree on it (an
all-reduce of one number, so they stop at the same step even if the signal reached them apart),
save a checkpoint of that step and raise `Preempted`, a retriable error: the launcher reports the
run as interrupted and a retry resumes from that checkpoint, losing no step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import torch
import torch.distributed as dist

from vimpac_core.errors import TransientError


def defer_sigterm(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a worker outlives the first SIGTERM (a machine being reclaimed
    signals every process), so its rank can finish the step and save; the next SIGTERM (the rank's
    exit terminating its workers, or the launcher's clean-up) ends it as usual."""

    def rearm(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, rearm)


class Preempted(TransientError):
    """SIGTERM stopped training after a step whose checkpoint was written; resuming continues it."""


class PreemptionWatch:
    """Whether any rank got SIGTERM (`requested` is collective: every rank must call it each step)."""

    def __init__(self) -> None:
        self.signalled = False

    def requested(self, device: torch.device) -> bool:
        flag = torch.tensor([1.0 if self.signalled else 0.0], device=device)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


@contextlib.contextmanager
def watch_sigterm() -> Iterator[PreemptionWatch]:
    """While inside, SIGTERM only sets ``watch.signalled`` (main thread; elsewhere nothing is
    installed and the watch never fires). The previous handler comes back on exit."""
    watch = PreemptionWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return

    def handler(signum: int, frame: object) -> None:
        watch.signalled = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
