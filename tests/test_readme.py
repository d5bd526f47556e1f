"""README.md runs literally: every ```console block, in order, in one scratch folder.

Conventions (README.md, "Examples in this README"):
- A command line starts with ``$ ``; the lines after it, up to the next command or the end of the
  block, are its output as shown (trimmed: every line shown must appear, in order, others may be
  left out). ``…`` inside a shown line stands for any text (figures, timings, paths that differ
  between runs); a shown line that is only ``…`` is a reminder that lines were left out.
- The command must exit 0, or the code a trailing ``# exit N`` comment names; an example whose
  last shown line is an error (``error: ...``) must exit non-zero.
- A block preceded by the line ``<!-- not-run: REASON -->`` is not run (GPU, cluster, download).

The commands run with bash in a scratch folder that holds a copy of the repository's tracked files
(so ``configs/...`` and ``examples`` paths work as in a fresh clone), with ``vimpac`` on the PATH
and one Prefect server shared by the whole run (the test session's). To refresh the outputs shown,
run it with ``VIMPAC_README_RECORD=FILE``: every command's whole output is appended to FILE.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*\S.*-->$")
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
ERROR_LINE = re.compile(r"(^|: )error: ")
ELLIPSIS = "…"
COMMAND_TIMEOUT_S = 900
RECORD = os.environ.get("VIMPAC_README_RECORD")  # a file: every command's output is appended to it


@dataclass
class Example:
    command: str
    shown: list[str] = field(default_factory=list)
    line: int = 0  # 1-based line of the command in README.md

    @property
    def expected_exit(self) -> int | None:
        """The exit code it must have; None: any non-zero (an error example)."""
        found = EXIT.search(self.command)
        if found:
            return int(found.group(1))
        shown = [s for s in self.shown if s.strip()]
        return None if shown and ERROR_LINE.search(shown[-1]) else 0


def console_blocks(text: str) -> list[list[Example]]:
    """The runnable ```console blocks of ``text`` as lists of examples, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        start, i = i, i + 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append((i + 1, lines[i]))
            i += 1
        if not NOT_RUN.match(before):
            blocks.append(_examples(body, start))
        i += 1
    return blocks


def _examples(body: list[tuple[int, str]], start: int) -> list[Example]:
    examples: list[Example] = []
    for number, line in body:
        if line.startswith("$ "):
            examples.append(Example(command=line[2:], line=number))
        elif examples:
            examples[-1].shown.append(line)
        elif line.strip():
            raise AssertionError(f"README.md:{start + 1}: a console block must start with a `$ ` command line")
    return examples


def _pattern(shown: str) -> re.Pattern:
    parts = re.split(r"…|\.\.\.", shown.strip())
    return re.compile(".*".join(re.escape(p) for p in parts))


def missing_lines(shown: list[str], output: str) -> list[str]:
    """Shown lines that do not appear (in order) in ``output``."""
    actual = [line.rstrip() for line in output.splitlines()]
    missing, at = [], 0
    for line in shown:
        if not line.strip() or line.strip() in (ELLIPSIS, "..."):
            continue
        pattern = _pattern(line)
        for k in range(at, len(actual)):
            if pattern.fullmatch(actual[k].strip()):
                at = k + 1
                break
        else:
            missing.append(line)
    return missing


def test_the_parser_reads_blocks_commands_outputs_and_skips(tmp_path):
    text = ("intro\n```console\n$ echo a\na\n$ false  # exit 1\n```\n\n<!-- not-run: needs a GPU -->\n"
            "```console\n$ nvidia-smi\n```\n```console\n$ vimpac x\nvimpac x: error: bad\n```\n")
    blocks = console_blocks(text)
    assert [[e.command for e in b] for b in blocks] == [["echo a", "false  # exit 1"], ["vimpac x"]]
    assert [e.expected_exit for e in blocks[0]] == [0, 1] and blocks[1][0].expected_exit is None
    assert missing_lines(["a …", "…", "c"], "a 1\nb\nc\n") == []
    assert missing_lines(["c", "a"], "a\nc\n") == ["a"]  # order matters
    assert missing_lines(['{"videos": 7, …}'], '{"videos": 6, "ok": 1}') == ['{"videos": 7, …}']


def _scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the tracked files, and the environment with `vimpac` on the PATH."""
    work = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "vimpac"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vimpac_cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])  # `python`: ours
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(work),
           "OMP_NUM_THREADS": "1", "COLUMNS": "120", "PYTHONUNBUFFERED": "1",
           "PREFECT_LOGGING_LEVEL": "INFO"}  # what a user sees (the test session quiets Prefect)
    return work, env


@pytest.mark.slow
def test_readme_examples_run_as_shown(tmp_path, prefect_server):
    blocks = console_blocks((REPO / "README.md").read_text())
    assert blocks, "README.md has no console block"
    work, env = _scratch(tmp_path)
    failures = []
    for example in (e for block in blocks for e in block):
        proc = subprocess.run(["bash", "-c", example.command], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT_S)
        output = proc.stdout  # stdout and stderr interleaved, as in a terminal
        if RECORD:  # refreshing the README: keep every command's whole output for pasting
            with open(RECORD, "a") as f:
                f.write(f"README.md:{example.line} (exit {proc.returncode}) $ {example.command}\n{output}\n")
        want = example.expected_exit
        if (want is None and proc.returncode == 0) or (want is not None and proc.returncode != want):
            failures.append(f"README.md:{example.line}: `{example.command}` exited {proc.returncode} "
                            f"(expected {'non-zero' if want is None else want}):\n{output[-3000:]}")
            if not RECORD:
                break  # later examples build on this one
        missing = missing_lines(example.shown, output)
        if missing:
            failures.append(f"README.md:{example.line}: `{example.command}` did not print {missing[:3]}; "
                            f"it printed:\n{output[-3000:]}")
    assert not failures, "\n\n".join(failures)
