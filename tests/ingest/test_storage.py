"""Atomic writes and listings on local folders, memory:// and s3 (moto)."""

from __future__ import annotations

import pytest

from vimpac_core.storage import (
    atomic_put_file,
    atomic_write_bytes,
    exists,
    is_local,
    join,
    list_names,
    read_bytes,
)


def test_local_atomic_write_leaves_no_temp(tmp_path):
    url = join(str(tmp_path), "sub", "a.parquet")
    atomic_write_bytes(url, b"one")
    atomic_write_bytes(url, b"two")
    assert read_bytes(url) == b"two"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.parquet"]
    (tmp_path / "sub" / ".tmp-a.parquet.x").write_bytes(b"partial")  # a write killed midway
    assert list_names(join(str(tmp_path), "sub"), ".parquet") == ["a.parquet"]
    assert is_local(f"file://{tmp_path}") and not is_local("memory://x")


def test_memory_and_s3_round_trip(s3_bucket):
    for root in ("memory://vimpac-test", f"s3://{s3_bucket}/out"):
        url = join(root, "manifest", "x.parquet")
        assert not exists(url)
        atomic_write_bytes(url, b"data")
        assert exists(url) and read_bytes(url) == b"data"
        assert list_names(join(root, "manifest"), ".parquet") == ["x.parquet"]
    assert list_names("memory://vimpac-test/none") == []


def test_failed_local_write_keeps_the_old_file(tmp_path):
    url = str(tmp_path / "f.bin")
    atomic_write_bytes(url, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(url, object())  # type: ignore[arg-type]
    assert read_bytes(url) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_s3_writes_and_listings_retry_transient_errors(s3_bucket, s3_proxy, tmp_path):
    """Connection resets and 503 SlowDown are retried by the client layer (botocore's retry handler,
    then s3fs's own loop), so storage.py adds no retry wrapper of its own: this pins that it does.
    Each count stays within botocore's default of 4 retries of one request."""
    root = f"s3://{s3_bucket}/out"
    local = tmp_path / "video.mp4"
    local.write_bytes(b"video bytes")
    injected = 0
    for fault, count in (("reset_left", 3), ("slowdown_left", 2)):
        for call in (lambda: atomic_write_bytes(join(root, "a.parquet"), b"data"),
                     lambda: atomic_put_file(local, join(root, "b.mp4")),
                     lambda: list_names(root)):
            setattr(s3_proxy, fault, count)
            call()
            injected += count
            assert s3_proxy.faults == injected, fault  # every fault hit a real request, which was retried
    assert list_names(root) == ["a.parquet", "b.mp4"]
    assert read_bytes(join(root, "a.parquet")) == b"data" and read_bytes(join(root, "b.mp4")) == b"video bytes"


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    from vimpac_core.storage import TEMP_PREFIX, atomic_write_bytes, remove_stale_temps

    url = str(tmp_path / "shards" / "00001-abc.parquet")
    atomic_write_bytes(url, b"whole")
    left = [tmp_path / "shards" / f"{TEMP_PREFIX}00001-abc.parquet.x1y2", tmp_path / "shards" / f"{TEMP_PREFIX}00001-abc.parquet.z9"]
    other = tmp_path / "shards" / f"{TEMP_PREFIX}00002-def.parquet.q"  # another shard's: not ours to delete
    for path in (*left, other):
        path.write_bytes(b"partial")
    assert remove_stale_temps(url) == 2
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == sorted(["00001-abc.parquet", other.name])
    assert remove_stale_temps(str(tmp_path / "nowhere" / "x.parquet")) == 0


def test_replace_dir_swaps_whole_folders_and_a_crash_leaves_a_complete_one(tmp_path):
    from vimpac_core.storage import complete_dir, replace_dir

    final = tmp_path / "tokenizer"
    for version in ("v1", "v2"):
        tmp = tmp_path / f"tokenizer.tmp-{version}"
        tmp.mkdir()
        (tmp / "weights").write_text(version)
        assert replace_dir(tmp, final) == final
        assert (final / "weights").read_text() == version and not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer"]  # nothing moved aside is left
    # A kill between the two renames: the previous folder sits moved aside, final is missing.
    final.rename(tmp_path / ".tokenizer.old-1a2b3c4d")
    assert (complete_dir(final) / "weights").read_text() == "v2"
    assert complete_dir(tmp_path / "nothing") is None


def test_staged_dir_swaps_in_a_whole_folder_and_an_error_changes_nothing(tmp_path):
    from vimpac_core.storage import check_output_dir, staged_dir

    final = tmp_path / "out" / "model"
    with staged_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".model.tmp-") and not any(tmp.iterdir())
        (tmp / "weights").write_text("v1")
        assert not final.exists()  # nothing visible until the block ends
    assert (final / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError), staged_dir(final) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed mid-save")
    assert (final / "weights").read_text() == "v1"  # the old folder untouched, the staging one gone
    assert sorted(p.name for p in final.parent.iterdir()) == ["model"]
    # A staging folder a killed process left is the command's own (check_output_dir) and is cleared
    # by a writer that says it is the only one.
    (final.parent / ".model.tmp-deadbeef").mkdir()
    assert check_output_dir(str(final.parent), ["model"], overwrite=False, owner="test") == ["model"]
    with staged_dir(final, clear_stale=True) as tmp:
        (tmp / "weights").write_text("v2")
    assert sorted(p.name for p in final.parent.iterdir()) == ["model"]
    assert (final / "weights").read_text() == "v2"
