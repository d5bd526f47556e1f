"""A bad-input suite: realistic mistakes across ingest, tokenizer training, pre-training,
fine-tuning, import and inspect, each run as a real `vimpac` process. Each must end with its exact
one-line error (exit 2, no traceback) before any work, and leave every good thing the user made
as it was (nothing deleted, changed or added). The mistakes are listed in ``bad_inputs.py``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from vimpac_cli.common import CONFIGS

from .bad_inputs import CASES, make_world
from .conftest import last_line, vimpac, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = make_world(tmp_path_factory.mktemp("world") / "w")
    (root / "configs").symlink_to(CONFIGS)  # as in a clone: `configs/...` paths work from here
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` (links not followed): size, mtime and content digest."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink() or path.is_dir():
                out[str(path.relative_to(root))] = (0, 0, "dir")
                continue
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def test_the_suite_covers_every_command_family():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES}
    assert {"ingest", "inspect", "rerun-failed", "train-tokenizer", "pretrain", "finetune", "import-checkpoint"} <= commands


@pytest.mark.parametrize(("args", "code", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_fails_in_one_line_and_loses_nothing(world, args, code, line):
    before = snapshot(world)
    proc = vimpac(*args, cwd=world)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert last_line(proc.stderr) == line.format(w=world, configs=CONFIGS)
    assert "Traceback" not in proc.stderr and "Starting temporary server" not in proc.stderr
    assert snapshot(world) == before  # nothing deleted, changed or written


def test_bad_videos_are_recorded_with_their_failure_class_and_the_good_one_kept(world, tmp_path, prefect_server):
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    lst = write_csv(tmp_path / "mixed.csv", [
        {"uri": str(world / "clips" / "c00.mp4"), "label": "a"},
        {"uri": str(tmp_path / "missing.mp4"), "label": "a"},
        {"uri": str(tmp_path / "text.mp4"), "label": "b"},
    ])
    out = tmp_path / "tokens"
    proc = vimpac("ingest", str(lst), "--out", str(out), "--fps", "4", "--frame-size", "32",
                  "--tokenizer", f"vqvae:{world / 'tok'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(last_line(proc.stdout))
    assert (summary["ok"], summary["failed"], summary["rows"]) == (1, 2, 1)
    info = json.loads(vimpac("inspect", str(out), "--json").stdout)
    assert info["failures"] == {"permanent/DownloadError": 1, "permanent/VideoError": 1}
    assert [v["video_id"] for v in info["failed_videos"]] == ["missing", "text"]
