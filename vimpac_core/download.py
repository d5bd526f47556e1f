"""Stage a video for decoding: a local path readable in place, or a fetched local copy.

probe/decode read local files. Local paths are read in place; http(s) videos are streamed
(byte cap, timeout, sha256) into a temporary file and, when a video store is configured, kept
there; other fsspec URLs (s3, gs, memory...) are readable in place, so they are only staged to a
temporary local file for decoding, never copied into the store.

``timeout_s`` is a deadline for one whole attempt (connect, headers and every byte of the body),
whatever the protocol: each attempt runs in a worker thread that is given up when the deadline
passes (a server that trickles bytes, a stalled s3 read). Transient failures (5xx, connection
resets, timeouts, the deadline) are retried with exponential back-off; permanent ones (404, other
4xx, missing objects, over the byte cap, an HTML page instead of a video) raise ``DownloadError``
at once.

The video store keeps ``<video_id>-<12 hex of sha256(uri)><suffix>`` plus a sidecar
``<that>.json`` ({"uri", "sha256", "bytes"}) written after the video: the sidecar is the commit
marker. A stored copy is reused only when its sidecar names the same uri and its bytes still
hash to the recorded sha256; otherwise the source is fetched again. ``drop_stored_copy`` forgets
a copy that turned out to be bad (it failed probe), so a rerun fetches the source again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
import urllib3

from vimpac_core.config import DownloadConfig
from vimpac_core.errors import DownloadError, TransientDownloadError
from vimpac_core.storage import (
    atomic_put_file,
    atomic_write_bytes,
    get_fs,
    is_local,
    join,
    local_path,
    read_bytes,
)

_CHUNK = 1 << 16  # small reads: an abandoned attempt notices its cancellation at the next one
_HASH_CHUNK = 1 << 20  # reads of a local file being hashed (nothing to cancel)
SIDECAR_SUFFIX = ".json"
_T = TypeVar("_T")


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


def _copy_capped(chunks: Iterable[bytes], out, uri: str, max_bytes: int,
                 cancelled: threading.Event | None = None) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    for chunk in chunks:
        if cancelled is not None and cancelled.is_set():
            raise TransientDownloadError(f"{uri}: attempt abandoned after its deadline")
        total += len(chunk)
        if total > max_bytes:
            raise DownloadError(f"{uri} is larger than the byte cap of {max_bytes} bytes; raise download.max_bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), total


def _http_chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` returns whatever one socket read gave (never waits to fill
    a buffer), so a trickling server cannot hold a read for longer than one socket timeout."""
    while chunk := resp.raw.read1(_CHUNK, decode_content=True):
        yield chunk


def _html_page(content_type: str, first: bytes) -> bool:
    """True for an HTML page: declared text/html and starting with '<' (no video container does)."""
    declared = content_type.split(";", 1)[0].strip().lower() in ("text/html", "application/xhtml+xml")
    return declared and first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _fetch_http_once(uri: str, dest, cfg: DownloadConfig, cancelled: threading.Event) -> tuple[str, int]:
    try:
        with requests.get(uri, stream=True, timeout=cfg.timeout_s) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise TransientDownloadError(f"{uri}: HTTP {resp.status_code} (server side, will retry)")
            if resp.status_code >= 400:
                raise DownloadError(f"{uri}: HTTP {resp.status_code}; check the url in the video list")
            chunks = _http_chunks(resp)
            first = next(chunks, b"")
            content_type = resp.headers.get("Content-Type", "")
            if _html_page(content_type, first):
                raise DownloadError(f"{uri}: the server answered with an HTML page ({content_type}), not a video; "
                                    "check the url in the video list")
            return _copy_capped(itertools.chain([first], chunks), dest, uri, cfg.max_bytes, cancelled)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise TransientDownloadError(f"{uri}: {type(exc).__name__}: {exc}") from exc


