"""Fixtures of the ingest tests: tiny generated clips, bad files, a tiny real VQ-VAE, and an
http server on localhost serving good files, 404s, a flaky path (503 a few times, then 200), a
path that trickles its bytes, one that resets the connection mid-body, and an HTML error page."""

from __future__ import annotations

import csv
import re
import socket
import struct
import subprocess
import threading
import time
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
    reset_left: dict[str, int] = {}
    hits: dict[str, int] = {}
    times: dict[str, list[float]] = {}  # time.monotonic() of each request, per path
    trickle_step: tuple[int, float] = (256, 0.02)  # (bytes, seconds) per write of /trickle/

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        self.times.setdefault(self.path, []).append(time.monotonic())
        if self.path.startswith("/html/"):
            self._send(b"<!DOCTYPE html><html><body>Service unavailable, try later</body></html>", "text/html")
            return
        if self.path.startswith("/trickle/"):
            self._send(self._file(self.path[len("/trickle/"):]), "video/mp4", step=self.trickle_step)
            return
        if self.path.startswith("/reset/") and self.reset_left.get(self.path, 0) > 0:
            self.reset_left[self.path] -= 1
            self._reset_mid_body(self._file(self.path[len("/reset/"):]))
            return
        if self.path.startswith("/flaky/"):
            if self.flaky_left.get(self.path, 0) > 0:
                self.flaky_left[self.path] -= 1
                self.send_error(503, "try again")
                return
        for prefix in ("/flaky/", "/reset/"):
            if self.path.startswith(prefix):
                self.path = "/" + self.path[len(prefix):]
        super().do_GET()

    def _file(self, name: str) -> bytes:
        return (Path(self.directory) / name).read_bytes()

    def _send(self, body: bytes, content_type: str, step: tuple[int, float] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        size, pause = step or (len(body), 0.0)
        try:
            for i in range(0, len(body), size):
                self.wfile.write(body[i : i + size])
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected
            self.close_connection = True

    def _reset_mid_body(self, body: bytes) -> None:
        """Headers and half the body, then a TCP reset (SO_LINGER 0) instead of the rest."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        time.sleep(0.05)  # let the half body reach the client before the reset
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


@pytest.fixture
def http_server(tmp_path, clips):
    """Serves ``tmp_path/www``: the clips by name, ``/flaky/<name>`` 503s ``flaky_left[path]`` times,
    ``/reset/<name>`` resets the connection mid-body ``reset_left[path]`` times, ``/trickle/<name>``
    sends ``trickle_step`` bytes at a time, ``/html/<anything>`` is a 200 HTML error page.

    Yields (base_url, handler class) so a test can set ``flaky_left`` / ``reset_left`` /
    ``trickle_step`` and read ``hits`` / ``times``.
    """
    www = tmp_path / "www"
    www.mkdir()
    for clip in clips:
        (www / clip.name).write_bytes(clip.read_bytes())
    (www / "notvideo.mp4").write_text("<html>not a video</html>")
    handler = type("Handler", (_Handler,), {"flaky_left": {}, "reset_left": {}, "hits": {}, "times": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


class FaultProxy:
    """A TCP proxy on localhost in front of a real server (here: moto's S3) that injects faults.

    Attributes a test sets (each fault is consumed once per request it breaks, so counts are exact):
        reset_left: the next N requests are answered with a TCP reset (SO_LINGER 0) instead of
            being forwarded (the client saw a connection reset: a transient OSError).
        slowdown_left: the next N requests are answered ``503 SlowDown`` (S3's throttling reply).
        trickle: (bytes, seconds): answers reach the client that many bytes at a time, with a
            pause after each piece (None: forwarded as they come).
    ``faults`` counts the faults injected; ``url`` is the proxy's endpoint.
    """

    _SLOWDOWN = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                 b"<Message>Please reduce your request rate.</Message></Error>")

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.reset_left = 0
        self.slowdown_left = 0
        self.trickle: tuple[int, float] | None = None
        self.faults = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _take(self, name: str) -> bool:
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                self.faults += 1
                return True
            return False

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._to_server, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client), daemon=True).start()

    def _to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                if self._take("reset_left"):
                    _reset(client)
                    break
                if self._take("slowdown_left"):
                    _read_request(client, data)
                    body = b"" if data.startswith(b"HEAD ") else self._SLOWDOWN  # HEAD answers carry no body
                    client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                    client.shutdown(socket.SHUT_RDWR)
                    break
                upstream.sendall(data)
        except OSError:
            pass
        _close(client, upstream)

    def _to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                step, pause = self.trickle or (len(data), 0.0)
                for i in range(0, len(data), step):
                    client.sendall(data[i : i + step])
                    time.sleep(pause)
        except OSError:
            pass
        _close(client, upstream)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            _close(*self._sockets)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def _read_request(client: socket.socket, data: bytes) -> None:
    """Read the rest of one request (headers, then a Content-Length body unless the client waits
    for ``100-continue``), so a reply sent before it is read in full is not lost to a reset."""
    while b"\r\n\r\n" not in data:
        more = client.recv(65536)
        if not more:
            return
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if re.search(rb"(?im)^expect:\s*100-continue", head) or not match:
        return
    while len(body) < int(match.group(1)):
        more = client.recv(65536)
        if not more:
            return
        body += more


@pytest.fixture
def s3_proxy(s3_endpoint, monkeypatch):
    """A ``FaultProxy`` in front of the moto S3 server; s3fs clients made during the test use it."""
    import s3fs

    host, port = s3_endpoint.rsplit("//", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield proxy
    finally:
        proxy.close()
        s3fs.S3FileSystem.clear_instance_cache()
