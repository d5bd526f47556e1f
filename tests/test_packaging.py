"""The installed project, not only a checkout: a wheel holds every preset and its `vimpac` runs
from any folder with nothing of the checkout on the path (the demo itself runs from the wheel in
tests/flows/test_pipeline_flow.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "vimpac_cli" / "configs"


def installed_env(target: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(target)}


def test_the_wheel_holds_every_preset(installed_wheel):
    packaged = {p.relative_to(installed_wheel / "vimpac_cli" / "configs") for p in
                (installed_wheel / "vimpac_cli" / "configs").rglob("*.yaml")}
    assert packaged == {p.relative_to(PRESETS) for p in PRESETS.rglob("*.yaml")}
    assert len(packaged) >= 20 and Path("demo.yaml") in packaged
    assert (REPO / "configs").resolve() == PRESETS  # the checkout's ./configs is the same folder


def test_installed_vimpac_finds_its_presets_from_any_folder(installed_wheel, tmp_path):
    vimpac = installed_wheel / "bin" / "vimpac"
    where = subprocess.run([str(vimpac), "demo", "--help"], cwd=tmp_path,
                           env=installed_env(installed_wheel), capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    probe = subprocess.run(
        [sys.executable, "-c",
         "import vimpac_cli, vimpac_core, vimpac_flows, vimpac_tasks, vimpac_cli.demo as d; "
         "print(vimpac_cli.__file__, vimpac_core.__file__, vimpac_flows.__file__, vimpac_tasks.__file__, d.DEFAULT_CONFIG)"],
        cwd=tmp_path, env=installed_env(installed_wheel), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert all(p.startswith(str(installed_wheel)) for p in probe.stdout.split()), probe.stdout
    plan = subprocess.run(
        [str(vimpac), "plan", "large", "--videos", "1000", "--mean-duration", "60", "--rates", "v100-derived"],
        cwd=tmp_path, env=installed_env(installed_wheel), capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert "stage1" in plan.stdout and "415.2M parameters" in plan.stdout  # the packaged large preset
    missing = subprocess.run([str(vimpac), "plan", "huge", "--videos", "1", "--mean-duration", "1"],
                             cwd=tmp_path, env=installed_env(installed_wheel), capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and "presets: large, large_frame256cont, small, tiny" in missing.stderr
