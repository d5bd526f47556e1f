"""The rank side of a launch: what every torchrun entry point (pretrain, finetune, evaluate) does
around its work: die with torchrun, read the flat config, join the process group, record a failure
for the launcher (failures.record_failure), leave the group."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vimpac_core.train.distributed import DistEnv, cleanup, init_distributed
from vimpac_core.train.failures import die_with_parent, record_failure

DONE_KEYS = ("step", "epoch", "checkpoint", "top1")


def worker_main(argv: list[str] | None, config_cls: Any, work: Callable[[Any, DistEnv], dict], name: str) -> int:
    """``--config run.json`` (``config_cls.to_flat()`` as JSON) -> ``work(config, env)`` on this rank."""
    parser = argparse.ArgumentParser(description=f"VIMPAC {name} worker (run it through torchrun)")
    parser.add_argument("--config", required=True, help=f"JSON file of {config_cls.__name__}.to_flat()")
    args = parser.parse_args(argv)
    die_with_parent()  # torchrun killed (its launcher gone, or cancelled): this rank goes too
    rank = int(os.environ.get("RANK", 0))
    output = None
    try:
        flat = json.loads(Path(args.config).read_text())
        output = flat.get("output")
        config = config_cls.from_flat(flat)
        env = init_distributed(config.device)
        metrics = work(config, env)
    except BaseException as err:
        if output:
            record_failure(output, rank, err)
        raise
    finally:
        cleanup()
    if env.is_main:
        print(f"[{name}] done " + json.dumps({k: metrics[k] for k in DONE_KEYS if k in metrics}), flush=True)
    return 0
