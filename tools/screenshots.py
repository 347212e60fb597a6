"""Screenshots of a run's TensorBoard dashboards, taken in headless Chromium.

Starts ``tensorboard --logdir RUN/tensorboard`` on 127.0.0.1 at a free port (this Python's
TensorBoard), opens HPARAMS, SCALARS, TEXT and IMAGES in Debian's Chromium driven by
Playwright, waits for each to draw its content, and saves what a person sees as PNG files of
``--width`` x ``--height`` pixels (the browser window; nothing below it), except one:

- ``hparams_table.png``: HPARAMS as opened (the table view, the sidebar's ticked hyperparameters
  and metrics).
- ``hparams_parallel.png``: after clicking PARALLEL COORDINATES VIEW.
- ``hparams_metrics.png``: the table view with "Show Metrics" ticked on its first row.
- ``hparams_sidebar.png``: HPARAMS' whole sidebar (it scrolls; this image is as tall as it is):
  which hyperparameters, metrics and statuses are ticked.
- ``scalars_as_opened.png``, ``text_as_opened.png``, ``images_as_opened.png``: each dashboard as
  it opens, before any click.
- ``scalars.png``: after typing a run regex in the sidebar and ticking the search-level run
  (``search``, or ``.`` in runs written before it was named) and the best trial's runs
  (``<trial>``, ``<trial>/train``, ``<trial>/validation``, from ``best_hyperparameters.json``).
- ``scalars_search.png``: the same runs with the tag filter set to the search-level run's tags.
- ``text.png``, ``images.png``: after ticking the search-level run (the best trial's runs when
  there is none); ``text_leaderboard.png``: with the tag filter set to ``leaderboard``.

A dashboard TensorBoard does not offer (no data of its kind in the run) is skipped with a note.
Selections go through the page as a person makes them (the runs regex field, the checkboxes,
the tab, the tag filter), and every wait is for an element of the content (table rows, a
drawn line, a loaded image, rendered markdown), followed by the network falling idle.

Usage::

    python tools/screenshots.py RUN [--output DIR] [--port N] [--width 1600 --height 1000]

Needs Debian's Chromium (``apt-get install chromium``) and Playwright's Python package
(``pip install playwright``, or the ``screenshots`` extra: ``pip install
"kerastune_kit[screenshots]"``). Playwright drives ``/usr/bin/chromium`` (``--chromium``), so it
downloads no browser.

Prints one line per file written. Exit status: 0 when every screenshot showed its content; 1
when one did not render in ``--timeout`` seconds (it is saved as it was and named on stderr) or
TensorBoard did not start; 2 for a bad argument (an ``--output`` that is a file or cannot be
created, a ``--port`` outside 1024-65535 or already in use) or a missing browser or library;
130 when interrupted. TensorBoard is stopped in every case (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CHROMIUM = "/usr/bin/chromium"

#: The selector of the runs regex field in the sidebar of SCALARS, TEXT and IMAGES.
RUNS_REGEX = "tf-runs-selector paper-input#names-regex input"
RUN_CHECKBOXES = "tf-runs-selector tf-multi-checkbox paper-checkbox"
TAG_FILTER = "tf-tag-filterer paper-input input"


class ScreenshotError(Exception):
    """A one-line error for the user; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Plan:
    """What to select in each dashboard, read from TensorBoard's HTTP API before the browser."""

    runs: list[str]
    enabled: set[str]
    #: plugin -> run -> tags with data of that plugin.
    tags: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    search_run: str | None = None
    best_runs: list[str] = field(default_factory=list)

    def runs_with(self, plugin: str) -> list[str]:
        return [run for run in self.runs if self.tags.get(plugin, {}).get(run)]

    def selection(self, plugin: str) -> list[str]:
        """The runs to tick in ``plugin``'s dashboard (only runs with data there)."""
        having = self.runs_with(plugin)
        search = [self.search_run] if self.search_run in having else []
        best = [run for run in self.best_runs if run in having]
        chosen = search + best if plugin == "scalars" else (search or best)
        return chosen or having[:3]


