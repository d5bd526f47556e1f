"""Run every benchmark under bench/ (files named bench_*.py exposing ``main(smoke: bool) -> dict``).

    python -m bench.run_all            # full figures, written to bench/out/<name>.json
    python -m bench.run_all --smoke    # tiny inputs, one repeat: checks the benchmarks still run
    python -m bench.run_all --only decode tokenizer
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def save_figures(name: str, figures: dict, smoke: bool) -> Path:
    """Write a benchmark's figures to ``bench/out/<name>[.smoke].json``; returns the file."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}{'.smoke' if smoke else ''}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    return path


def run_script(name: str, main: Callable[..., dict], doc: str | None, smoke_help: str) -> None:
    """One benchmark run as a script (``python bench/bench_<name>.py [--smoke]``): its figures are
    saved where ``run_all`` saves them, then printed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    smoke = parser.parse_args().smoke
    figures = main(smoke=smoke)
    save_figures(name, figures, smoke)
    print(json.dumps(figures, indent=2, default=str))


def run(names: list[str], smoke: bool) -> dict[str, dict]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        start = time.perf_counter()
        print(f"[bench] {name} ({'smoke' if smoke else 'full'}) ...", flush=True)
        figures = module.main(smoke=smoke)
        figures = dict(figures or {})
        figures["_seconds"] = round(time.perf_counter() - start, 2)
        results[name] = figures
        save_figures(name, figures, smoke)
        print(json.dumps({name: figures}, indent=2, default=str), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one repeat")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (default: all)")
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; available: {names}")
        names = [n for n in names if n in args.only]
    run(names, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
