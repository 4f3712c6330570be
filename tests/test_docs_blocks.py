"""Every ``python`` code block of the README and of ``docs/*.md`` runs as written.

The convention (also in ``docs/index.md``, "Code blocks"):

- A fenced ```` ```python ```` block runs. The blocks of one file run in order, in one
  namespace (like the cells of a notebook), in a fresh temporary working directory, in a
  subprocess with a per-file time limit.
- A block right after an HTML comment ``<!-- no-run: reason -->`` does not run; the
  reason is required, and the test below keeps the exceptions few.
- A block right after ``<!-- slow -->`` runs only with ``-m slow``.
- Blocks in other languages (``console``, ``bash``, ``json``, ``nginx``, bare fences)
  are shell transcripts, requests or configuration: shown, never run here. The CLI they
  show is tested in ``tests/test_cli.py``, the README's commands in ``tests/test_readme.py``.
- The README's first ``python`` block runs in ``tests/test_readme.py``, not again here.
"""

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 120  # per file; the default run of all files takes well under this in total
MAX_NO_RUN = 8

_FENCE = re.compile(
    r"(?:<!--\s*(?P<mark>no-run|slow)(?::\s*(?P<reason>.*?))?\s*-->\s*\n)?"
    r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```\s*$",
    re.S | re.M,
)


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    mark: str | None
    reason: str | None


def blocks(path):
    """The fenced code blocks of one Markdown file, with their marks."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("lang")) + 1
        reason = (m.group("reason") or "").strip() or None
        out.append(Block(path, line, m.group("lang"), m.group("code"), m.group("mark"), reason))
    return out


def _python_blocks(path, *, slow):
    keep = {None, "slow"} if slow else {None}
    todo = [b for b in blocks(path) if b.lang == "python" and b.mark in keep]
    if path.name == "README.md":
        todo = todo[1:]  # the first one runs in tests/test_readme.py, once is enough
    return todo


_RUNNER = textwrap.dedent(
    """
    import time, warnings
    import matplotlib
    matplotlib.use("Agg")
    warnings.filterwarnings("ignore", ".*non-interactive.*", UserWarning)
    namespace = {"__name__": "__main__"}
    for filename, code in BLOCKS:
        start = time.perf_counter()
        exec(compile(code, filename, "exec"), namespace)
        print(f"--- {filename} ran in {time.perf_counter() - start:.1f} s", flush=True)
    """
)


def _run_file(path, tmp_path, *, slow=False):
    todo = _python_blocks(path, slow=slow)
    if not todo:
        pytest.skip(f"{path.name} has no python block to run")
    # each block keeps its own line numbers in tracebacks: pad it to its place in the file
    payload = [(f"{path.name}:{b.line}", "\n" * b.line + b.code) for b in todo]
    script = tmp_path / "_run_blocks.py"
    script.write_text(f"BLOCKS = {payload!r}\n{_RUNNER}", encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "error::FutureWarning,error::DeprecationWarning",
    }
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name}: blocks ran past {TIMEOUT_S} s\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"{path.name}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    ran = [line for line in proc.stdout.splitlines() if line.startswith("--- ")]
    print("\n".join(ran))  # seen with pytest -s: the time of each block
    assert len(ran) == len(todo)


def test_every_file_is_checked():
    assert len(FILES) > 10
    n_python = sum(b.lang == "python" for f in FILES for b in blocks(f))
    assert n_python > 30


def test_no_run_exceptions_are_few_and_justified():
    marked = [b for f in FILES for b in blocks(f) if b.mark == "no-run"]
    assert len(marked) <= MAX_NO_RUN, [f"{b.path.name}:{b.line}" for b in marked]
    for b in marked:
        assert b.reason and len(b.reason) > 10, f"{b.path.name}:{b.line}: no-run needs a reason"


def test_marks_are_on_python_blocks():
    for f in FILES:
        for b in blocks(f):
            assert b.mark is None or b.lang == "python", f"{f.name}:{b.line}: mark on {b.lang!r}"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_python_blocks_run(path, tmp_path):
    _run_file(path, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_python_blocks_run_with_slow_ones(path, tmp_path):
    if not any(b.mark == "slow" for b in blocks(path)):
        pytest.skip(f"{path.name} has no slow block")
    _run_file(path, tmp_path, slow=True)
