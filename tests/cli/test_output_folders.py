"""Nothing a user made is deleted: every command that writes a folder refuses one holding other
files, and `--overwrite` replaces only the command's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import reference_model as ref
from tests.model.test_convert import _released_model, _write_snapshot, _zip
from vimpac_core.errors import OutputExistsError
from vimpac_core.storage import check_output_dir, replace_dir

from .conftest import last_line, vimpac


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A released-format snapshot zip (classifier.pt + args.pickle) of a 2-layer model."""
    root = tmp_path_factory.mktemp("snap")
    f = ref.flags()
    folder = _write_snapshot(root / "src" / "vimpac_small", _released_model(f).state_dict(), f)
    return _zip(folder, root / "src", root / "vimpac_small.zip")


def test_import_checkpoint_refuses_a_folder_with_other_files_and_overwrite_keeps_them(tmp_path, snapshot):
    dst = tmp_path / "models"
    (dst / "notes").mkdir(parents=True)
    (dst / "notes" / "plan.txt").write_text("mine")
    (dst / "README.md").write_text("my models")

    proc = vimpac("import-checkpoint", str(snapshot), str(dst))
    assert proc.returncode == 2
    assert last_line(proc.stderr) == (
        f"vimpac import-checkpoint: error: {dst} holds files import-checkpoint did not write (README.md, notes); "
        "give a new or empty folder, or pass --overwrite to write import-checkpoint's files beside them "
        "(nothing else there is touched)")
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "notes"]

    proc = vimpac("import-checkpoint", str(snapshot), str(dst), "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "config.json", "model.safetensors", "notes"]
    assert (dst / "notes" / "plan.txt").read_text() == "mine" and (dst / "README.md").read_text() == "my models"

    again = vimpac("import-checkpoint", str(snapshot), str(dst), "--overwrite")  # replaces ours, keeps theirs
    assert again.returncode == 0 and (dst / "README.md").read_text() == "my models"


def test_import_checkpoint_will_not_replace_a_model_without_overwrite(tmp_path, snapshot):
    dst = tmp_path / "m"
    assert vimpac("import-checkpoint", str(snapshot), str(dst)).returncode == 0
    before = (dst / "model.safetensors").stat().st_mtime_ns
    proc = vimpac("import-checkpoint", str(snapshot), str(dst))
    assert proc.returncode == 2
    assert last_line(proc.stderr) == (f"vimpac import-checkpoint: error: {dst} already holds a model "
                                      "(config.json, model.safetensors); pass --overwrite to replace it, or give a new folder")
    assert (dst / "model.safetensors").stat().st_mtime_ns == before


def test_replace_dir_keeps_entries_it_did_not_bring(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / ".final.tmp"
    final.mkdir()
    (final / "a.txt").write_text("old a")
    (final / "sub").mkdir()
    (final / "sub" / "old.bin").write_text("old")
    (final / "theirs.txt").write_text("theirs")
    tmp.mkdir()
    (tmp / "a.txt").write_text("new a")
    (tmp / "sub").mkdir()
    (tmp / "sub" / "new.bin").write_text("new")
    replace_dir(tmp, final)
    assert (final / "a.txt").read_text() == "new a" and (final / "theirs.txt").read_text() == "theirs"
    assert sorted(p.name for p in (final / "sub").iterdir()) == ["new.bin", "old.bin"]  # the same rule inside
    assert not tmp.exists() and not list(tmp_path.glob(".final*"))


def test_check_output_dir(tmp_path):
    assert check_output_dir(str(tmp_path / "new"), ["x"], overwrite=False, owner="cmd") == []
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    (tmp_path / "d" / ".tmp-x.123").write_text("")  # a killed atomic write of ours
    assert check_output_dir(str(tmp_path / "d"), ["x"], overwrite=False, owner="cmd") == ["x"]
    (tmp_path / "d" / ".DS_Store").write_text("")
    with pytest.raises(OutputExistsError, match=r"holds files cmd did not write \(\.DS_Store\)"):
        check_output_dir(str(tmp_path / "d"), ["x"], overwrite=False, owner="cmd")
    assert check_output_dir(str(tmp_path / "d"), ["x"], overwrite=True, owner="cmd") == ["x"]
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output_dir(str(tmp_path / "d" / "x"), ["x"], overwrite=True, owner="cmd")
