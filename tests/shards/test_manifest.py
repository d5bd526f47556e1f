"""Manifest rows: round trip, error classes, committed shards."""

from __future__ import annotations

from vimpac_core.errors import DecodeTimeoutError, DownloadError
from vimpac_core.shards.manifest import (
    ManifestRow,
    committed_shards,
    read_all_manifests,
    read_manifest,
    write_manifest,
)


def test_round_trip_and_error_classes(tmp_path):
    out = str(tmp_path)
    rows = [
        ManifestRow(shard_id="s1", video_id="a", source_uri="/a.mp4", status="ok", rows=2, num_frames=4,
                    decode_s=0.5, encode_s=1.0),
        ManifestRow.failure("s1", "b", "http://x/b.mp4", DownloadError("http://x/b.mp4: HTTP 404"), attempts=2),
        ManifestRow.failure("s1", "c", "/c.mp4", DecodeTimeoutError("decoding /c.mp4 took > 3 s")),
        ManifestRow.failure("s1", "d", "/d.mp4", TimeoutError("slow")),
        ManifestRow.failure("s1", "e", "/e.mp4", RuntimeError("odd")),
    ]
    assert read_manifest(out, "s1") is None and committed_shards(out) == []
    write_manifest(out, "s1", rows)
    back = read_manifest(out, "s1")
    assert [(r.video_id, r.status, r.error_class, r.error_type, r.attempts) for r in back] == [
        ("a", "ok", None, None, 1),
        ("b", "failed", "permanent", "DownloadError", 2),
        ("c", "failed", "retriable", "DecodeTimeoutError", 1),
        ("d", "failed", "retriable", "TimeoutError", 1),
        ("e", "failed", "permanent", "RuntimeError", 1),
    ]
    assert back[0].num_frames == 4 and back[0].finished_at.tzinfo is not None
    assert "404" in back[1].error_message
    write_manifest(out, "s0", rows[:1])
    assert committed_shards(out) == ["s0", "s1"]
    assert read_all_manifests(out).num_rows == 6
    assert read_all_manifests(str(tmp_path / "empty")).num_rows == 0
