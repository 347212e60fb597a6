"""Leaderboards and best configurations as text: markdown for TensorBoard, tables for a terminal.

Owns: turning :class:`~kerastune_kit.results.TrialRecord` lists into a markdown leaderboard and
best-configuration panel (TensorBoard's text dashboard renders markdown tables), and an aligned
plain-text table for ``inspect`` cut to a width, its columns by priority (:func:`fit_table`;
:mod:`kerastune_kit.inspect_view` prints it). Epochs are numbered from 1 in all of them
(:func:`epoch_text`). Pure: imports no TensorFlow and prints nothing.

Example:
    >>> from kerastune_kit.report import text_table
    >>> print("\\n".join(text_table(results.trials[:5], results.hp_names)))
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Sequence
from typing import Any

from kerastune_kit.results import TrialRecord, is_ranked

SUMMARY_COLUMNS = ("rank", "trial", "outcome", "score", "best_epoch", "epochs", "parent",
                   "wall_s", "baseline", "training")
#: Columns ``text_table`` leaves out when no shown trial has a value in them (a search without
#: Hyperband promotions, popular designs, or a record of how trials trained).
OPTIONAL_COLUMNS = ("parent", "baseline", "training")
#: Columns :func:`fit_table` always shows, first, in this order; the hyperparameters follow.
CORE_COLUMNS = ("rank", "trial", "outcome", "score", "epochs", "best_epoch")
#: Spaces between the columns of a plain-text table.
COLUMN_GAP = 2


def short(value: Any) -> str:
    """A compact rendering of a value (floats to 4 significant digits, booleans lowercase)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def epoch_text(record: TrialRecord, max_epochs: int | None = None, *,
               best: bool = True) -> str:
    """The epochs a trial trained, numbered from 1 as Keras prints them: ``epochs 4-9 of 9,
    best 8`` (a promoted trial that trained its 4th to 9th epoch of 9, best at its 8th).

    This is the one way epochs are numbered wherever a person reads them (terminal,
    ``inspect``, TensorBoard's steps and text, ``leaderboard.csv``). Inside Python,
    :class:`~kerastune_kit.results.TrialRecord` keeps Keras's 0-based indices
    (``initial_epoch``, ``best_epoch``, like ``History.epoch``); ``epochs`` is a count.

    Args:
        record: The trial.
        max_epochs: The search's ``max_epochs`` (``of 9``); None leaves it out.
        best: Add ``, best K`` when the trial has a best epoch.

    Returns:
        ``""`` when the trial trained no epoch yet.
    """
    if record.epochs is None or record.epochs <= record.initial_epoch:
        return ""
    first, last = record.initial_epoch + 1, record.epochs
    text = f"epoch {last}" if first == last else f"epochs {first}-{last}"
    if max_epochs:
        text += f" of {max_epochs}"
    if best and record.best_epoch is not None:
        text += f", best {record.best_epoch + 1}"
    return text


def summary_rows(records: Sequence[TrialRecord], hp_names: Sequence[str]) -> list[list[str]]:
    """One list of cells per trial: the :data:`SUMMARY_COLUMNS`, then every hyperparameter.

    Epochs are numbered from 1: ``best_epoch`` ``8`` and ``epochs`` ``4-9`` (the first and last
    epoch trained, as ``leaderboard.csv`` has them)."""
    rows = []
    for record, rank in zip(records, rank_numbers(records), strict=True):
        cells = [rank, record.trial_id, record.outcome,
                 "" if record.score is None else f"{record.score:.4f}",
                 short(record.best_epoch_number), record.epoch_range(),
                 record.parent_trial_id or "",
                 "" if record.wall_time_s is None else f"{record.wall_time_s:.1f}",
                 record.baseline or "", record.training or ""]
        cells += [short(record.hyperparameters.get(name)) for name in hp_names]
        rows.append(cells)
    return rows


def rank_numbers(records: Sequence[TrialRecord]) -> list[str]:
    """The rank shown for each of ``records`` (already ranked, best first): ``1``..``N`` for
    the ranked trials, without gaps, and ``-`` for diverged, failed and running ones."""
    numbers, rank = [], 0
    for record in records:
        if is_ranked(record):
            rank += 1
            numbers.append(str(rank))
        else:
            numbers.append("-")
    return numbers