# --- TensorBoard ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate TensorBoard's process group (it runs in its own session), then kill it."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def tensorboard(logdir: Path, port: int, start_timeout_s: float) -> Iterator[str]:
    """Run ``tensorboard --logdir LOGDIR --host 127.0.0.1 --port PORT``; yield its base URL.

    The event files are read once, before the server answers (``--reload_task blocking``,
    ``--reload_interval 0``), so the first page already has every run. The server runs in its
    own session, so a Ctrl-C in the terminal reaches this script, which then stops it.

    Raises:
        ScreenshotError: the server exited or did not answer within ``start_timeout_s``.
    """
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
               "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
               "--reload_task", "blocking", "--reload_interval", "0"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
                    raise ScreenshotError(
                        f"tensorboard exited with status {proc.returncode} before answering on "
                        f"port {port}: {tail[0] if tail else 'no output'}", status=1)
                try:
                    _get_json(url + "/data/runs")
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise ScreenshotError(
                            f"tensorboard did not answer on {url} within {start_timeout_s:.0f}s "
                            "(--start-timeout)", status=1) from None
                    time.sleep(0.25)
            yield url
        finally:
            _stop(proc)


def read_plan(url: str, run_dir: Path) -> Plan:
    """The runs, the enabled dashboards and their tags per run, the search run, the best trial."""
    runs = _get_json(url + "/data/runs")
    listing = _get_json(url + "/data/plugins_listing")
    enabled = {name for name, entry in listing.items() if entry.get("enabled")}
    plan = Plan(runs=runs, enabled=enabled)
    for plugin in ("scalars", "text", "images"):
        if plugin in enabled:
            by_run = _get_json(f"{url}/data/plugin/{plugin}/tags")
            plan.tags[plugin] = {run: set(tags) for run, tags in by_run.items()}
    plan.search_run = next((run for run in ("search", ".") if run in runs), None)
    best = run_dir / "best_hyperparameters.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        trial = str(json.loads(best.read_text(encoding="utf-8"))["trial_id"])
        plan.best_runs = [run for run in (trial, f"{trial}/train", f"{trial}/validation")
                          if run in runs]
    return plan


# --- the browser ------------------------------------------------------------------------------


def runs_regex(names: list[str]) -> str:
    """A regex (JavaScript syntax) matching exactly ``names``."""
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