def _fetch_fsspec_once(uri: str, dest, cfg: DownloadConfig, cancelled: threading.Event) -> tuple[str, int]:
    fs, path = get_fs(uri)
    try:
        size = fs.size(path)
        if size is not None and size > cfg.max_bytes:
            raise DownloadError(f"{uri} has {size} bytes, over the byte cap of {cfg.max_bytes}")
        with fs.open(path, "rb") as src:
            return _copy_capped(iter(lambda: src.read(_CHUNK), b""), dest, uri, cfg.max_bytes, cancelled)
    except FileNotFoundError as exc:
        raise DownloadError(f"{uri} does not exist; check the uri in the video list") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise DownloadError(f"{uri} cannot be read: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientDownloadError(f"{uri}: {type(exc).__name__}: {exc}") from exc


_Fetch = Callable[[str, object, DownloadConfig, threading.Event], tuple[str, int]]


def _attempt(fetch: _Fetch, uri: str, cfg: DownloadConfig, *, prefix: str, suffix: str,
             tmp_dir: str | None) -> tuple[Path, str, int]:
    """One fetch attempt into its own temporary file, given up after ``cfg.timeout_s`` seconds.

    The fetch runs in a daemon thread; past the deadline this raises ``TransientDownloadError``
    and the thread, told so by an event it checks between reads, deletes its file and ends (a
    later attempt never shares a file with an abandoned one).

    Returns:
        (temporary file, sha256, bytes).
    """
    tmp = tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=tmp_dir, delete=False)
    path, cancelled, lock, outcome = Path(tmp.name), threading.Event(), threading.Lock(), {}

    def work() -> None:
        try:
            with tmp:
                outcome["result"] = fetch(uri, tmp, cfg, cancelled)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc
        with lock:
            outcome["done"] = True
            if cancelled.is_set() or "error" in outcome:
                path.unlink(missing_ok=True)

    worker = threading.Thread(target=work, name=f"vimpac-download-{prefix}", daemon=True)
    worker.start()
    try:
        worker.join(cfg.timeout_s)
    finally:
        with lock:
            if "done" not in outcome:  # deadline passed (or this thread was interrupted)
                cancelled.set()
    if "done" not in outcome:
        raise TransientDownloadError(
            f"{uri}: not fetched within {cfg.timeout_s:g} s (download.timeout_s bounds a whole attempt); "
            "will retry; raise the timeout for large videos or slow links")
    if "error" in outcome:
        raise outcome["error"]
    sha, size = outcome["result"]
    return path, sha, size


def with_backoff(fn: Callable[[], _T], uri: str, cfg: DownloadConfig) -> _T:
    """Call ``fn`` until it succeeds, retrying ``TransientDownloadError`` ``cfg.retries`` times,
    sleeping ``cfg.backoff_s``, then twice that, and so on, between attempts."""
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
        return _copy_capped(iter(lambda: f.read(_HASH_CHUNK), b""), _Null(), uri, max_bytes)


class _Null:
    def write(self, _: bytes) -> None:
        pass


def _suffix_of(uri: str) -> str:
    return Path(uri.split("?", 1)[0]).suffix[:8] or ".mp4"


def stored_copy_url(uri: str, video_id: str, cfg: DownloadConfig) -> str | None:
    """Where the video store keeps ``uri``; None without a store or for a source read in place.

    Keyed by the source too (12 hex of sha256(uri)): two lists may give one id to two videos.
    """
    if not cfg.store or not uri.startswith(("http://", "https://")):
        return None
    return join(cfg.store, f"{video_id}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}{_suffix_of(uri)}")


def _remove(url: str) -> None:
    fs, path = get_fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def drop_stored_copy(uri: str, video_id: str, cfg: DownloadConfig) -> bool:
    """Forget the store's copy of ``uri`` (call it when the video failed permanently, e.g. probe
    found no video in it) so that the next attempt fetches the source again.

    Returns:
        True when there was a sidecar to remove.
    """
    stored = stored_copy_url(uri, video_id, cfg)
    if stored is None:
        return False
    fs, path = get_fs(stored + SIDECAR_SUFFIX)
    had = fs.exists(path)
    _remove(stored + SIDECAR_SUFFIX)  # the sidecar first: without it the copy is never trusted
    _remove(stored)
    return had


