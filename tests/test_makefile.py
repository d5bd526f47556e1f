"""`make test` and `make demo` set the environment up themselves on a fresh clone, and rebuild it
when pyproject.toml changes (checked with make's dry run on a copy of the real Makefile)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(folder: Path, target: str) -> str:
    out = subprocess.run(["make", "-n", target], cwd=folder, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("target", ["test", "demo"])
def test_fresh_clone_sets_up_before_running(clone: Path, target: str) -> None:
    plan = dry_run(clone, target)
    lines = plan.splitlines()
    venv = next(i for i, line in enumerate(lines) if "-m venv .venv" in line)
    torch = next(i for i, line in enumerate(lines) if "pip install -q torch==" in line)
    project = next(i for i, line in enumerate(lines) if 'pip install -q -e ".[dev,dask]"' in line)
    run = next(i for i, line in enumerate(lines) if ("-m pytest" if target == "test" else "vimpac demo") in line)
    assert venv < torch < project < run


def test_up_to_date_environment_is_not_reinstalled_but_a_changed_pyproject_is(clone: Path) -> None:
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "python").write_text("")
    stamp = clone / ".venv" / ".installed"
    stamp.write_text("")
    later = time.time() + 5
    os.utime(stamp, (later, later))
    plan = dry_run(clone, "test")
    assert "pip install" not in plan and "-m pytest" in plan
    later += 5
    os.utime(clone / "pyproject.toml", (later, later))
    plan = dry_run(clone, "test")
    assert 'pip install -q -e ".[dev,dask]"' in plan and "-m venv" not in plan
