"""Every benchmark still runs: its smoke mode (tiny inputs, one repeat) in a fresh process.

Figures are not asserted here (timings belong in bench/README.md, not in tests); what is checked
is that each benchmark finishes and reports the figures it promises.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import OUT_DIR, discover

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", discover())
def test_benchmark_smoke_mode_runs(name):
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--smoke", "--only", name],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((OUT_DIR / f"{name}.smoke.json").read_text())
    numbers = [v for v in figures.values() if isinstance(v, (int, float))] + [
        v for d in figures.values() if isinstance(d, dict) for v in d.values() if isinstance(v, (int, float))]
    assert len(figures) > 1 and numbers, figures