class Browser:
    """One Chromium; each dashboard opens in a fresh context (no state carried between them)."""

    def __init__(self, playwright: Any, chromium: str, url: str, width: int, height: int,
                 timeout_s: float) -> None:
        from playwright.sync_api import Error as PlaywrightError

        self.url, self.width, self.height = url, width, height
        self.timeout_ms = timeout_s * 1000
        try:
            self.browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ScreenshotError(f"could not start {chromium}: {first}") from None
        self.failures: list[str] = []

    def guard(self, plugin: str, shoot: Callable[[], list[tuple[Path, str]]]
              ) -> list[tuple[Path, str]]:
        """Run ``shoot``; a click or check that fails is noted and the next dashboard runs."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            return shoot()
        except (PlaywrightError, AssertionError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.failures.append(f"{plugin.upper()}: {first}")
            return []

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.browser.close()

    @contextlib.contextmanager
    def dashboard(self, plugin: str) -> Iterator[Any]:
        context = self.browser.new_context(viewport={"width": self.width,
                                                     "height": self.height})
        context.set_default_timeout(self.timeout_ms)
        try:
            page = context.new_page()
            page.goto(f"{self.url}/#{plugin}")
            yield page
        finally:
            context.close()

    def wait(self, page: Any, name: str, what: str, ready: Callable[[], Any]) -> bool:
        """Run ``ready`` (a Playwright wait); on a timeout note ``name`` as not rendered."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            ready()
        except PlaywrightTimeout:
            self.failures.append(f"{name}: {what} did not appear within "
                                 f"{self.timeout_ms / 1000:.0f}s")
            return False
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_load_state("networkidle")
        # Two animation frames: what the last response changed is painted.
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                      "requestAnimationFrame(r)))")
        return True

    def snap(self, page: Any, target: Path) -> None:
        """Save the window as ``target`` once clicks have settled (no focus, ripple or hover)."""
        from playwright.sync_api import expect

        page.mouse.move(0, 0)
        page.evaluate("""() => {
            let e = document.activeElement;
            while (e && e.shadowRoot && e.shadowRoot.activeElement) e = e.shadowRoot.activeElement;
            if (e && e.blur) e.blur();
        }""")
        expect(page.locator("paper-ripple[animating]")).to_have_count(0)
        page.screenshot(path=str(target), animations="disabled")

    def poll(self, locator: Any, predicate: str) -> Callable[[], None]:
        """A wait until ``predicate`` (JavaScript, over all elements ``locator`` matches) holds."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        def ready() -> None:
            deadline = time.monotonic() + self.timeout_ms / 1000
            while not locator.evaluate_all(predicate):
                if time.monotonic() > deadline:
                    raise PlaywrightTimeout(f"{predicate} never held")
                locator.page.wait_for_timeout(200)

        return ready


def select_runs(page: Any, names: list[str]) -> None:
    """Type a regex matching ``names`` in the runs field, then tick each that is not ticked."""
    from playwright.sync_api import expect

    page.locator(RUNS_REGEX).fill(runs_regex(names))
    expect(page.locator(RUN_CHECKBOXES)).to_have_count(len(names))
    page.wait_for_load_state("networkidle")
    for name in names:
        box = page.locator(f'{RUN_CHECKBOXES}[id="checkbox-{name}"]')
        if box.get_attribute("aria-checked") != "true":
            box.click()
        expect(box).to_have_attribute("aria-checked", "true")


def shoot_hparams(browser: Browser, out: Path) -> list[tuple[Path, str]]:
    written = []
    rows = "tf-hparams-table-view paper-checkbox.table-cell"
    with browser.dashboard("hparams") as page:
        target = out / "hparams_table.png"
        browser.wait(page, target.name, "a row of the table",
                     lambda: page.locator(rows).filter(visible=True).first.wait_for())
        browser.snap(page, target)
        written.append((target, "HPARAMS as opened: the table view"))

        target = out / "hparams_parallel.png"
        page.locator("tf-hparams-sessions-pane paper-tab").filter(
            has_text=re.compile("parallel coordinates", re.IGNORECASE)).click()
        lines = page.locator("tf-hparams-parallel-coords-plot g.foreground path")
        browser.wait(page, target.name, "a line of the plot", browser.poll(
            lines, "els => els.some(e => (e.getAttribute('d') || '').length > 1)"))
        browser.snap(page, target)
        written.append((target, "after clicking PARALLEL COORDINATES VIEW"))

        target = out / "hparams_metrics.png"
        page.locator("tf-hparams-sessions-pane paper-tab").filter(
            has_text=re.compile("table view", re.IGNORECASE)).click()
        page.locator(rows).filter(visible=True).first.click()
        curves = page.locator("tf-hparams-table-view vz-line-chart2 path.line")
        browser.wait(page, target.name, "a metric chart", browser.poll(
            curves, "els => els.some(e => (e.getAttribute('d') || '').length > 1)"))
        browser.snap(page, target)
        written.append((target, "the table view with Show Metrics ticked on the first row"))

        # The sidebar scrolls: a window tall enough to show all of it, cut to its width.
        target = out / "hparams_sidebar.png"
        sidebar = page.locator("tf-hparams-query-pane")
        box = sidebar.bounding_box()
        if box:
            page.set_viewport_size({"width": browser.width,
                                    "height": min(int(box["y"] + box["height"]) + 16, 16000)})
            page.wait_for_load_state("networkidle")
            box = sidebar.bounding_box() or box
            page.screenshot(path=str(target), animations="disabled",
                            clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                  "height": min(box["height"], 16000 - box["y"])})
            written.append((target, "the whole sidebar: which hyperparameters, metrics and "
                                    "statuses are ticked"))
    return written


#: Per dashboard: what to wait for once runs are ticked (a locator and a JavaScript predicate).
CONTENT = {
    "scalars": ("tf-scalar-card vz-line-chart2 path.line",
                "els => els.some(e => (e.getAttribute('d') || '').length > 1)", "a drawn line"),
    "text": ("tf-text-loader tf-markdown-view p, tf-text-loader tf-markdown-view table",
             "els => els.length > 0", "rendered markdown"),
    "images": ("tf-image-loader img",
               "els => els.some(e => e.complete && e.naturalWidth > 0)", "a loaded image"),
}


def shoot_dashboard(browser: Browser, plan: Plan, plugin: str, out: Path
                    ) -> list[tuple[Path, str]]:
    """``<plugin>_as_opened.png``, ``<plugin>.png`` and, for SCALARS and TEXT, a tag filter."""
    written = []
    selector, predicate, what = CONTENT[plugin]
    names = plan.selection(plugin)
    with browser.dashboard(plugin) as page:
        target = out / f"{plugin}_as_opened.png"
        browser.wait(page, target.name, "the runs list and the tag categories",
                     lambda: (page.locator(RUN_CHECKBOXES).first.wait_for(state="attached"),
                              page.locator("tf-category-paginated-view").first.wait_for(
                                  state="attached")))
        browser.snap(page, target)
        written.append((target, f"{plugin.upper()} as opened, before any click"))

        target = out / f"{plugin}.png"
        select_runs(page, names)
        browser.wait(page, target.name, what, browser.poll(page.locator(selector), predicate))
        browser.snap(page, target)
        written.append((target, f"after ticking runs {', '.join(names)}"))

        tag_regex = None
        if plugin == "scalars" and plan.search_run in names:
            prefixes = sorted({tag.split("/")[0] for tag in
                               plan.tags["scalars"][plan.search_run]})
            tag_regex = "^(" + "|".join(re.escape(p) for p in prefixes) + ")/"
            target = out / "scalars_search.png"
        elif plugin == "text" and any("leaderboard" in tag for run in names
                                      for tag in plan.tags["text"].get(run, ())):
            tag_regex = "leaderboard"
            target = out / "text_leaderboard.png"
        if tag_regex:
            page.locator(TAG_FILTER).fill(tag_regex)
            # The tags matching the filter come first, in a category named by the filter.
            matching = page.locator("tf-category-paginated-view").first
            if browser.wait(page, target.name, f"a category of tags matching {tag_regex}",
                            browser.poll(matching, f"els => els.length > 0 && els[0].category "
                                                   f"&& els[0].category.name === "
                                                   f"{json.dumps(tag_regex)}")):
                browser.wait(page, target.name, f"{what} among them",
                             browser.poll(matching.locator(selector), predicate))
            browser.snap(page, target)
            written.append((target, f"with the tag filter {tag_regex}"))
    return written


# --- the command ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="screenshots.py",
        description="Start TensorBoard on a run and save screenshots of HPARAMS (table, "
                    "parallel coordinates), SCALARS, TEXT and IMAGES, taken in headless "
                    "Chromium.")
    parser.add_argument("run", type=Path, metavar="RUN",
                        help="a run directory (its event files are in RUN/tensorboard)")
    parser.add_argument("--output", type=Path, default=Path("screenshots"),
                        help="directory for the PNG files (default: ./screenshots)")
    parser.add_argument("--port", type=int, default=0,
                        help="TensorBoard's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--width", type=int, default=1600, help="window width in pixels")
    parser.add_argument("--height", type=int, default=1000, help="window height in pixels")
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM,
                        help=f"the Chromium executable (default: {DEFAULT_CHROMIUM})")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for each dashboard's content (default: 60)")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds to wait for TensorBoard to answer (default: 120)")
    args = parser.parse_args(argv)
    for name in ("width", "height"):
        if getattr(args, name) < 200:
            parser.error(f"--{name} {getattr(args, name)} is too small: use at least 200 pixels")
    return args


def check_output(output: Path) -> None:
    """:class:`ScreenshotError` when ``output`` cannot be the directory of the PNG files: an
    existing file, or a path below a file. Creates nothing (:func:`make_output` does)."""
    if output.exists() and not output.is_dir():
        raise ScreenshotError(f"--output {output} is an existing file, not a directory: pass "
                              "a directory (it is created when missing)")
    for parent in output.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ScreenshotError(f"--output {output} cannot be created: {parent} is a "
                                      "file; pass a directory path")
            break


def make_output(output: Path) -> None:
    """Create ``output`` (and its parents); :class:`ScreenshotError` when that fails."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScreenshotError(f"--output {output} cannot be created ({exc.strerror or exc}): "
                              "pass a directory you can write to") from None


