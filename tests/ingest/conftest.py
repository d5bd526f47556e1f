"""Fixtures of the ingest tests: tiny generated clips, bad files, a tiny real VQ-VAE, and an
http server on localhost serving good files, 404s and a flaky path (503 a few times, then 200)."""

from __future__ import annotations

import csv
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imageio_ffmpeg
import pytest
import torch

from vimpac_core.tokenizers import VQVAE, VQVAEConfig
from vimpac_core.video import write_synthetic_video


def make_vqvae(folder: Path, seed: int = 0) -> str:
    """A tiny VQ-VAE with random weights saved to ``folder``; returns its ``vqvae:`` spec."""
    torch.manual_seed(seed)
    VQVAE(VQVAEConfig(codebook_size=64, embed_dim=8, channels=(4, 8, 8), num_res_blocks=0)).save_pretrained(folder)
    return f"vqvae:{folder}"


def make_clips(folder: Path, n: int = 3) -> list[Path]:
    """``n`` tiny 1 s clips at 10 fps (different sizes, one portrait)."""
    sizes = [(64, 48), (48, 64), (80, 48), (64, 64)]
    return [
        write_synthetic_video(folder / f"clip{i}.mp4", num_frames=10, fps=10, width=sizes[i % 4][0],
                              height=sizes[i % 4][1], seed=i)
        for i in range(n)
    ]


def make_bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """Bad inputs of every kind the issue lists (those that need no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "zero": folder / "zero.mp4",
        "text": folder / "text.mp4",
        "truncated": folder / "truncated.mp4",
        "missing": folder / "missing.mp4",
    }
    bad["zero"].write_bytes(b"")
    bad["text"].write_text("this is not a video\n")
    data = good.read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 3])
    bad["one_frame"] = write_synthetic_video(folder / "one_frame.mp4", num_frames=1, fps=30, width=32, height=32)
    # Unreadable codec: the sample entry of the video track renamed to a fourcc no decoder knows.
    bad["bad_codec"] = folder / "bad_codec.mp4"
    bad["bad_codec"].write_bytes(good.read_bytes().replace(b"avc1", b"zzz9"))
    bad["audio_only"] = folder / "audio_only.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(bad["audio_only"])], check=True)
    return bad


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> str:
    return make_vqvae(tmp_path_factory.mktemp("vqvae"))


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("clips"), 4)


class _Handler(SimpleHTTPRequestHandler):
    flaky_left: dict[str, int] = {}
    hits: dict[str, int] = {}

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/flaky/"):
            if self.flaky_left.get(self.path, 0) > 0:
                self.flaky_left[self.path] -= 1
                self.send_error(503, "try again")
                return
            self.path = "/" + self.path[len("/flaky/"):]
        super().do_GET()


@pytest.fixture
def http_server(tmp_path, clips):
    """Serves ``tmp_path/www``: the clips by name, ``/flaky/<name>`` 503s ``flaky_left[path]`` times.

    Yields (base_url, handler class) so a test can set ``flaky_left`` and read ``hits``.
    """
    www = tmp_path / "www"
    www.mkdir()
    for clip in clips:
        (www / clip.name).write_bytes(clip.read_bytes())
    (www / "notvideo.mp4").write_text("<html>not a video</html>")
    handler = type("Handler", (_Handler,), {"flaky_left": {}, "hits": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