@dataclasses.dataclass
class Table:
    """A leaderboard table cut to a width: the columns shown and those left out.

    Attributes:
        header: The column names shown, in order.
        rows: One list of cells per trial, aligned with ``header``.
        hidden: The columns left out to fit the width (empty columns are not counted).
    """

    header: list[str]
    rows: list[list[str]]
    hidden: list[str] = dataclasses.field(default_factory=list)

    def widths(self) -> list[int]:
        """Each column's width in characters (its longest cell or name)."""
        return [max(len(row[i]) for row in [self.header, *self.rows])
                for i in range(len(self.header))]

    def width(self) -> int:
        """The widest line :meth:`lines` gives (columns :data:`COLUMN_GAP` apart)."""
        widths = self.widths()
        return sum(widths) + COLUMN_GAP * max(0, len(widths) - 1)

    def lines(self) -> list[str]:
        """Plain aligned text, header first, no trailing spaces."""
        widths = self.widths()
        return [(" " * COLUMN_GAP).join(cell.ljust(width) for cell, width in
                                        zip(row, widths, strict=True)).rstrip()
                for row in [self.header, *self.rows]]


def fit_table(records: Sequence[TrialRecord], hp_names: Sequence[str], *,
              width: int | None = None, priority: Sequence[str] = ()) -> Table:
    """The leaderboard of ``records`` as a :class:`Table`, cut to ``width`` characters.

    Columns come in priority order: :data:`CORE_COLUMNS` (always shown), then the
    hyperparameters (``priority`` first, the most important first, as
    :attr:`kerastune_kit.importance.Importance.values` orders them; then the rest in
    ``hp_names`` order), then ``parent``, ``wall_s``, ``baseline`` and ``training``. With a
    ``width``, columns are added in that order while the table fits; the first that does not
    fit and every later one go to :attr:`Table.hidden`. Hyperparameters no shown trial has,
    and :data:`OPTIONAL_COLUMNS` no shown trial has a value in, are left out (not hidden).

    Args:
        records: The trials to show, ranked (best first).
        hp_names: Every hyperparameter name, in leaderboard order.
        width: The widest line allowed, in characters; None: no limit (every column).
        priority: Hyperparameter names, most important first.
    """
    hp_names = [n for n in hp_names if any(n in r.hyperparameters for r in records)]
    ordered = [n for n in priority if n in hp_names]
    ordered += [n for n in hp_names if n not in ordered]
    full = [*SUMMARY_COLUMNS, *ordered]
    body = summary_rows(records, ordered)
    order = [full.index(name) for name in CORE_COLUMNS]
    order += list(range(len(SUMMARY_COLUMNS), len(full)))
    order += [full.index(name) for name in SUMMARY_COLUMNS if name not in CORE_COLUMNS]
    order = [i for i in order if full[i] not in OPTIONAL_COLUMNS or any(row[i] for row in body)]
    table = Table([full[i] for i in order], [[row[i] for i in order] for row in body])
    if width is None:
        return table
    keep = len(CORE_COLUMNS)
    while keep < len(order) and Table(table.header[: keep + 1],
                                      [row[: keep + 1] for row in table.rows]).width() <= width:
        keep += 1
    return Table(table.header[:keep], [row[:keep] for row in table.rows],
                 hidden=table.header[keep:])


def text_table(records: Sequence[TrialRecord], hp_names: Sequence[str], *,
               width: int | None = None, priority: Sequence[str] = ()) -> list[str]:
    """An aligned plain-text table, header first (:func:`fit_table`: the columns in priority
    order, cut to ``width`` characters when given)."""
    return fit_table(records, hp_names, width=width, priority=priority).lines()


#: The knob columns of the TensorBoard leaderboard (:func:`markdown_leaderboard`).
LEADERBOARD_KNOBS = 5


