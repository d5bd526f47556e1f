"""Helpers of the command-line tests: run `vimpac` as a real process (its own exit code, its own
process group), tiny real clips and a tiny VQ-VAE (fixtures shared with the ingest tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.ingest.conftest import clips, http_server, make_vqvae, tiny_tokenizer, write_csv  # noqa: F401
from vimpac_core.video import write_synthetic_video

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the path, one thread per op."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return env


def vimpac(*args: str, cwd: str | Path | None = None, timeout: float = 300,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`vimpac ARGS` as a subprocess; returns it (exit code, stdout, stderr) whatever the code."""
    return subprocess.run([sys.executable, "-m", "vimpac_cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env or cli_env())


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def short_clips(folder: Path, n: int, frames: int = 20) -> list[Path]:
    """``n`` real 2 s clips (H.264, 10 fps, 64x48)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_synthetic_video(folder / f"c{i:02d}.mp4", num_frames=frames, fps=10, width=64, height=48, seed=i)
            for i in range(n)]


def clip_list(path: Path, clips_: list[Path]) -> Path:
    """A CSV list (uri, label, video_id) of ``clips_``."""
    return write_csv(path, [{"uri": str(c), "label": f"k{i % 2}", "video_id": c.stem} for i, c in enumerate(clips_)])
