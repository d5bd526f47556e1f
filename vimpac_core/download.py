"""Stage a video for decoding: a local path readable in place, or a fetched local copy.

probe/decode read local files. Local paths are read in place; http(s) videos are streamed
(byte cap, timeout, sha256) into a temporary file and, when a video store is configured, kept
there; other fsspec URLs (s3, gs, memory...) are readable in place, so they are only staged to a
temporary local file for decoding, never copied into the store. Transient failures (5xx,
connection resets, timeouts) are retried with exponential back-off; permanent ones (404, other
4xx, missing objects, over the byte cap) raise ``DownloadError`` at once.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from vimpac_core.config import DownloadConfig
from vimpac_core.errors import DownloadError, TransientDownloadError
from vimpac_core.storage import atomic_put_file, exists, get_fs, is_local, join, local_path

_CHUNK = 1 << 20


@dataclass
class StagedVideo:
    """A video ready for probe/decode.

    Attributes:
        path: local file to decode.
        sha256 / num_bytes: of the video's bytes.
        download_s: seconds spent fetching (0 for local files).
        temporary: True when ``path`` is a temporary copy to delete with ``cleanup()``.
    """

    uri: str
    path: Path
    sha256: str
    num_bytes: int
    download_s: float
    temporary: bool

    def cleanup(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)


def _copy_capped(chunks, out, uri: str, max_bytes: int) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise DownloadError(f"{uri} is larger than the byte cap of {max_bytes} bytes; raise download.max_bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), total


def _fetch_http_once(uri: str, dest, cfg: DownloadConfig) -> tuple[str, int]:
    try:
        with requests.get(uri, stream=True, timeout=cfg.timeout_s) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise TransientDownloadError(f"{uri}: HTTP {resp.status_code} (server side, will retry)")
            if resp.status_code >= 400:
                raise DownloadError(f"{uri}: HTTP {resp.status_code}; check the url in the video list")
            dest.seek(0)
            dest.truncate()
            return _copy_capped(resp.iter_content(_CHUNK), dest, uri, cfg.max_bytes)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise TransientDownloadError(f"{uri}: {type(exc).__name__}: {exc}") from exc


def _fetch_fsspec_once(uri: str, dest, cfg: DownloadConfig) -> tuple[str, int]:
    fs, path = get_fs(uri)
    try:
        size = fs.size(path)
        if size is not None and size > cfg.max_bytes:
            raise DownloadError(f"{uri} has {size} bytes, over the byte cap of {cfg.max_bytes}")
        dest.seek(0)
        dest.truncate()
        with fs.open(path, "rb") as src:
            return _copy_capped(iter(lambda: src.read(_CHUNK), b""), dest, uri, cfg.max_bytes)
    except FileNotFoundError as exc:
        raise DownloadError(f"{uri} does not exist; check the uri in the video list") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise DownloadError(f"{uri} cannot be read: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientDownloadError(f"{uri}: {type(exc).__name__}: {exc}") from exc


def with_backoff(fn: Callable[[], tuple[str, int]], uri: str, cfg: DownloadConfig) -> tuple[str, int]:
    """Call ``fn`` until it succeeds, retrying ``TransientDownloadError`` ``cfg.retries`` times."""
    delay = cfg.backoff_s
    for attempt in range(cfg.retries + 1):
        try:
            return fn()
        except TransientDownloadError:
            if attempt == cfg.retries:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _sha256_file(path: Path, uri: str, max_bytes: int) -> tuple[str, int]:
    with open(path, "rb") as f:
        return _copy_capped(iter(lambda: f.read(_CHUNK), b""), _Null(), uri, max_bytes)


class _Null:
    def write(self, _: bytes) -> None:
        pass


def stage_video(uri: str, video_id: str, cfg: DownloadConfig, *, tmp_dir: str | None = None) -> StagedVideo:
    """Make ``uri`` decodable locally; see the module docstring for what is copied where."""
    start = time.perf_counter()
    if is_local(uri):
        path = local_path(uri)
        if not path.is_file():
            raise DownloadError(f"{uri} does not exist or is not a file; check the uri in the video list")
        sha, size = _sha256_file(path, uri, cfg.max_bytes)
        return StagedVideo(uri, path, sha, size, time.perf_counter() - start, temporary=False)
    suffix = Path(uri.split("?", 1)[0]).suffix[:8] or ".mp4"
    is_http = uri.startswith(("http://", "https://"))
    stored = join(cfg.store, video_id + suffix) if is_http and cfg.store else None
    if stored and exists(stored):  # fetched by an earlier run: the store is the source now
        staged = stage_video(stored, video_id, cfg.model_copy(update={"store": None}), tmp_dir=tmp_dir)
        staged.uri = uri
        return staged
    fetch = _fetch_http_once if is_http else _fetch_fsspec_once
    with tempfile.NamedTemporaryFile(prefix=f"vimpac-{video_id}-", suffix=suffix, dir=tmp_dir, delete=False) as tmp:
        try:
            sha, size = with_backoff(lambda: fetch(uri, tmp, cfg), uri, cfg)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    staged = StagedVideo(uri, Path(tmp.name), sha, size, time.perf_counter() - start, temporary=True)
    if stored:
        atomic_put_file(staged.path, stored)
    return staged
