"""Leaderboards and best configurations as text: markdown for TensorBoard, tables for a terminal.

Owns: turning :class:`~kerastune_kit.results.TrialRecord` lists into a markdown leaderboard and
best-configuration panel (TensorBoard's text dashboard renders markdown tables), and an aligned
plain-text table for ``inspect``. Pure: imports no TensorFlow and prints nothing.

Example:
    >>> from kerastune_kit.report import text_table
    >>> print("\\n".join(text_table(results.trials[:5], results.hp_names)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kerastune_kit.results import TrialRecord, is_ranked

SUMMARY_COLUMNS = ("rank", "trial", "outcome", "score", "best_epoch", "epochs", "parent",
                   "wall_s", "baseline", "training")
#: Columns ``text_table`` leaves out when no shown trial has a value in them (a search without
#: Hyperband promotions, popular designs, or a record of how trials trained).
OPTIONAL_COLUMNS = ("parent", "baseline", "training")


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
    """One list of cells per trial: the :data:`SUMMARY_COLUMNS`, then every hyperparameter."""
    rows = []
    for record, rank in zip(records, rank_numbers(records), strict=True):
        epochs = "" if record.epochs is None else f"{record.initial_epoch}-{record.epochs}"
        cells = [rank, record.trial_id, record.outcome,
                 "" if record.score is None else f"{record.score:.4f}",
                 short(record.best_epoch), epochs, record.parent_trial_id or "",
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


def text_table(records: Sequence[TrialRecord], hp_names: Sequence[str]) -> list[str]:
    """An aligned plain-text table, header first (hyperparameters no shown trial has, and
    :data:`OPTIONAL_COLUMNS` no shown trial has a value in, are left out)."""
    hp_names = [n for n in hp_names if any(n in r.hyperparameters for r in records)]
    header = [*SUMMARY_COLUMNS, *hp_names]
    body = summary_rows(records, hp_names)
    keep = [i for i, name in enumerate(header)
            if name not in OPTIONAL_COLUMNS or any(row[i] for row in body)]
    rows = [[row[i] for i in keep] for row in [header, *body]]
    header = rows[0]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def markdown_leaderboard(records: Sequence[TrialRecord], hp_names: Sequence[str], *,
                         objective: str | None = None, top: int = 10) -> str:
    """The leaderboard's ``top`` rows as a markdown table, under a line of counts."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    status = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    shown = list(records[:top])
    hp_names = [n for n in hp_names if any(n in r.hyperparameters for r in shown)]
    lines = [f"**{len(records)} trials** ({status}); objective `{objective or 'score'}`"
             f"{'; top ' + str(top) if len(records) > top else ''}", ""]
    header = [*SUMMARY_COLUMNS, *hp_names]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for cells in summary_rows(shown, hp_names):
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def markdown_best(best: TrialRecord | None, *, objective: str | None = None) -> str:
    """The best trial's score and hyperparameters as markdown."""
    if best is None:
        return "_no trial has completed yet_"
    lines = [f"**best trial {best.trial_id}**: {objective or 'score'} = {best.score:.4f}"
             f" at epoch {short(best.best_epoch)}"
             f"{f' (continued from trial {best.parent_trial_id})' if best.parent_trial_id else ''}"
             f"{f' (the popular design {best.baseline})' if best.baseline else ''}",
             "", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {name} | {short(value)} |" for name, value in best.hyperparameters.items()]
    return "\n".join(lines)


def best_lines(best: TrialRecord | None, *, objective: str | None = None) -> list[str]:
    """The best configuration as plain-text lines, for a terminal."""
    if best is None:
        return ["no trial has completed yet"]
    head = (f"best trial {best.trial_id}: {objective or 'score'}={best.score:.4f} "
            f"at epoch {short(best.best_epoch)}")
    if best.parent_trial_id:
        head += f" (continued from trial {best.parent_trial_id})"
    if best.baseline:
        head += f" (the popular design {best.baseline})"
    pad = max((len(name) for name in best.hyperparameters), default=0)
    return [head, *(f"  {name:<{pad}} = {short(value)}"
                    for name, value in best.hyperparameters.items())]
