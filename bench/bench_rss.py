"""Peak memory of decoding a 10-minute video vs a 10-second one at the same settings.

Each measurement runs in a fresh Python process that probes the clip, selects frames at 2 fps and
decodes the s128 center view (window 32), consuming the windows as ingest does. Reported: peak
RSS (VmHWM) of that process and of its decoder worker, in MiB, and long / short ratios.
Memory bounded by the window means the ratio stays near 1.

    python -m bench.bench_rss [--smoke]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vimpac_core.video import write_synthetic_video

FPS = 2.0

_CHILD = """
import json, sys, time
import numpy as np
from vimpac_core.video import ViewSpec, decode_views, live_worker_pids, probe, shutdown_workers

def hwm_mib(pid="self"):
    # VmHWM: peak resident set of that process's own address space. (ru_maxrss is not used: on
    # Linux it survives fork + exec, so a child would report its parent's peak.)
    with open(f"/proc/{{pid}}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

path, size = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
info = probe(path)
indices, _ = info.select({fps})
view = ViewSpec(size, size, "center", False)
frames = checksum = 0
for window in decode_views(path, indices, [view], window=32, timeout_s=None):
    frames += len(window[view.name])
    checksum += int(window[view.name][:, ::16, ::16].sum())
seconds = time.perf_counter() - start
workers = [hwm_mib(pid) for pid in live_worker_pids()]
shutdown_workers()
print(json.dumps({{"frames": frames, "seconds": seconds, "main_peak_mib": hwm_mib(),
    "worker_peak_mib": max(workers) if workers else None}}))
"""


def measure(path: Path, size: int) -> dict:
    """Run one decode in a fresh process; its figures (frames, seconds, peak RSS in MiB)."""
    code = _CHILD.format(fps=FPS)
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(size)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"measuring {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(smoke: bool = False) -> dict:
    # Smoke: tiny frames so generating 10 minutes of video takes about a second.
    width, height, rate, size = (64, 48, 4, 32) if smoke else (320, 240, 25, 128)
    results: dict = {
        "fps": FPS,
        "source": f"{width}x{height} at {rate} fps",
        "view": f"s{size}-center-noflip",
        "window": 32,
    }
    with tempfile.TemporaryDirectory(prefix="vimpac-bench-rss-") as tmp:
        clips = {}
        for name, seconds in (("10s", 10), ("10min", 600)):
            start = time.perf_counter()
            clips[name] = write_synthetic_video(
                Path(tmp) / f"{name}.mp4",
                num_frames=int(seconds * rate),
                fps=rate,
                width=width,
                height=height,
                seed=1,
            )
            results[f"generate_{name}_s"] = round(time.perf_counter() - start, 1)
        for name, path in clips.items():
            figures = measure(path, size)
            results[name] = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    for key in ("main_peak_mib", "worker_peak_mib"):
        results[f"{key}_ratio_10min_over_10s"] = round(results["10min"][key] / results["10s"][key], 3)
    return results


if __name__ == "__main__":
    from bench.run_all import run_script

    run_script("rss", main, __doc__, "tiny frames (10 minutes at 64x48)")
