"""`python -m tests.model.make_snapshot OUT.zip`: a small snapshot in the released VIMPAC format
(``classifier.pt`` + ``args.pickle`` + ``args.txt``, zipped as the release's files are), built from
the reference model of these tests. README.md's import example reads it: the real release cannot be
downloaded on a machine without network."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench import reference_model as ref
from tests.model.test_convert import _released_model, _write_snapshot, _zip


def make_snapshot(out: Path) -> Path:
    f = ref.flags()
    with tempfile.TemporaryDirectory() as tmp:
        folder = _write_snapshot(Path(tmp) / out.stem, _released_model(f).state_dict(), f)
        return _zip(folder, Path(tmp), out)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].endswith(".zip"):
        sys.exit("usage: python -m tests.model.make_snapshot OUT.zip")
    print(f"released-format snapshot -> {make_snapshot(Path(sys.argv[1]))}")
