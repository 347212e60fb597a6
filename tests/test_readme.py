"""Every fenced Python and shell block of README.md runs as written, top to bottom, in one fresh
working directory: what a user who pastes them in order gets.

How the blocks run (:func:`run_readme`):

- ```` ```python ```` blocks run with this interpreter (``sys.executable``) in a subprocess, as
  written. Consecutive Python blocks (no shell block between them) share one process, so
  TensorFlow starts once per group, but each block runs in a fresh namespace, compiled with its
  README line numbers: a block that uses a name it did not define or import fails as it would
  in a fresh interpreter, and a traceback points at the README line.
- ```` ```bash ```` / ``sh`` / ``shell`` / ``console`` blocks run with ``bash`` (``set -e``;
  for ``console``, the ``$ `` lines), changed only where a test cannot run them as they are
  (:func:`shell_script`):

  * steps that create or activate a virtual environment or ``pip install`` are dropped: the
    test runs inside the installed environment. ``python`` and ``python3`` are shims, first on
    ``PATH``, that run ``sys.executable``; the interpreter's ``bin`` directory (``tensorboard``,
    ``kerastune-kit``) comes next.
  * budgets: every ``kerastune_kit search`` command gets ``--max-epochs 3 --max-trials 3``
    unless it sets its own ``--max-epochs`` (the default Hyperband search then runs 3 trials
    of at most 3 epochs instead of 23 of at most 9). No environment variable shrinks
    anything, and the Python blocks run unchanged: the README keeps their budgets small.
  * ``tensorboard --logdir DIR`` starts a server that never ends: the test checks that
    ``tensorboard`` is on ``PATH``, then starts it on 127.0.0.1 at a free port with the same
    ``DIR`` (``tests/tb_server.py``), requires it to list runs, and stops it.
  * ``python -m pytest`` would run this suite inside itself (8 minutes, and this test again):
    it runs as ``python -m pytest --collect-only -q ... tests/test_config.py`` in the
    repository, which proves the command and the test extra (CI runs the command itself).

A failing block fails the test with its README line number, what ran, and its stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tb_server import tensorboard_server

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

PYTHON_LANGS = ("python", "py", "python3")
SHELL_LANGS = ("bash", "sh", "shell", "console")
#: Fenced blocks that are not run: output samples (no language) and plain text.
SHOWN_LANGS = ("", "text")
#: Appended to ``kerastune_kit search`` commands that set no ``--max-epochs`` of their own.
SEARCH_BUDGET = "--max-epochs 3 --max-trials 3"
BLOCK_TIMEOUT_S = 300

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_DROPPED = re.compile(
    r"^(python3? -m venv\b|(\.|source) \S*bin/activate$|(python3? -m )?pip3? install\b)"
)
_PYTEST = re.compile(r"^python3? -m pytest\b(.*)$")
_TENSORBOARD = re.compile(r"^tensorboard\s+--logdir[= ](\S+)\s*$")
_SEARCH = re.compile(r"\b(kerastune[_-]kit search)\b")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")


@dataclass
class Block:
    line: int  #: README line of the block's first line (after the fence)
    lang: str
    source: str

    @property
    def kind(self) -> str:
        if self.lang in PYTHON_LANGS:
            return "python"
        if self.lang in SHELL_LANGS:
            return "shell"
        return "shown"


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, in order."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        end = i + 1
        while end < len(lines) and not (lines[end].strip().startswith(fence[0] * len(fence))
                                         and not lines[end].strip().strip(fence[0])):
            end += 1
        blocks.append(Block(i + 2, lang, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return blocks


def shell_script(block: Block) -> tuple[str, list[str]]:
    """The script a shell block runs as (see the module docstring) and the ``--logdir`` of each
    ``tensorboard`` command it holds (checked separately)."""
    lines = block.source.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    out, logdirs, heredoc_end = ["set -e -o pipefail"], [], None
    for line in lines:
        if heredoc_end is not None:  # a here-document's body is data: unchanged
            out.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        heredoc = _HEREDOC.search(line)
        if heredoc:
            heredoc_end = heredoc.group(2)
        steps = [line] if heredoc else [s.strip() for s in line.split(" && ")]
        kept = []
        for step in steps:
            if _DROPPED.match(step):
                continue
            pytest_run = _PYTEST.match(step)
            tensorboard = _TENSORBOARD.match(step)
            if pytest_run:
                step = (f"(cd '{REPO}' && python -m pytest --collect-only -q "
                        f"-p no:cacheprovider{pytest_run.group(1)} tests/test_config.py)")
            elif tensorboard:
                logdirs.append(tensorboard.group(1))
                step = f"command -v tensorboard >/dev/null  # then served: {tensorboard.group(1)}"
            elif _SEARCH.search(step) and "--max-epochs" not in step:
                step = _SEARCH.sub(rf"\1 {SEARCH_BUDGET}", step, count=1)
            kept.append(step)
        if kept or not line.strip():
            out.extend(kept or [line])
    return "\n".join(out) + "\n", logdirs


_RUNNER = r'''
import json, sys, traceback
for block in json.load(open(sys.argv[1])):
    tag = f"@@@ README.md:{block['line']}"
    print(tag, "start", flush=True)
    print(tag, "start", file=sys.stderr, flush=True)
    code = compile("\n" * (block["line"] - 1) + block["source"], block["path"], "exec")
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(tag, "failed", file=sys.stderr, flush=True)
            sys.exit(1)
    except BaseException:
        traceback.print_exc()
        print(tag, "failed", file=sys.stderr, flush=True)
        sys.exit(1)
    print(tag, "done", file=sys.stderr, flush=True)
'''


def _environment(workdir: Path) -> dict[str, str]:
    shims = workdir.parent / "shims"
    shims.mkdir(exist_ok=True)
    for name in ("python", "python3"):
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        shim.chmod(0o755)
    path = os.pathsep.join([str(shims), str(Path(sys.executable).parent),
                            os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "2",
            "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def _failure(what: str, ran: str, proc: subprocess.CompletedProcess[str] | None,
             extra: str = "") -> str:
    parts = [what, "--- as run ---", ran.rstrip()]
    if proc is not None:
        parts += ["--- stderr (end) ---", proc.stderr[-6000:].rstrip(),
                  "--- stdout (end) ---", proc.stdout[-2000:].rstrip()]
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def _run_python_group(group: list[Block], workdir: Path, env: dict[str, str]) -> None:
    spec = workdir.parent / f"python_blocks_{group[0].line}.json"
    spec.write_text(json.dumps([{"line": b.line, "source": b.source, "path": str(README)}
                                for b in group]))
    try:
        proc = subprocess.run([sys.executable, "-c", _RUNNER, str(spec)], cwd=workdir, env=env,
                              capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S * len(group))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md:{group[0].line}..: the Python blocks did not finish within "
                    f"{exc.timeout:.0f}s")
    if proc.returncode == 0:
        return
    failed = re.findall(r"@@@ README\.md:(\d+) failed", proc.stderr)
    line = int(failed[-1]) if failed else None
    block = next((b for b in group if b.line == line), None)
    if block is not None:  # only the failing block's part of stderr
        proc.stderr = proc.stderr.split(f"@@@ README.md:{line} start", 1)[-1]
    where = f"README.md:{line}" if line else f"README.md:{group[0].line} (group)"
    pytest.fail(_failure(f"{where}: the ```python block failed (exit status "
                         f"{proc.returncode})", block.source if block else "", proc),
                pytrace=False)


def _run_shell(block: Block, workdir: Path, env: dict[str, str]) -> None:
    script, logdirs = shell_script(block)
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md:{block.line}: the ```{block.lang} block did not finish within "
                    f"{BLOCK_TIMEOUT_S}s\n{script}")
    if proc.returncode != 0:
        pytest.fail(_failure(f"README.md:{block.line}: the ```{block.lang} block failed (exit "
                             f"status {proc.returncode})", script, proc), pytrace=False)
    for logdir in logdirs:
        where = f"README.md:{block.line}: `tensorboard --logdir {logdir}`"
        assert shutil.which("tensorboard", path=env["PATH"]), f"{where}: not on PATH"
        assert (workdir / logdir).is_dir(), f"{where}: no such directory (yet)"
        try:
            with tensorboard_server(workdir / logdir) as server:
                runs = server.get("/data/runs")
        except RuntimeError as exc:
            pytest.fail(f"{where}: the server did not start: {exc}", pytrace=False)
        assert runs, f"{where}: the server lists no runs"


def run_readme(workdir: Path) -> list[tuple[Block, float]]:
    """Run every Python and shell block in order; returns each group's first block and its
    seconds."""
    workdir.mkdir()
    env = _environment(workdir)
    timings: list[tuple[Block, float]] = []
    pending: list[Block] = []

    def flush() -> None:
        if pending:
            started = time.perf_counter()
            _run_python_group(pending, workdir, env)
            timings.append((pending[0], time.perf_counter() - started))
            pending.clear()

    for block in readme_blocks():
        if block.kind == "python":
            pending.append(block)
        elif block.kind == "shell":
            flush()
            started = time.perf_counter()
            _run_shell(block, workdir, env)
            timings.append((block, time.perf_counter() - started))
    flush()
    return timings


# ---------------------------------------------------------------------- tests
def test_every_fenced_block_is_run_or_only_shown():
    """A block in another language (```toml, ```ini) would silently go unchecked: the README
    writes files with a shell block instead, and output samples have no language."""
    blocks = readme_blocks()
    unknown = [(b.line, b.lang) for b in blocks if b.kind == "shown" and b.lang not in SHOWN_LANGS]
    assert not unknown, f"blocks neither run nor plain output: {unknown}"
    kinds = [b.kind for b in blocks]
    assert kinds.count("python") >= 5 and kinds.count("shell") >= 5, kinds


def test_shell_rewrites():
    quick = Block(1, "bash", "python3 -m venv .venv && . .venv/bin/activate && pip install . "
                  "&& python -m kerastune_kit search\n")
    script, logdirs = shell_script(quick)
    assert script.splitlines()[1:] == [f"python -m kerastune_kit search {SEARCH_BUDGET}"]
    assert logdirs == []
    tests = Block(1, "bash", 'pip install -e ".[test]" && python -m pytest -m "not slow"\n')
    assert "--collect-only" in shell_script(tests)[0] and '-m "not slow"' in shell_script(tests)[0]
    board = Block(1, "bash", "tensorboard --logdir runs/x/tensorboard\n")
    assert shell_script(board)[1] == ["runs/x/tensorboard"]
    toml = Block(1, "bash", "cat > s.toml <<'EOF'\n[search]\nmax_epochs = 15\nEOF\n"
                 "python -m kerastune_kit search --config s.toml --max-epochs 2 && echo ok\n")
    lines = shell_script(toml)[0].splitlines()
    assert lines[1:5] == ["cat > s.toml <<'EOF'", "[search]", "max_epochs = 15", "EOF"]
    assert lines[5:] == ["python -m kerastune_kit search --config s.toml --max-epochs 2",
                         "echo ok"]
    console = Block(1, "console", "$ python -m kerastune_kit datasets\ndigits  ...\n")
    assert shell_script(console)[0].splitlines()[1:] == ["python -m kerastune_kit datasets"]


@pytest.mark.slow
def test_readme_blocks_run_top_to_bottom(tmp_path):
    timings = run_readme(tmp_path / "work")
    report = ", ".join(f"README.md:{b.line} {b.kind} {s:.1f}s" for b, s in timings)
    print(f"README blocks: {report}")
    work = tmp_path / "work"
    # What the blocks promise: the quick start's run, the export, the TOML search and the
    # Python search in run directories of their own.
    assert (work / "runs" / "digits-hyperband" / "best_model.keras").is_file()
    assert (work / "models" / "digits.keras").is_file()
    assert (work / "runs" / "wine-bayesian" / "leaderboard.csv").is_file()
    assert (work / "runs" / "wine-python" / "leaderboard.csv").is_file()
