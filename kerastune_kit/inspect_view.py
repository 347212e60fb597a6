"""What ``inspect`` prints as a table: every line fitted to the terminal's width.

Owns: :func:`terminal_width` (``COLUMNS``, else the terminal's width, else
:data:`DEFAULT_WIDTH`), :func:`inspection_lines` (the run header, the leaderboard cut to the
width, the diagnoses, why each diverged, failed or pruned trial ended, the best configuration,
the test score and the importance bars, as plain lines) and :func:`print_inspection` (those
lines, with the leaderboard drawn by ``rich`` on a terminal and as plain text, no ANSI codes,
anywhere else). Does not own: the table's cells and
which columns come first (:func:`kerastune_kit.report.fit_table`), reading a run
(:mod:`kerastune_kit.runs`) or the ``csv``/``json`` formats (the CLI). Imports no TensorFlow;
``rich`` only on a terminal.

The leaderboard always shows rank, trial, outcome, score, epochs and best epoch, then the
hyperparameters, most important first (:mod:`kerastune_kit.importance`), as many as fit, then
parent, wall time, baseline and training; a line ``N more columns: --wide shows all`` says what
was left out. ``wide=True`` (``inspect --wide``) shows every column, wider than the terminal
when it must. Every other line is wrapped at spaces to the width.

Example:
    >>> from kerastune_kit import load_results
    >>> results = load_results("runs/digits-hyperband")
    >>> for line in inspection_lines(results, results.trials[:10], results.importance(),
    ...                              width=80):
    ...     print(line)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kerastune_kit.progress import fit_lines
from kerastune_kit.report import Table, best_lines, fit_table
from kerastune_kit.results import is_ranked
from kerastune_kit.rundir import LEADERBOARD, RunDir

#: The width used when neither ``COLUMNS`` nor a terminal says (a pipe, a file, a notebook).
DEFAULT_WIDTH = 100
#: The longest importance bar, in characters.
BAR_WIDTH = 30
#: The outcomes whose reason (the trial's ``message``) ``inspect`` lists below the table.
ENDED_EARLY = ("diverged", "failed", "pruned")
#: The most trials listed under "why trials ended early"; a line says how many more.
MAX_ENDED_EARLY = 10
#: ``rich`` styles of each outcome on a terminal.
OUTCOME_STYLES = {"completed": "green", "pruned": "yellow", "diverged": "red", "failed": "red",
                  "running": "cyan"}


def terminal_width(stream: Any = None, environ: Mapping[str, str] | None = None) -> int:
    """The width to fit ``inspect``'s lines to, in columns.

    ``COLUMNS`` when it is set to a positive integer (as ``shutil.get_terminal_size`` reads
    it), else the width of ``stream``'s terminal (standard output by default), else
    :data:`DEFAULT_WIDTH` (output into a pipe or a file).
    """
    environ = os.environ if environ is None else environ
    value = environ.get("COLUMNS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, ValueError, OSError):
        pass
    return DEFAULT_WIDTH


def leaderboard_table(results: Any, shown: Sequence[Any], importance: Any, *,
                      width: int, wide: bool = False) -> Table:
    """The leaderboard of ``shown`` cut to ``width`` (every column with ``wide``), the
    hyperparameters in the order of ``importance`` (:func:`kerastune_kit.report.fit_table`)."""
    priority = list(getattr(importance, "values", None) or ())
    return fit_table(shown, results.hp_names, width=None if wide else width, priority=priority)


def _header_lines(results: Any) -> list[str]:
    source = ("TensorBoard event files" if results.source == "tensorboard"
              else f"{LEADERBOARD} and trial records"
              if RunDir(results.run_dir).leaderboard.is_file() else "trial records")
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(results.counts().items()))
    return [f"run {results.run_dir} (read from {source}); objective "
            f"{results.objective or 'score'} ({results.direction})",
            f"{len(results)} trials: {counts}"]


def _notes(results: Any, shown: Sequence[Any], table: Table) -> list[str]:
    notes = []
    if len(shown) < len(results):
        notes.append(f"(top {len(shown)} of {len(results)}; --top 0 shows all)")
    if table.hidden:
        n = len(table.hidden)
        notes.append(f"{n} more column{'' if n == 1 else 's'}: --wide shows all")
    return notes


def _closing_lines(results: Any, shown: Sequence[Any], importance: Any,
                   width: int) -> list[str]:
    """Everything after the table: diagnoses, the best trial, the test score, importance."""
    from kerastune_kit.final import final_lines  # the held-out test score, --refit

    lines: list[str] = []
    diagnosed = [r for r in shown if getattr(r, "diagnosis", None)]
    if diagnosed:  # (kerastune_kit.diagnosis)
        lines += ["", "diagnoses, at each trial's best epoch:"]
        lines += [f"  trial {r.trial_id}: {r.diagnosis}" for r in diagnosed]
    lines += ended_early_lines(results)
    lines.append("")
    lines += best_lines(results.best, objective=results.objective or "score")
    lines += final_lines(results.test, results.refit)
    lines.append("")
    lines.append(f"hyperparameter importance ({importance.method}, {importance.n_trials} "
                 "configurations):" if importance else "hyperparameter importance:")
    pad = max((len(name) for name in getattr(importance, "values", None) or ()), default=0)
    # "  name  0.123  ####": the bar takes what the name and the number leave
    bars = importance.bars(width=max(5, min(BAR_WIDTH, width - pad - 11)))
    lines += [f"  {line}" for line in bars]
    return [part for line in lines for part in fit_lines(line, width)]


def ended_early_lines(results: Any, limit: int = MAX_ENDED_EARLY) -> list[str]:
    """Why each diverged, failed or pruned trial of ``results`` ended (its ``message``, last
    line), in trial order: a blank line, a heading and one line per trial, at most ``limit``
    of them, then how many more there are and where every message is. Empty when no trial
    ended early. The caller wraps the lines to the width."""
    ended = [r for r in results.trials
             if r.outcome in ENDED_EARLY and (r.message or "").strip()]
    if not ended:
        return []
    ended.sort(key=lambda r: r.trial_id)
    lines = ["", "why trials ended early:"]
    for record in ended[:limit]:
        message = [part for part in record.message.splitlines() if part.strip()][-1].strip()
        lines.append(f"  trial {record.trial_id} ({record.outcome}): {message}")
    if len(ended) > limit:
        lines.append(f"  ... and {len(ended) - limit} more (inspect --top 0 --format csv lists "
                     "every trial's message)")
    return lines


def _parts(results: Any, shown: Sequence[Any], importance: Any, width: int,
           wide: bool) -> tuple[list[str], Table, list[str]]:
    """(the lines before the table, the table, the lines after it), fitted to ``width``."""
    table = leaderboard_table(results, shown, importance, width=width, wide=wide)
    head = [part for line in _header_lines(results) for part in fit_lines(line, width)]
    tail = [*_notes(results, shown, table), *_closing_lines(results, shown, importance, width)]
    return [*head, ""], table, tail


def inspection_lines(results: Any, shown: Sequence[Any], importance: Any, *,
                     width: int = DEFAULT_WIDTH, wide: bool = False) -> list[str]:
    """Every line ``inspect`` prints as a table, as plain text within ``width`` columns (the
    table too, unless ``wide``).

    Args:
        results: The run (:class:`~kerastune_kit.results.RunResults`).
        shown: The trials to list, best first (``--top``).
        importance: The run's :class:`~kerastune_kit.importance.Importance`.
        width: The widest line, in columns.
        wide: Show every column of the table, however wide.
    """
    head, table, tail = _parts(results, shown, importance, width, wide)
    return [*head, *table.lines(), *tail]


def print_inspection(results: Any, shown: Sequence[Any], importance: Any, *,
                     wide: bool = False, stream: Any = None, width: int | None = None) -> None:
    """Print :func:`inspection_lines` to ``stream`` (standard output by default), fitted to
    ``width`` (default :func:`terminal_width`). On a terminal the table is drawn by ``rich``
    (bold header, outcomes in colour, ``NO_COLOR`` respected) with the same columns and
    widths; elsewhere every line is plain text, without ANSI codes."""
    stream = sys.stdout if stream is None else stream
    width = terminal_width(stream) if width is None else width
    head, table, tail = _parts(results, shown, importance, width, wide)
    for line in head:
        print(line, file=stream)
    if _isatty(stream):
        _print_rich_table(table, shown, stream, max(width, table.width()))
    else:
        for line in table.lines():
            print(line, file=stream)
    for line in tail:
        print(line, file=stream)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _print_rich_table(table: Table, shown: Sequence[Any], stream: Any, width: int) -> None:
    """``table`` drawn with ``rich``: the plain table's geometry (no box, columns two spaces
    apart), a bold header, each outcome in its colour and unranked trials dimmed."""
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    stream.flush()
    console = Console(file=stream, width=width, highlight=False, soft_wrap=False)
    widths = table.widths()
    drawn = RichTable(box=None, show_edge=False, pad_edge=False, padding=(0, 1),
                      header_style="bold", expand=False)
    for name, size in zip(table.header, widths, strict=True):
        drawn.add_column(name, no_wrap=True, min_width=size, max_width=size)
    outcome_at = table.header.index("outcome") if "outcome" in table.header else None
    for record, row in zip(shown, table.rows, strict=True):
        cells = [Text(cell) for cell in row]
        if outcome_at is not None and row[outcome_at] in OUTCOME_STYLES:
            cells[outcome_at].stylize(OUTCOME_STYLES[row[outcome_at]])
        drawn.add_row(*cells, style=None if is_ranked(record) else "dim")
    console.print(drawn)