def _reuse_stored(stored: str, uri: str, video_id: str, cfg: DownloadConfig, tmp_dir: str | None) -> StagedVideo | None:
    """The store's copy when its sidecar vouches for it (same uri, sha256 and size); else None."""
    try:
        record = json.loads(read_bytes(stored + SIDECAR_SUFFIX))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("uri") != uri:
        return None
    try:
        staged = stage_video(stored, video_id, cfg.model_copy(update={"store": None}), tmp_dir=tmp_dir)
    except (DownloadError, TransientDownloadError):  # copy gone or unreadable: fetch the source
        return None
    if (staged.sha256, staged.num_bytes) != (record.get("sha256"), record.get("bytes")):
        staged.cleanup()
        return None
    staged.uri = uri
    return staged


def _keep_in_store(staged: StagedVideo, stored: str) -> None:
    """Video first, sidecar last: a reader trusts only a copy whose sidecar exists and matches."""
    _remove(stored + SIDECAR_SUFFIX)
    atomic_put_file(staged.path, stored)
    record = {"uri": staged.uri, "sha256": staged.sha256, "bytes": staged.num_bytes}
    atomic_write_bytes(stored + SIDECAR_SUFFIX, json.dumps(record).encode())


def stage_video(uri: str, video_id: str, cfg: DownloadConfig, *, tmp_dir: str | None = None) -> StagedVideo:
    """Make ``uri`` decodable locally; see the module docstring for what is copied where."""
    start = time.perf_counter()
    if is_local(uri):
        path = local_path(uri)
        if not path.is_file():
            raise DownloadError(f"{uri} does not exist or is not a file; check the uri in the video list")
        sha, size = _sha256_file(path, uri, cfg.max_bytes)
        return StagedVideo(uri, path, sha, size, time.perf_counter() - start, temporary=False)
    stored = stored_copy_url(uri, video_id, cfg)
    if stored:
        reused = _reuse_stored(stored, uri, video_id, cfg, tmp_dir)
        if reused is not None:  # fetched and verified by an earlier run: the store is the source now
            return reused
    fetch = _fetch_http_once if uri.startswith(("http://", "https://")) else _fetch_fsspec_once
    path, sha, size = with_backoff(
        lambda: _attempt(fetch, uri, cfg, prefix=f"vimpac-{video_id}-", suffix=_suffix_of(uri), tmp_dir=tmp_dir),
        uri, cfg)
    staged = StagedVideo(uri, path, sha, size, time.perf_counter() - start, temporary=True)
    if stored:
        try:
            _keep_in_store(staged, stored)
        except BaseException:
            staged.cleanup()
            raise
    return staged


class SharedStaging:
    """Stage each source file once for a batch of videos: segments of one file share a download.

    ``acquire`` stages a uri on its first use and hands the same local copy to the later videos
    of the batch that read that uri; ``release`` deletes a temporary copy after its last use;
    ``close`` deletes whatever is left (a batch cut short).
    """

    def __init__(self, uris: Iterable[str], cfg: DownloadConfig) -> None:
        self._left: dict[str, int] = {}
        for uri in uris:
            self._left[uri] = self._left.get(uri, 0) + 1
        self._staged: dict[str, StagedVideo] = {}
        self._cfg = cfg

    def acquire(self, uri: str, store_id: str) -> tuple[StagedVideo, bool]:
        """(the staged copy of ``uri``, True when this call fetched or opened it).

        ``store_id`` names the copy in the video store (see ``stored_copy_url``); give the same
        id for every segment of a file so that later runs find one stored copy too.
        """
        if uri in self._staged:
            return self._staged[uri], False
        staged = stage_video(uri, store_id, self._cfg)
        self._staged[uri] = staged
        return staged, True

    def release(self, uri: str) -> None:
        """One video of ``uri`` is done: the copy goes once no later video of the batch needs it."""
        self._left[uri] = self._left.get(uri, 1) - 1
        if self._left[uri] <= 0 and uri in self._staged:
            self._staged.pop(uri).cleanup()

    def close(self) -> None:
        for staged in self._staged.values():
            staged.cleanup()
        self._staged.clear()
