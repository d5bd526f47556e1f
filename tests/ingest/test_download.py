"""Staging videos: local in place, http(s) with retries / 404 / byte cap, s3 staged but not copied."""

from __future__ import annotations

import hashlib

import pytest

from vimpac_core.config import DownloadConfig
from vimpac_core.download import stage_video
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


def test_http_download_records_sha_and_keeps_a_copy_in_the_store(http_server, clips, tmp_path):
    base, handler = http_server
    cfg = DownloadConfig(store=str(tmp_path / "store"), retries=0, timeout_s=5)
    staged = stage_video(f"{base}/{clips[1].name}", "c1", cfg)
    try:
        assert staged.temporary and staged.path.read_bytes() == clips[1].read_bytes()
        assert staged.sha256 == _sha(clips[1]) and staged.num_bytes == clips[1].stat().st_size
        assert (tmp_path / "store" / "c1.mp4").read_bytes() == clips[1].read_bytes()
    finally:
        staged.cleanup()
    assert not staged.path.exists()
    again = stage_video(f"{base}/{clips[1].name}", "c1", cfg)  # a later run reads the store copy
    assert handler.hits[f"/{clips[1].name}"] == 1
    assert again.path == tmp_path / "store" / "c1.mp4" and again.sha256 == staged.sha256
    assert again.uri == f"{base}/{clips[1].name}"


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