def check_port(port: int) -> None:
    """:class:`ScreenshotError` when ``port`` (not 0: a free one is picked) is outside
    1024-65535 or cannot be bound on 127.0.0.1 (another server, such as another TensorBoard,
    listens there: its pages would be photographed instead)."""
    if port == 0:
        return
    if not 1024 <= port <= 65535:
        raise ScreenshotError(f"--port {port} is not a usable port: use 1024-65535, or leave "
                              "--port out for a free one")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TensorBoard binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ScreenshotError(f"--port {port} is in use on 127.0.0.1 "
                                  f"({exc.strerror or exc}; another TensorBoard?): pass a free "
                                  "port, or leave --port out for a free one") from None


def check_inputs(args: argparse.Namespace) -> Path:
    """RUN/tensorboard; :class:`ScreenshotError` when it is missing, ``--output`` or ``--port``
    is unusable, or Chromium or Playwright is missing."""
    logdir = args.run / "tensorboard"
    if not logdir.is_dir():
        what = "does not exist" if not args.run.exists() else "has no tensorboard/ directory"
        raise ScreenshotError(f"RUN {args.run} {what}: pass a run directory written by "
                              "`python -m kerastune_kit search --run-dir RUN`")
    check_output(args.output)
    check_port(args.port)
    if not (os.path.isfile(args.chromium) and os.access(args.chromium, os.X_OK)):
        raise ScreenshotError(f"no Chromium at {args.chromium}: apt-get install chromium "
                              "(or pass --chromium PATH)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ScreenshotError(f"Playwright is not installed: {sys.executable} -m pip install "
                              "playwright (it drives the system Chromium; no browser "
                              "download is needed)") from None
    return logdir


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        logdir = check_inputs(args)
        from playwright.sync_api import sync_playwright

        make_output(args.output)
        signal.signal(signal.SIGTERM, _interrupt)
        written: list[tuple[Path, str]] = []
        with tensorboard(logdir, args.port or _free_port(), args.start_timeout) as url:
            plan = read_plan(url, args.run)
            with sync_playwright() as playwright:
                browser = Browser(playwright, args.chromium, url, args.width, args.height,
                                  args.timeout)
                try:
                    if "hparams" in plan.enabled:
                        written += browser.guard("hparams", lambda: shoot_hparams(
                            browser, args.output))
                    for plugin in ("scalars", "text", "images"):
                        if plugin in plan.enabled and plan.runs_with(plugin):
                            written += browser.guard(plugin, lambda p=plugin: shoot_dashboard(
                                browser, plan, p, args.output))
                finally:
                    browser.close()
        skipped = [name.upper() for name in ("hparams", "scalars", "text", "images")
                   if name not in plan.enabled]
    except ScreenshotError as exc:
        print(f"screenshots: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("screenshots: interrupted; TensorBoard stopped", file=sys.stderr)
        return 130
    for path, what in written:
        print(f"{path}  {what}")
    for name in skipped:
        print(f"screenshots: {name}: TensorBoard does not offer this dashboard for this run "
              "(no data of its kind); skipped", file=sys.stderr)
    for failure in browser.failures:
        print(f"screenshots: not rendered: {failure} (saved as it was)", file=sys.stderr)
    return 1 if browser.failures else 0


if __name__ == "__main__":
    sys.exit(main())
