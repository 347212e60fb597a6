"""tools/screenshots.py: TensorBoard's dashboards for a real run, photographed in headless Chromium.

The end-to-end tests need Debian's Chromium (``/usr/bin/chromium``) and Playwright's Python package
(the ``screenshots`` extra); without them they are skipped, saying which is missing. The
one-line errors are checked in-process and need neither.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

SCRIPT = REPO / "tools" / "screenshots.py"
CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1200, 800
#: Always written for a run with trials, search-level panels and an importance chart.
REQUIRED = ["hparams_table", "hparams_parallel", "hparams_metrics", "scalars_as_opened",
            "scalars", "text_as_opened", "text", "images_as_opened", "images"]


@functools.cache
def load_script() -> ModuleType:
    """tools/screenshots.py as a module (registered, as its dataclasses need)."""
    spec = importlib.util.spec_from_file_location("kerastune_kit_screenshots", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def needs_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api",
                        reason="needs Playwright's Python package (pip install playwright)")


def tensorboards_on(logdir: Path) -> list[int]:
    """Process ids of ``tensorboard`` servers reading ``logdir`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tensorboard.main" in argv and str(logdir).encode() in argv:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real search: 6 random-search trials of at most 2 epochs on iris (enough completed
    trials for the importance chart, so IMAGES has something to show)."""
    run = tmp_path_factory.mktemp("screenshots") / "run"
    proc = run_cli("search", "--data", "iris", "--tuner", "random", "--max-trials", "6",
                   "--max-epochs", "2", "--seed", "1", "--run-dir", str(run), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def content_area(path: Path) -> np.ndarray:
    """The page below TensorBoard's header and right of the sidebar, as RGB."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return pixels[120:, 340:]


@pytest.mark.slow
def test_screenshots_of_a_real_run(tiny_run: Path, tmp_path: Path) -> None:
    needs_browser()
    from PIL import Image

    out = tmp_path / "shots"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tiny_run), "--output", str(out),
                           "--width", str(WIDTH), "--height", str(HEIGHT)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not rendered" not in proc.stderr, proc.stderr
    printed = [Path(line.split("  ")[0]) for line in proc.stdout.splitlines()]
    names = [path.stem for path in printed]
    assert set(REQUIRED) <= set(names), names
    assert all(path.parent == out and path.is_file() for path in printed), printed
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in printed)

    for path in printed:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            size, pixels = image.size, np.asarray(image.convert("L"), dtype=float)
        if path.stem == "hparams_sidebar":
            # As tall as the whole sidebar (it scrolls in the window), as wide as it is.
            assert size[0] < WIDTH / 2 and size[1] > HEIGHT, size
        else:
            assert size == (WIDTH, HEIGHT), (path.name, size)
        assert pixels.std() > 20, f"{path.name} looks blank (pixel std {pixels.std():.1f})"

    # What was clicked for shows in the page, not only the header and the sidebar: an empty
    # content area (no run ticked) measured a pixel std of 4-5, drawn content 14 and more.
    for stem in ("hparams_table", "hparams_parallel", "scalars", "text", "images"):
        area = content_area(out / f"{stem}.png")
        assert area.std() > 10, f"{stem}.png shows nothing (content std {area.std():.1f})"
    # Drawn lines and a loaded chart bring hundreds of colours; text and empty cards a few.
    for stem in ("hparams_parallel", "images"):
        colours = len(np.unique(content_area(out / f"{stem}.png").reshape(-1, 3), axis=0))
        assert colours > 500, f"{stem}.png: {colours} colours, nothing drawn"
    assert not tensorboards_on(tiny_run / "tensorboard")


@pytest.mark.slow
def test_sigterm_stops_tensorboard(tiny_run: Path, tmp_path: Path) -> None:
    needs_browser()
    logdir = tiny_run / "tensorboard"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tiny_run), "--output",
                             str(tmp_path / "shots")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not tensorboards_on(logdir) and proc.poll() is None:
            assert time.monotonic() < deadline, "tensorboard never started"
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted; TensorBoard stopped" in stderr
    assert not tensorboards_on(logdir)


def test_run_without_tensorboard_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    status = load_script().main([str(tmp_path / "run"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1, err
    assert "has no tensorboard/ directory" in err and "--run-dir" in err
    assert not (tmp_path / "o").exists()
    status = load_script().main([str(tmp_path / "nowhere")])
    assert status == 2 and "does not exist" in capsys.readouterr().err


def test_missing_chromium_names_the_package(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    status = load_script().main([str(tmp_path / "run"), "--chromium",
                                 str(tmp_path / "no-chromium")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "apt-get install chromium" in err and str(tmp_path / "no-chromium") in err


def test_missing_playwright_names_the_pip_command(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import raises ImportError
    executable = tmp_path / "chromium"
    executable.write_text("#!/bin/sh\n")
    os.chmod(executable, 0o755)
    status = load_script().main([str(tmp_path / "run"), "--chromium", str(executable)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "pip install playwright" in err


def test_regex_matches_exactly_the_runs() -> None:
    import re

    regex = load_script().runs_regex([".", "0014", "0014/train", "a-b"])
    assert re.fullmatch(regex, ".") and re.fullmatch(regex, "0014/train")
    assert re.fullmatch(regex, "a-b")
    for other in ("x", "0014/validation", "00140", "search"):
        assert not re.fullmatch(regex, other)


def test_plan_prefers_the_search_run_and_the_best_trial() -> None:
    module = load_script()
    runs = ["search", "0", "0/train", "0/validation", "1", "1/train"]
    plan = module.Plan(runs=runs, enabled={"scalars", "text", "images"},
                       tags={"scalars": {"search": {"search/test_score"}, "0": {"trial/score"},
                                         "0/train": {"epoch_loss"},
                                         "0/validation": {"epoch_loss"},
                                         "1/train": {"epoch_loss"}},
                             "text": {"search": {"search/leaderboard"}, "0": {"trial/outcome"}},
                             "images": {"1": {"x"}}},
                       search_run="search", best_runs=["0", "0/train", "0/validation"])
    assert plan.selection("scalars") == ["search", "0", "0/train", "0/validation"]
    assert plan.selection("text") == ["search"]
    assert plan.selection("images") == ["1"]  # no search-level images: the runs that have some


def _main_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the script in-process with a Chromium that is never reached; its one error line."""
    status = load_script().main(args + ["--chromium", "/nonexistent/chromium"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "Chromium" not in err, err  # refused before looking for the browser
    return err


def test_output_that_is_a_file_or_cannot_be_created(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    run = str(tmp_path / "run")
    afile = tmp_path / "shots.png"
    afile.write_text("x")
    err = _main_error([run, "--output", str(afile)], capsys)
    assert f"--output {afile} is an existing file" in err and "pass a directory" in err
    below = afile / "sub"
    err = _main_error([run, "--output", str(below)], capsys)
    assert f"--output {below} cannot be created" in err and "pass a directory" in err
    assert afile.read_text() == "x"
    with pytest.raises(load_script().ScreenshotError, match=r"^--output .* cannot be created"):
        load_script().make_output(below)


def test_port_out_of_range_or_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    run = str(tmp_path / "run")
    for port in ("1", "80", "65536", "-3"):
        err = _main_error([run, "--port", port, "--output", str(tmp_path / "o")], capsys)
        assert f"--port {port} is not a usable port: use 1024-65535" in err
    with socket.socket() as server:  # a server already listening there
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        err = _main_error([run, "--port", str(port), "--output", str(tmp_path / "o")], capsys)
    assert f"--port {port} is in use on 127.0.0.1" in err and "leave --port out" in err
    assert not (tmp_path / "o").exists()
