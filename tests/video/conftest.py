"""Video fixtures: tiny generated clips (CFR, 29.97, VFR, portrait, rotated, 1-frame, long) and
broken files, made once per session in a temporary folder with PyAV and the FFmpeg binary."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vimpac_core.video import shutdown_workers, write_synthetic_video

W, H = 64, 48


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_rgb24(path, video_filter: str, height: int, width: int) -> np.ndarray:
    """Frames of the real ffmpeg binary run with ``-vf video_filter``: uint8 [N, height, width, 3]."""
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-vf", video_filter,
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video-clips")


@pytest.fixture(scope="session", autouse=True)
def _stop_workers_at_end():
    yield
    shutdown_workers()


@pytest.fixture(scope="session")
def vfr_times() -> np.ndarray:
    """Presentation times (seconds) of the VFR clip: gaps of 10-120 ms, first frame at 0.05 s."""
    return 0.05 + np.concatenate([[0.0], np.cumsum(np.random.default_rng(7).uniform(0.01, 0.12, 79))])


@pytest.fixture(scope="session")
def clips(clip_dir, vfr_times) -> dict[str, Path]:
    """name -> path of small generated clips (crf 10 so the frame-index strip reads back exactly)."""
    make = {
        "cfr30": dict(num_frames=90, fps=30),
        "ntsc": dict(num_frames=90, fps=30000 / 1001),
        "cfr24": dict(num_frames=72, fps=24),
        "vfr": dict(num_frames=80, fps=20, frame_times=vfr_times),
        "one_frame": dict(num_frames=1, fps=30),
    }
    out = {
        name: write_synthetic_video(clip_dir / f"{name}.mp4", width=W, height=H, crf=10, seed=i, **kw)
        for i, (name, kw) in enumerate(make.items())
    }
    out["portrait"] = write_synthetic_video(
        clip_dir / "portrait.mp4", num_frames=30, fps=25, width=H, height=W, crf=10
    )
    for degrees in (90, 180, 270):
        target = clip_dir / f"rot{degrees}.mp4"
        subprocess.run(
            [
                ffmpeg_exe(),
                "-y",
                "-loglevel",
                "error",
                "-display_rotation",
                str(degrees),
                "-i",
                str(out["cfr30"]),
                "-c",
                "copy",
                str(target),
            ],
            check=True,
        )
        out[f"rot{degrees}"] = target
    return out


@pytest.fixture(scope="session")
def long_clip(clip_dir) -> Path:
    """A 10-minute clip at 4 fps and 32x32 (2400 frames)."""
    return write_synthetic_video(clip_dir / "long.mp4", num_frames=2400, fps=4, width=32, height=32, seed=3)


def stray_decoders() -> set[int]:
    """Pids of running decoder processes under this one that are not live (tracked) workers."""
    import psutil

    from vimpac_core.video import live_worker_pids

    stray = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "vimpac_core.video.decoder_process" in cmd:
            stray.add(child.pid)
    return stray - live_worker_pids()


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(20):
            samples = (np.sin(np.arange(1024) * 0.05 + i) * 0.3).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, i * 1024, Fraction(1, 16000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def bad_files(clip_dir, clips) -> dict[str, Path]:
    """name -> path of inputs that are not decodable videos."""
    good = clips["cfr30"].read_bytes()
    out = {}
    out["zero_byte"] = clip_dir / "zero.mp4"
    out["zero_byte"].write_bytes(b"")
    out["truncated"] = clip_dir / "truncated.mp4"
    out["truncated"].write_bytes(good[: len(good) // 2])
    # moov first (faststart), then cut: the index promises 90 frames the data no longer holds.
    faststart = clip_dir / "faststart.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(clips["cfr30"]),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(faststart),
        ],
        check=True,
    )
    data = faststart.read_bytes()
    out["truncated_data"] = clip_dir / "truncated_data.mp4"
    out["truncated_data"].write_bytes(data[: int(len(data) * 0.6)])
    out["text"] = clip_dir / "text.mp4"
    out["text"].write_text("this is not a video, it is a text file named .mp4\n" * 20)
    out["audio_only"] = _audio_only(clip_dir / "audio_only.m4a")
    out["bad_codec"] = clip_dir / "bad_codec.mp4"
    out["bad_codec"].write_bytes(good.replace(b"avc1", b"zzzz"))  # a fourcc no decoder knows
    out["missing"] = clip_dir / "does_not_exist.mp4"
    return out
