"""fsspec helpers: URL -> filesystem, joins, atomic writes, listing.

Every path of the project is an fsspec URL (a local path, ``file://``, ``s3://``, ``memory://``...).
Atomic write: locally, write a hidden temporary file in the same folder then ``os.replace``;
on object stores a single PUT is atomic, so the final key is written in one ``pipe`` call.

Transient errors: object-store clients retry them below this module (s3: botocore's retry
handler, 4 retries of each request with back-off for connection errors, 5xx and SlowDown, then
s3fs's own loop for SlowDown and dropped connections), so these helpers add no retry loop of
their own (that would multiply the attempts). ``tests/ingest/test_storage.py`` pins this through
a fault-injecting proxy; an error that outlasts those retries reaches the caller as an OSError.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

TEMP_PREFIX = ".tmp-"


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``url`` -> (filesystem, path inside it)."""
    return url_to_fs(url)


def is_local(url: str) -> bool:
    """True for local paths and ``file://`` URLs."""
    fs, _ = get_fs(url)
    return isinstance(fs, LocalFileSystem)


def local_path(url: str) -> Path:
    """The local path of a local URL (``file://x`` -> ``x``)."""
    fs, path = get_fs(url)
    if not isinstance(fs, LocalFileSystem):
        raise ValueError(f"{url!r} is not a local path")
    return Path(path)


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL with '/' (works for local paths and remote URLs)."""
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def atomic_write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` so that readers see the whole file or nothing."""
    fs, path = get_fs(url)
    if isinstance(fs, LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs.pipe_file(path, data)  # one PUT: atomic on object stores


def atomic_put_file(local: str | Path, url: str) -> None:
    """Copy a local file to ``url`` atomically (same rule as ``atomic_write_bytes``), streaming."""
    fs, path = get_fs(url)
    if isinstance(fs, LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs.put_file(str(local), path)  # an object appears only once its (multipart) upload completes


def remove_stale_temps(url: str) -> int:
    """Delete the temporary files an interrupted ``atomic_write_bytes``/``atomic_put_file`` of
    ``url`` left behind (a kill -9 mid-write); returns how many. Call it only where no other
    writer of ``url`` can be running. Object stores leave no such files: 0."""
    fs, path = get_fs(url)
    if not isinstance(fs, LocalFileSystem):
        return 0
    target = Path(path)
    stale = list(target.parent.glob(f"{TEMP_PREFIX}{glob.escape(target.name)}.*")) if target.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def read_bytes(url: str) -> bytes:
    """The whole content of ``url``."""
    fs, path = get_fs(url)
    return fs.cat_file(path)


def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return fs.exists(path)


def list_names(url: str, suffix: str = "") -> list[str]:
    """Sorted file names (not paths) directly under folder ``url`` ending in ``suffix``.

    Hidden temporary files of interrupted writes are never listed.
    """
    fs, path = get_fs(url)
    if not fs.exists(path):
        return []
    fs.invalidate_cache(path)
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    return sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))


def read_parquet(url: str, schema=None):
    """A whole Parquet file at ``url`` (any fsspec URL) as a ``pyarrow.Table``, cast to ``schema``.

    The bytes are read on the calling thread and copied into Arrow-owned memory before Arrow
    parses them, so Arrow's I/O threads never hold a Python object. Handed a Python file object,
    ``pq.read_table`` reads ahead on those threads, and one that drops the last reference to a
    Python buffer while the interpreter exits is ended by CPython inside a C++ destructor: the
    process aborts with "terminate called without an active exception". For small files
    (manifests, video lists); shards are read per row group by ``vimpac_core.shards.reader``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    sink.write(read_bytes(url))
    return pq.read_table(pa.BufferReader(sink.getvalue()), schema=schema)


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Swap the fully written local folder ``tmp`` in as ``final`` (replacing any earlier one).

    An existing ``final`` is first moved aside to the hidden ``.<name>.old-<random>``, so at every
    instant a complete folder exists under one of the two names; :func:`complete_dir` finds
    whichever survived a crash between the renames. The moved-aside folder is removed last.

    Nothing else is ever deleted: when ``final`` holds entries ``tmp`` does not (files someone
    else put there), ``tmp``'s entries are moved in one by one instead, replacing only their
    namesakes, and the other entries stay.
    """
    tmp, final = Path(tmp), Path(final)
    if final.is_dir() and set(os.listdir(final)) - set(os.listdir(tmp)):
        return _move_entries(tmp, final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def staging_name(final: str | Path) -> Path:
    """A fresh hidden sibling ``.<name>.tmp-<random>`` to build the folder ``final`` in."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def staged_dir(final: str | Path, *, clear_stale: bool = False) -> Iterator[Path]:
    """Build the local folder ``final`` out of sight, then swap it in whole.

    Yields a new empty hidden sibling (:func:`staging_name`); when the block ends without error it
    replaces ``final`` through :func:`replace_dir` (a reader sees the old folder or the new one,
    never half of one), and on any error (a kill included, as far as Python sees it) it is removed
    and nothing of ``final`` changed. ``clear_stale``: first delete the staging folders of ``final``
    that an earlier killed process left, for callers that are the only writer of ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if clear_stale:
        for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = staging_name(final)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_entries(tmp: Path, final: Path) -> Path:
    """Move each entry of ``tmp`` into ``final`` (a namesake folder is swapped like replace_dir)."""
    for entry in sorted(tmp.iterdir()):
        target = final / entry.name
        if target.is_dir() and not target.is_symlink():
            replace_dir(entry, target)
        else:
            os.replace(entry, target)
    tmp.rmdir()
    return final


def _is_ours(name: str, ours: Sequence[str]) -> bool:
    """``name`` is one of ``ours`` (names or glob patterns) or a temporary/moved-aside copy of one."""
    if name.startswith(TEMP_PREFIX):
        return True
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, f".{p}.*") or fnmatch.fnmatchcase(name, f"{p}.tmp*")
               for p in ours)


def check_output_dir(url: str, ours: Sequence[str], *, overwrite: bool, owner: str) -> list[str]:
    """Refuse the output folder ``url`` when it holds anything ``owner`` does not write.

    ``ours``: the names (or glob patterns) ``owner`` writes directly in the folder. With
    ``overwrite`` the other entries are allowed (the command then replaces only its own files,
    see :func:`replace_dir`). Returns the names of ours already there (empty for a new folder).

    Raises:
        OutputExistsError: ``url`` is a file, or holds other entries and ``overwrite`` is False.
    """
    from vimpac_core.errors import OutputExistsError

    fs, path = get_fs(url)
    if not fs.exists(path):
        return []
    if not fs.isdir(path):
        raise OutputExistsError(f"{url} is a file, not a folder: give a folder for the output")
    fs.invalidate_cache(path)
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    foreign = [n for n in names if not _is_ours(n, ours)]
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputExistsError(
            f"{url} holds files {owner} did not write ({shown}); give a new or empty folder, or pass "
            f"--overwrite to write {owner}'s files beside them (nothing else there is touched)"
        )
    return [n for n in names if n not in foreign and not n.startswith(".")]


def complete_dir(final: str | Path) -> Path | None:
    """``final``, else the newest copy a crash inside :func:`replace_dir` moved aside, else None."""
    final = Path(final)
    if final.is_dir():
        return final
    aside = [p for p in final.parent.glob(f".{glob.escape(final.name)}.old-*") if p.is_dir()]
    return max(aside, key=lambda p: p.stat().st_mtime) if aside else None
