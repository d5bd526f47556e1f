"""Staging videos: local in place, http(s) with retries / 404 / byte cap / a whole-download deadline,
a video store keyed by source and verified before reuse, s3 staged but not copied."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from vimpac_core.config import DownloadConfig
from vimpac_core.download import SIDECAR_SUFFIX, drop_stored_copy, stage_video, stored_copy_url
from vimpac_core.errors import DownloadError, TransientDownloadError

FAST = DownloadConfig(retries=2, backoff_s=0.01, timeout_s=5)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_file_is_read_in_place(clips):
    staged = stage_video(str(clips[0]), "c0", FAST)
    assert staged.path == clips[0] and not staged.temporary
    assert staged.sha256 == _sha(clips[0]) and staged.num_bytes == clips[0].stat().st_size
    staged.cleanup()
    assert clips[0].exists()
    assert stage_video(f"file://{clips[0]}", "c0", FAST).path == clips[0]


def test_http_download_records_sha_and_keeps_a_verified_copy_in_the_store(http_server, clips, tmp_path):
    base, handler = http_server
    uri = f"{base}/{clips[1].name}"
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5)
    staged = stage_video(uri, "c1", cfg)
    stored = Path(stored_copy_url(uri, "c1", cfg))
    try:
        assert staged.temporary and staged.path.read_bytes() == clips[1].read_bytes()
        assert staged.sha256 == _sha(clips[1]) and staged.num_bytes == clips[1].stat().st_size
        assert stored.parent == tmp_path / "store" and stored.name.startswith("c1-") and stored.suffix == ".mp4"
        assert stored.read_bytes() == clips[1].read_bytes()
        assert json.loads(Path(f"{stored}{SIDECAR_SUFFIX}").read_text()) == {
            "uri": uri, "sha256": staged.sha256, "bytes": staged.num_bytes}
    finally:
        staged.cleanup()
    assert not staged.path.exists()
    again = stage_video(uri, "c1", cfg)  # a later run reads the verified store copy
    assert handler.hits[f"/{clips[1].name}"] == 1
    assert again.path == stored and again.sha256 == staged.sha256 and not again.temporary
    assert again.uri == uri


def test_two_sources_with_one_video_id_never_share_a_stored_copy(http_server, clips, tmp_path):
    """Two lists may both call a video "clip" (ids come from file-name stems)."""
    base, handler = http_server
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5)
    first = stage_video(f"{base}/{clips[0].name}", "clip", cfg)
    second = stage_video(f"{base}/{clips[1].name}", "clip", cfg)
    assert first.sha256 == _sha(clips[0]) and second.sha256 == _sha(clips[1])
    assert handler.hits == {f"/{clips[0].name}": 1, f"/{clips[1].name}": 1}
    assert len(list((tmp_path / "store").glob("clip-*.mp4"))) == 2


def test_a_stored_copy_that_does_not_match_its_sidecar_is_fetched_again(http_server, clips, tmp_path):
    base, handler = http_server
    uri = f"{base}/{clips[2].name}"
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5)
    stage_video(uri, "c2", cfg).cleanup()
    stored = Path(stored_copy_url(uri, "c2", cfg))
    stored.write_bytes(b"corrupted")  # bit rot, or a copy another writer replaced
    again = stage_video(uri, "c2", cfg)
    assert again.sha256 == _sha(clips[2]) and handler.hits[f"/{clips[2].name}"] == 2
    assert stored.read_bytes() == clips[2].read_bytes()  # the store copy is repaired
    Path(f"{stored}{SIDECAR_SUFFIX}").unlink()  # a copy without its sidecar (a write cut short)
    stage_video(uri, "c2", cfg).cleanup()
    assert handler.hits[f"/{clips[2].name}"] == 3


def test_a_dropped_stored_copy_is_fetched_from_the_source_again(http_server, clips, tmp_path):
    """What ``rerun-failed --include-permanent`` needs once probe found a stored copy bad."""
    base, handler = http_server
    uri = f"{base}/{clips[0].name}"
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5)
    stage_video(uri, "c0", cfg).cleanup()
    assert drop_stored_copy(uri, "c0", cfg)
    assert list((tmp_path / "store").iterdir()) == []
    assert not drop_stored_copy(uri, "c0", cfg)  # nothing left: a no-op
    staged = stage_video(uri, "c0", cfg)
    assert staged.sha256 == _sha(clips[0]) and handler.hits[f"/{clips[0].name}"] == 2


def test_an_html_page_answered_with_200_is_a_permanent_error_and_never_stored(http_server, tmp_path):
    base, handler = http_server
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=2, backoff_s=0.01, timeout_s=5)
    with pytest.raises(DownloadError, match="HTML page") as info:
        stage_video(f"{base}/html/clip.mp4", "clip", cfg)
    assert not info.value.retriable and handler.hits["/html/clip.mp4"] == 1
    assert not (tmp_path / "store").exists()


def _download_threads_end(timeout: float = 10.0) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("vimpac-download-"):
            thread.join(timeout)
            assert not thread.is_alive(), "an abandoned download attempt did not end"


def test_a_trickling_server_hits_the_whole_download_deadline(http_server, clips, tmp_path):
    """Every read is fast (one piece each 20 ms), the whole body is not (about 1 s)."""
    base, handler = http_server
    handler.trickle_step = (64, 0.02)
    path = f"/trickle/{clips[0].name}"
    cfg = DownloadConfig(retries=1, backoff_s=0.05, timeout_s=0.3)
    (tmp_path / "tmp").mkdir()
    with pytest.raises(TransientDownloadError, match="within 0.3 s") as info:
        stage_video(base + path, "c0", cfg, tmp_dir=str(tmp_path / "tmp"))
    assert info.value.retriable and handler.hits[path] == 2
    first, second = handler.times[path]
    # a whole deadline, then the back-off (less the few ms a request takes to reach the server)
    assert second - first >= cfg.timeout_s + cfg.backoff_s - 0.05
    _download_threads_end()
    assert list((tmp_path / "tmp").iterdir()) == []  # abandoned attempts delete their files


def test_a_reset_mid_body_is_retried_with_backoff_then_succeeds(http_server, clips):
    base, handler = http_server
    path = f"/reset/{clips[1].name}"
    handler.reset_left[path] = 2
    cfg = DownloadConfig(retries=3, backoff_s=0.2, timeout_s=5)
    staged = stage_video(base + path, "c1", cfg)
    staged.cleanup()
    assert staged.sha256 == _sha(clips[1]) and handler.hits[path] == 3
    times = handler.times[path]  # recorded by the server: the client really waited
    assert times[1] - times[0] >= cfg.backoff_s
    assert times[2] - times[1] >= 2 * cfg.backoff_s


def test_404_is_permanent_and_not_retried(http_server):
    base, handler = http_server
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        stage_video(f"{base}/nothing.mp4", "x", FAST)
    assert not info.value.retriable
    assert handler.hits["/nothing.mp4"] == 1


def test_503_is_retried_with_backoff_then_succeeds(http_server, clips):
    base, handler = http_server
    path = f"/flaky/{clips[0].name}"
    handler.flaky_left[path] = 2
    staged = stage_video(base + path, "c0", FAST)
    staged.cleanup()
    assert staged.sha256 == _sha(clips[0])
    assert handler.hits[path] == 3


def test_503_beyond_the_retries_is_transient(http_server, clips):
    base, handler = http_server
    path = f"/flaky/{clips[0].name}"
    handler.flaky_left[path] = 10
    with pytest.raises(TransientDownloadError, match="503") as info:
        stage_video(base + path, "c0", FAST)
    assert info.value.retriable and handler.hits[path] == 3


def test_byte_cap_and_connection_refused(http_server, clips):
    base, _ = http_server
    with pytest.raises(DownloadError, match="byte cap"):
        stage_video(f"{base}/{clips[0].name}", "c0", DownloadConfig(max_bytes=100, retries=0))
    with pytest.raises(TransientDownloadError):
        stage_video("http://127.0.0.1:9/x.mp4", "x", DownloadConfig(retries=1, backoff_s=0.01, timeout_s=2))


def test_s3_video_is_staged_locally_not_copied_to_the_store(s3_bucket, clips, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.put(str(clips[2]), f"{s3_bucket}/videos/c2.mp4")
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0)
    staged = stage_video(f"s3://{s3_bucket}/videos/c2.mp4", "c2", cfg)
    staged.cleanup()
    assert staged.sha256 == _sha(clips[2]) and staged.temporary
    assert not (tmp_path / "store").exists()
    with pytest.raises(DownloadError, match="does not exist"):
        stage_video(f"s3://{s3_bucket}/videos/none.mp4", "n", cfg)


def test_a_slow_s3_read_hits_the_whole_download_deadline(s3_bucket, s3_proxy, clips, tmp_path):
    """s3 through a proxy that trickles moto's answers: each read is fast, the whole is about 2 s."""
    import s3fs

    s3fs.S3FileSystem().put(str(clips[3]), f"{s3_bucket}/videos/c3.mp4")
    s3_proxy.trickle = (64, 0.02)
    cfg = DownloadConfig(retries=0, timeout_s=0.5)
    (tmp_path / "tmp").mkdir()
    with pytest.raises(TransientDownloadError, match="within 0.5 s"):
        stage_video(f"s3://{s3_bucket}/videos/c3.mp4", "c3", cfg, tmp_dir=str(tmp_path / "tmp"))
    s3_proxy.trickle = None  # the abandoned attempt finishes its read quickly, then ends
    _download_threads_end()
    assert list((tmp_path / "tmp").iterdir()) == []
    staged = stage_video(f"s3://{s3_bucket}/videos/c3.mp4", "c3", DownloadConfig(retries=0, timeout_s=10))
    staged.cleanup()
    assert staged.sha256 == _sha(clips[3])