def markdown_leaderboard(records: Sequence[TrialRecord], hp_names: Sequence[str], *,
                         objective: str | None = None, top: int = 10,
                         importance: Any = None, knobs: int = LEADERBOARD_KNOBS,
                         run_dir: str | os.PathLike[str] | None = None) -> str:
    """The leaderboard's ``top`` rows as a compact markdown table, under a line of counts, for
    one TensorBoard TEXT card (about 100 characters wide).

    The last line names the command that shows every column, ``python -m kerastune_kit
    inspect RUN`` with ``run_dir`` quoted for a shell (:func:`shlex.quote`), so that it pastes
    (``RUN`` when ``run_dir`` is None).

    Columns: rank, trial, outcome, score, epochs (numbered from 1: ``4-9``) and the ``knobs``
    leading knobs (:func:`~kerastune_kit.importance.knob_order`: by ``importance``, an
    :class:`~kerastune_kit.importance.Importance` or ``{name: value}``, when known, else by the
    recipe's priority). Every column is in ``inspect``, ``leaderboard.csv`` and the DataFrame.
    """
    from kerastune_kit.importance import knob_order

    counts: dict[str, int] = {}
    for record in records:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    status = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    shown = list(records[:top])
    present = [n for n in hp_names if any(n in r.hyperparameters for r in shown)]
    names = knob_order(present, importance)[:knobs]
    lines = [f"**{len(records)} trials** ({status}); objective `{objective or 'score'}`"
             f"{'; top ' + str(top) if len(records) > top else ''}", ""]
    header = ["rank", "trial", "outcome", "score", "epochs", *names]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for record, rank in zip(shown, rank_numbers(shown), strict=True):
        cells = [rank, record.trial_id, record.outcome,
                 f"{record.score:.4f}" if is_ranked(record) else "",
                 epoch_text(record, best=False).partition(" ")[2],
                 *(short(record.hyperparameters.get(name)) for name in names)]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    ordered = "by importance" if importance else "by the recipe's priority"
    more = f" of {len(present)}" if len(present) > len(names) else ""
    where = "RUN" if run_dir is None else shlex.quote(str(run_dir))
    # (the command on a line of its own: one markdown paragraph, the raw lines kept short)
    lines += ["", f"knobs: the first {len(names)}{more} {ordered}; every column:",
              f"`python -m kerastune_kit inspect {where}`"]
    return "\n".join(lines)


def markdown_best(best: TrialRecord | None, *, objective: str | None = None) -> str:
    """The best trial's score and hyperparameters as markdown."""
    if best is None:
        return "_no trial has completed yet_"
    lines = [f"**best trial {best.trial_id}**: {objective or 'score'} = {best.score:.4f}"
             f"{_best_tail(best)}", "", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {name} | {short(value)} |" for name, value in best.hyperparameters.items()]
    return "\n".join(lines)


def best_lines(best: TrialRecord | None, *, objective: str | None = None) -> list[str]:
    """The best configuration as plain-text lines, for a terminal."""
    if best is None:
        return ["no trial has completed yet"]
    head = f"best trial {best.trial_id}: {objective or 'score'}={best.score:.4f}{_best_tail(best)}"
    pad = max((len(name) for name in best.hyperparameters), default=0)
    return [head, *(f"  {name:<{pad}} = {short(value)}"
                    for name, value in best.hyperparameters.items())]


def continued_text(record: TrialRecord) -> str:
    """``continued from trial 0012 after epoch 3`` for a promoted trial (epochs numbered from
    1: it trained from epoch 4), ``""`` for one trained from scratch."""
    if not record.parent_trial_id:
        return ""
    after = f" after epoch {record.initial_epoch}" if record.initial_epoch else ""
    return f"continued from trial {record.parent_trial_id}{after}"


def _best_tail(best: TrialRecord) -> str:
    """`` at epoch 8 (continued from trial 0012 after epoch 3)`` (epochs numbered from 1)."""
    tail = "" if best.best_epoch is None else f" at epoch {best.best_epoch_number}"
    if best.parent_trial_id:
        tail += f" ({continued_text(best)})"
    if best.baseline:
        tail += f" (the popular design {best.baseline})"
    return tail
