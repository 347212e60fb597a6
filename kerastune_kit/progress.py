"""What a search shows in a terminal: a header, one line per trial, a live progress display
and a closing summary, every line at most :data:`WIDTH` columns.

Owns: the per-epoch progress record the tuner sends (:class:`EpochProgress`), what a search
says before its first trial (:class:`SearchStart`, :func:`header_lines`), the trial and summary
lines (:func:`trial_line`, :func:`summary_lines`), the ETA (:class:`SearchProgress`) and
:class:`SearchTerminal`, which prints them: with ``rich``'s live display (trials n/N or time
used of the budget, elapsed, ETA, the running trial's epoch k/E and its objective, the best so
far) when standard output is a terminal, as plain lines (no escape sequences, no carriage
returns) otherwise. Epochs are numbered from 1, as Keras prints them
(:func:`kerastune_kit.report.epoch_text`).

Does not own: the numbers (``results``, ``report``), the full tables (``inspect`` has every
hyperparameter of every trial). Imports no TensorFlow; ``rich`` only when the live display
starts.

Example:
    >>> from kerastune_kit.progress import fit_lines
    >>> fit_lines("a " * 60, width=40)[0]
    'a a a a a a a a a a a a a a a a a a a a'
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: The widest line a search prints (the full detail is in ``inspect``).
WIDTH = 100
#: How the plain-text lines and the pointer to every hyperparameter name the CLI.
CLI = "python -m kerastune_kit"


class EpochProgress(NamedTuple):
    """Where a running trial is: sent at its start and after each of its epochs.

    Attributes:
        trial_id: KerasTuner's trial id (inside a ``--refine`` stage, the stage's own id).
        epoch: The last epoch the trial finished, numbered from 1 as Keras prints it; at the
            trial's start, the epoch it continues from (0, or a promoted Hyperband trial's
            parent's epochs).
        epochs: The epoch it trains to (``Epoch k/E``'s ``E``: Hyperband's ``tuner/epochs``,
            else the search's ``max_epochs``); None when unknown.
        value: The objective after ``epoch``; None at the start or when the logs lack it.
        objective: The objective's name (``val_accuracy``).
    """

    trial_id: str
    epoch: int
    epochs: int | None
    value: float | None
    objective: str = ""


@dataclass(frozen=True)
class SearchStart:
    """What a search is about to do, for its header (:func:`header_lines`).

    Attributes:
        data: The dataset's one-line summary (name, samples per split, features, task).
        model: The model family (``mlp``, ``cnn``) and how it was chosen.
        tuner: The tuner's name.
        objective: The objective's name; ``direction`` ``max`` or ``min``.
        trials: The trials the search plans (None: until the time budget is spent).
        max_epochs: Epochs of the longest trial.
        max_time: The wall-clock budget in seconds, or None.
        run_dir: The run directory.
        plan: Epochs each planned trial trains, in the order they run (the ETA's work).
        done: Trials finished before this call (a ``--resume``).
        refine: ``--refine`` stages after the first.
        preflight: Whether the preflight runs before the first trial.
        previous: The ranked trials finished before this call (a ``--resume``; refine
            stages' named ``stage-<k>/<id>``), so that the live "best" counts them.
        stage_epochs: With ``--refine``, each stage's ``max_epochs`` (stage 1's first).
    """

    data: str
    model: str
    tuner: str
    objective: str
    direction: str
    trials: int | None
    max_epochs: int
    max_time: float | None
    run_dir: str
    plan: tuple[int, ...] = ()
    done: int = 0
    refine: int = 0
    preflight: bool = False
    previous: tuple[Any, ...] = ()
    stage_epochs: tuple[int, ...] = ()

    def epochs_of(self, trial_id: str) -> int:
        """The ``max_epochs`` of the stage ``trial_id`` ran in (``stage-<k>/<id>``)."""
        from kerastune_kit.rundir import split_stage_trial_id

        stage = split_stage_trial_id(trial_id)[0] or 1
        if len(self.stage_epochs) >= stage:
            return self.stage_epochs[stage - 1]
        return self.max_epochs

    @property
    def tensorboard_command(self) -> str:
        """``tensorboard --logdir RUN/tensorboard``, quoted for a POSIX shell."""
        from kerastune_kit.rundir import RunDir

        return f"tensorboard --logdir {shlex.quote(str(RunDir(self.run_dir).tensorboard_dir))}"


def search_start(config: Any, dataset: Any, hypermodel: Any, objective: str) -> SearchStart:
    """The :class:`SearchStart` of ``config`` (``tuning.run_search`` builds it once the data
    and the factory are known, before the preflight and the first trial). With ``--refine N``
    the trials and the plan are the N+1 stages' together (each stage runs ``max_trials``)."""
    import dataclasses

    from kerastune_kit.plan import expected_trials, planned_epochs
    from kerastune_kit.preflight import preflight_runs
    from kerastune_kit.results import direction_of, in_stage, is_ranked

    time_only = bool(config.max_time) and config.max_trials is None
    knobs = len(hypermodel.space.hparam_domains()) if getattr(hypermodel, "space", None) else 0
    family = str(getattr(hypermodel, "family", config.model))
    how = (" (auto: image-shaped samples)" if family == "cnn" else
           " (auto: feature vectors)") if config.model == "auto" else ""
    model = f"{family}{how}" + (f", {knobs} hyperparameters" if knobs else "")
    stages = [config]  # each stage's search: its max_epochs, no popular designs after stage 1
    if config.refine:
        from kerastune_kit.plan import read_stages, stage_epochs

        stored = {int(s["stage"]): int(s["max_epochs"]) for s in (
            read_stages(config.effective_run_dir()) if config.resume else ())
            if str(s.get("max_epochs", "")).isdigit()}
        epochs = config.max_epochs
        for stage in range(2, config.refine + 2):
            epochs = stored.get(stage) or stage_epochs(epochs, config.refine_factor)
            stages.append(dataclasses.replace(config, max_epochs=epochs, refine=0,
                                              baselines=False))
    done, previous = 0, []
    if config.resume:
        from kerastune_kit.results import read_trial_records
        from kerastune_kit.rundir import RunDir

        run = RunDir(config.effective_run_dir())
        for stage in range(1, len(stages) + 1):
            tuner_dir = run.tuner_dir if stage == 1 else RunDir(run.stage_dir(stage)).tuner_dir
            records = read_trial_records(tuner_dir) if tuner_dir.is_dir() else []
            done += sum(r.outcome != "running" for r in records)
            previous += [in_stage(r, stage) for r in records if is_ranked(r)]
    return SearchStart(
        data=dataset.summary(), model=model, tuner=config.tuner, objective=objective,
        direction=direction_of(objective),
        trials=None if time_only else sum(expected_trials(c) for c in stages),
        max_epochs=config.max_epochs, max_time=config.max_time,
        run_dir=str(config.effective_run_dir()),
        plan=() if time_only else tuple(e for c in stages for e in planned_epochs(c)),
        done=done, refine=config.refine,
        preflight=preflight_runs(config), previous=tuple(previous),
        stage_epochs=tuple(c.max_epochs for c in stages) if config.refine else ())


# ---------------------------------------------------------------------- lines
def fit_lines(text: str, width: int = WIDTH) -> list[str]:
    """``text`` in lines of at most ``width`` columns, wrapped at spaces; continuation lines
    are indented two columns more than the first. A word longer than a line (a long path) is
    kept whole, so that it still pastes."""
    if len(text) <= width:
        return [text]
    lead = text[: len(text) - len(text.lstrip(" "))]
    return textwrap.wrap(text, width, initial_indent="", subsequent_indent=lead + "  ",
                         break_long_words=False, break_on_hyphens=False) or [text]


def clip(text: str, width: int = WIDTH) -> str:
    """``text`` cut to ``width`` columns, at a space when one is near (ending `` ...``),
    else inside a word (ending ``...``)."""
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    space = text[: width - 3].rfind(" ")
    if space > width // 2:
        return text[:space].rstrip(" ,;") + " ..."
    return cut + "..."


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def knob_text(values: dict[str, Any], *, architecture: bool = True) -> str:
    """The few hyperparameters that matter most, compactly: learning rate, optimizer, the
    widths of the hidden layers (MLP) or the filters of the blocks (CNN), normalization,
    batch size (``lr=0.0825 sgd units=31-64 norm=layer bs=256``). Every value is in
    ``inspect``; a configuration with none of these shows its first values ``name=value``.
    ``architecture=False`` leaves the widths and filters out (a popular design's name says
    them)."""
    parts = []
    if "learning_rate" in values:
        parts.append(f"lr={_number(values['learning_rate'])}")
    if "optimizer" in values:
        parts.append(str(values["optimizer"]))
    if not architecture:
        pass
    elif values.get("width_profile"):
        parts.append(f"units={values.get('base_units', '?')} {values['width_profile']}"
                     f" x{values.get('num_layers', '?')}")
    elif "num_layers" in values:
        widths = [str(values[f"units_{i}"]) for i in range(int(values["num_layers"]))
                  if f"units_{i}" in values]
        parts.append(f"units={'-'.join(widths)}" if widths else f"layers={values['num_layers']}")
    if "num_blocks" in values and architecture:
        filters = [str(values[f"filters_{i}"]) for i in range(int(values["num_blocks"]))
                   if f"filters_{i}" in values]
        parts.append(f"filters={'-'.join(filters)}" if filters
                     else f"blocks={values['num_blocks']}")
    norm = values.get("normalization")
    if norm not in (None, "none"):
        parts.append(f"norm={norm}")
    if values.get("residual") is True:
        parts.append("residual")
    if "batch_size" in values:
        parts.append(f"bs={values['batch_size']}")
    if not parts:
        parts = [f"{name}={_number(value)}" for name, value in list(values.items())[:6]
                 if not str(name).startswith("tuner/")]
    return " ".join(parts)


def trial_line(record: Any, max_epochs: int | None = None, *, width: int = WIDTH) -> str:
    """One finished trial in at most ``width`` columns: id, outcome, score (``-`` when it has
    none that ranks), its epochs numbered from 1, the trial it continued, seconds, the popular
    design it ran, why it did not complete, and its main knobs (:func:`knob_text`).

    Example::

        trial 0014 completed 0.9935  epochs 4-9 of 9, best 7  from 0012  0.8s  lr=0.0825 sgd ...
    """
    from kerastune_kit.report import epoch_text
    from kerastune_kit.results import is_ranked

    outcome = record.outcome
    score = f"{record.score:.4f}" if is_ranked(record) else "-"
    parts = [f"trial {record.trial_id} {outcome:<9} {score}"]
    epochs = epoch_text(record, max_epochs)
    if epochs:
        parts.append(epochs)
    if record.parent_trial_id:
        parts.append(f"from {record.parent_trial_id}")
    parts.append(f"{record.wall_time_s or 0:.1f}s")
    if outcome != "completed" and record.message:
        parts.append(f"[{clip(_last_line(record.message), 44)}]")
    if record.baseline:
        parts.append(f"{record.baseline}: {knob_text(record.hyperparameters, architecture=False)}")
    else:
        parts.append(knob_text(record.hyperparameters))
    return clip("  ".join(p for p in parts if p), width)


def _last_line(message: str) -> str:
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(message)


def header_lines(start: SearchStart) -> list[str]:
    """The header printed before the first trial (and the preflight): the data, the model,
    the tuner and its budget, the run directory and the TensorBoard command to watch it."""
    from kerastune_kit.plan import _duration

    epochs = f"{start.max_epochs} epoch{'s' if start.max_epochs != 1 else ''}"
    if start.trials is None:
        budget = f"trials of at most {epochs} until {_duration(start.max_time)} is spent"
    else:
        budget = f"up to {start.trials} trials of at most {epochs}"
        if start.max_time:
            budget += f", or until {_duration(start.max_time)} is spent"
    if start.done:
        budget += f"; {start.done} done before this --resume"
    if start.refine:
        budget += f"; then {start.refine} refine stage{'s' if start.refine != 1 else ''}"
    goal = "maximizing" if start.direction == "max" else "minimizing"
    lines = [f"data     {start.data}",
             f"model    {start.model}",
             f"tuner    {start.tuner}, {goal} {start.objective}, {budget}",
             f"run dir  {start.run_dir}"]
    # (a command is never wrapped: it must paste as one line)
    return [out for line in lines for out in fit_lines(line)] + [
        f"watch    {start.tensorboard_command}"]


def summary_lines(result: Any, *, elapsed_s: float, first_trial_s: float | None = None,
                  max_epochs: int | None = None, workers: int = 0,
                  details: Sequence[str] = ()) -> list[str]:
    """The lines that close a search: how it ended and in how long (counted from the
    command's start, TensorFlow's start-up and the preflight included), the best trial in
    short with the command that shows all of it, the test score and the refit, the results
    files and the TensorBoard command; each at most :data:`WIDTH` columns, except that a line
    holding a command is never wrapped (it must paste whole: a long run directory makes it
    longer). ``details`` go after the best trial: the ``--refine`` stages' line
    (:func:`kerastune_kit.refine.summary_line`), the test score and the refit
    (:func:`kerastune_kit.final.final_lines`)."""
    from kerastune_kit.report import epoch_text
    from kerastune_kit.rundir import (
        BEST_HYPERPARAMETERS,
        BEST_MODEL,
        LEADERBOARD,
        SEARCH_RUN_URL,
        RunDir,
    )

    lines: list[str] = []
    counts: dict[str, int] = {}
    for record in result.trials:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    ended = f"search stopped ({result.stopped})" if result.stopped else "search finished"
    before = (f" (first trial at {first_trial_s:.1f}s)" if first_trial_s is not None else "")
    finished = [r for r in result.trials if r.outcome != "running"]
    if finished:
        lines.append(f"{ended} in {elapsed_s:.1f}s{before}: {len(result.trials)} trials "
                     f"({status})")
    else:
        lines.append(f"{ended} in {elapsed_s:.1f}s, before any trial finished")
    if getattr(result, "exhausted", None):
        promoted = " (Hyperband still trained the best to --max-epochs)" if any(
            r.parent_trial_id for r in result.trials) else ""
        lines.append(f"the search space ran out: all {result.exhausted} distinct "
                     f"configurations were tried{promoted}; widen it with --set for more")
    lines = [out for line in lines for out in fit_lines(line)]
    run_dir = shlex.quote(str(result.run_dir))
    if result.stopped:
        more = f" --workers {workers}" if workers else ""
        lines.append(f"continue it with: {CLI} search --run-dir {run_dir} --resume{more}")
    if result.best is None:
        if finished:
            lines += fit_lines(f"no trial completed; see {RunDir(result.run_dir).leaderboard} "
                               "for the reasons")
        return lines
    best = result.best
    from kerastune_kit.rundir import split_stage_trial_id

    staged = split_stage_trial_id(best.trial_id)[0] not in (None, 1)
    head = [f"best trial {best.trial_id}  {result.objective} {best.score:.4f}",
            epoch_text(best, None if staged else max_epochs)]
    if best.parent_trial_id:
        head.append(f"from {best.parent_trial_id}")
    if best.baseline:
        head.append(f"the popular design {best.baseline}")
    lines.append(clip("  ".join(p for p in head if p)))
    lines.append(clip("  " + knob_text(best.hyperparameters)))
    lines.append(f"  all hyperparameters: {CLI} inspect {run_dir}")
    more = [*details]
    more.append(f"results: {result.run_dir}/{LEADERBOARD}, {BEST_HYPERPARAMETERS}, "
                f"{BEST_MODEL}")
    lines += [out for line in more for out in fit_lines(line)]
    tensorboard_dir = RunDir(result.run_dir).tensorboard_dir
    # (the run filter in the URL: with over 40 runs TensorBoard selects none by default)
    lines.append(f"leaderboard: {SEARCH_RUN_URL}, in:")
    lines.append(f"tensorboard --logdir {shlex.quote(str(tensorboard_dir))}")
    return lines


# ---------------------------------------------------------------------- the ETA
def _clock(seconds: float | None) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class SearchProgress:
    """A search's progress as its events arrive: trials done, the running trials, the best
    so far, and the ETA.

    The ETA divides work: the epochs each planned trial trains
    (:func:`kerastune_kit.plan.planned_epochs`).
    A finished trial counts its planned epochs even when it stopped sooner, so the seconds per
    epoch measured since the first trial started already include early stopping and pruning;
    the remaining work is the planned trials not started plus what the running ones have
    left. With a time budget the ETA is at most what is left of it.

    Args:
        started: ``time.time()`` of the command's start (elapsed counts from it).
        start: The search's header, once known (its plan, budget, direction).
        deadline: ``time.time()`` at which the time budget ends, or None.
    """

    started: float
    start: SearchStart | None = None
    deadline: float | None = None
    finished: int = 0
    running: dict[str, EpochProgress] = field(default_factory=dict)
    first_epoch: dict[str, int] = field(default_factory=dict)
    ranked: list[Any] = field(default_factory=list)
    first_trial_at: float | None = None
    work_done: float = 0.0
    objective: str = ""
    preflight_said: bool = False

    @property
    def best(self) -> tuple[float, str] | None:
        """(score, trial id) of the best trial so far, the trials finished before a
        ``--resume`` included, by the summary's rule (:func:`kerastune_kit.results.best_of`:
        equal scores, the later best epoch, then the lower id)."""
        from kerastune_kit.results import best_of

        start = self.start
        records = [*(start.previous if start is not None else ()), *list(self.ranked)]
        best = best_of(records, start.direction if start is not None else "max")
        return None if best is None else (float(best.score), best.trial_id)

    def epoch(self, event: EpochProgress, now: float | None = None) -> None:
        """A trial started (``event.value`` None, first event of its id) or finished an epoch."""
        now = time.time() if now is None else now
        if self.first_trial_at is None:
            self.first_trial_at = now
        self.first_epoch.setdefault(event.trial_id, event.epoch)
        self.running[event.trial_id] = event
        self.objective = event.objective or self.objective

    def trial(self, record: Any) -> None:
        """A trial ended (any outcome)."""
        from kerastune_kit.results import is_ranked
        from kerastune_kit.rundir import split_stage_trial_id

        # (a refine stage's events are named as its records, ``stage-<k>/<id>``)
        own = record.trial_id if record.trial_id in self.running else (
            split_stage_trial_id(record.trial_id)[1])
        event = self.running.pop(own, None)
        first = self.first_epoch.pop(own, None)
        self.finished += 1
        if event is not None and event.epochs is not None and first is not None:
            self.work_done += max(1, event.epochs - first)
        else:
            self.work_done += max(1, (record.epochs or 1) - record.initial_epoch)
        if is_ranked(record):
            self.ranked.append(record)

    def _running(self) -> dict[str, EpochProgress]:
        """A copy of the running trials (one step under the GIL: the live display's thread
        reads while the search's thread writes)."""
        return dict(self.running)

    def _running_work(self) -> tuple[float, float]:
        """(epochs the running trials trained, epochs they have left)."""
        trained = left = 0.0
        for trial_id, event in self._running().items():
            first = self.first_epoch.get(trial_id, event.epoch)
            trained += max(0, event.epoch - first)
            if event.epochs is not None:
                left += max(0, event.epochs - event.epoch)
        return trained, left

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the search ends (an estimate); None before there is a rate."""
        now = time.time() if now is None else now
        budget_left = None if self.deadline is None else max(0.0, self.deadline - now)
        plan = self.start.plan if self.start is not None else ()
        estimate = None
        trained, left = self._running_work()
        work = self.work_done + trained
        if plan and self.first_trial_at is not None and work > 0:
            begun = (self.start.done if self.start else 0) + self.finished + len(self._running())
            remaining = sum(plan[begun:]) + left
            estimate = (now - self.first_trial_at) / work * remaining
        if estimate is None:
            return budget_left
        return estimate if budget_left is None else min(estimate, budget_left)

    def lines(self, now: float | None = None) -> tuple[str, str | None]:
        """The live display's text: the search's line and the running trial's (None when no
        trial runs), without their bars."""
        now = time.time() if now is None else now
        elapsed = now - self.started
        start = self.start
        done = (start.done if start else 0) + self.finished
        running = self._running()
        if self.first_trial_at is None and not running:
            what = ("starting TensorFlow, loading the data" if start is None else
                    "preflight checks" if start.preflight and not self.preflight_said
                    else "starting the first trial")
            return f"{what}  {_clock(elapsed)}", None
        if start is not None and start.trials is None and start.max_time:
            used = (now - self.started)
            head = (f"time {_clock(used)} of {_clock(start.max_time)}, {done} "
                    f"trial{'' if done == 1 else 's'} done")
        elif start is not None and start.trials:
            head = f"trials {done}/{start.trials}  {_clock(elapsed)} elapsed"
        else:
            head = f"trials {done}  {_clock(elapsed)} elapsed"
        eta = self.eta(now)
        if start is not None and start.trials and done >= start.trials and not running:
            head += ", writing the results"
        elif self.deadline is not None and now >= self.deadline:
            head += ", the time budget is spent"
        elif eta is not None:
            head += f", ETA {_clock(eta)}"
        if self.best is not None:
            head += f"  best {self.best[0]:.4f} ({self.best[1]})"
        if not running:
            return head, None
        trial_id, event = max(running.items(), key=lambda item: item[0])
        # The epoch training now, numbered from 1 as Keras's "Epoch k/E": after epoch k ends
        # the next one starts (the last one stays: the trial is ending).
        training = event.epoch + 1
        if event.epochs:
            training = min(training, event.epochs)
        of = f"/{event.epochs}" if event.epochs else ""
        trial = f"trial {trial_id} epoch {training}{of}"
        if event.value is not None:
            trial += f"  {event.objective or self.objective} {event.value:.4f}"
        if len(running) > 1:
            trial += f"  (+{len(running) - 1} running)"
        return head, trial

    def fraction(self, now: float | None = None) -> float | None:
        """How much of the search is done, 0..1 (None when unknown)."""
        now = time.time() if now is None else now
        start = self.start
        if start is None:
            return None
        if start.trials is None and start.max_time:
            return min(1.0, (now - self.started) / start.max_time)
        if start.plan:
            trained, _ = self._running_work()
            total = sum(start.plan)
            done_before = sum(start.plan[: start.done])
            return min(1.0, (done_before + self.work_done + trained) / total) if total else None
        if start.trials:
            return min(1.0, (start.done + self.finished) / start.trials)
        return None


# ---------------------------------------------------------------------- the terminal
def live_display_wanted(stream: Any = None, environ: dict[str, str] | None = None) -> bool:
    """Whether to show the live display on ``stream`` (standard output by default): only on a
    terminal (``isatty``; ``FORCE_COLOR``, which makes ``rich`` treat a pipe as one, does
    not make a pipe a terminal here) that can move its cursor (not ``TERM=dumb`` or
    ``unknown``), outside Jupyter; ``TTY_COMPATIBLE=0`` (rich's switch) turns it off.
    ``NO_COLOR`` keeps the display, without colour."""
    stream = sys.stdout if stream is None else stream
    environ = dict(os.environ) if environ is None else environ
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
    if not tty or environ.get("TTY_COMPATIBLE") == "0":
        return False
    if environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return False
    return "ipykernel" not in sys.modules


class SearchTerminal:
    """Prints a search: the header, one line per trial, the summary and, on a terminal, a
    live progress display (``rich``) under them.

    Use as a context manager around the search: the live display runs inside it and is
    cleared when it ends (so the scrollback holds the header, the trial lines and the
    summary). Off a terminal every line is plain text written with ``write``.

    Args:
        write: Writes one plain line (the CLI's, which survives a closed pipe).
        started: ``time.time()`` of the command's start.
        deadline: ``time.time()`` at which the time budget ends, or None.
        live: Show the live display; None: :func:`live_display_wanted`.
        width: The widest line.
    """

    def __init__(self, *, write: Callable[[str], None] | None = None,
                 started: float | None = None, deadline: float | None = None,
                 live: bool | None = None, width: int = WIDTH) -> None:
        self._write = write or (lambda line: print(line, flush=True))
        self.width = width
        self.state = SearchProgress(started=time.time() if started is None else started,
                                    deadline=deadline)
        self.live = live_display_wanted() if live is None else live
        self._progress: Any = None
        self._console: Any = None
        self._tasks: tuple[Any, Any] | None = None

    # -- output
    def say(self, text: str, *, fit: bool = True) -> None:
        """Print ``text`` in lines of at most ``width`` columns (above the live display);
        ``fit=False`` prints it as it is (a line holding a command). A line holding a command
        is never broken by ``rich``: on a narrower terminal the terminal wraps it, so that it
        still copies as one line. The preflight's lines (``preflight ...``) tell the live
        display that the first trial comes next."""
        if text.startswith("preflight"):
            self.state.preflight_said = True
        for line in fit_lines(text, self.width) if fit else [text]:
            if self._console is not None:
                from rich.text import Text

                if holds_command(line):
                    self._console.print(Text(line), soft_wrap=True)
                else:
                    self._console.print(Text(line), soft_wrap=False, overflow="fold")
            else:
                self._write(line)

    def lines(self, lines: Sequence[str]) -> None:
        """Print lines already fitted (:func:`header_lines`, :func:`summary_lines`)."""
        for line in lines:
            self.say(line, fit=False)

    # -- the search's callbacks
    def begin(self, start: SearchStart) -> None:
        """``run_search``'s ``on_begin``: the header."""
        self.state.start = start
        self.state.objective = start.objective
        self.lines(header_lines(start))
        self._refresh()

    def trial(self, record: Any) -> None:
        """``run_search``'s ``on_trial``: the trial's line."""
        self.state.trial(record)
        from kerastune_kit.rundir import split_stage_trial_id

        start = self.state.start
        staged = split_stage_trial_id(record.trial_id)[0] not in (None, 1)
        if start is None or (staged and not start.stage_epochs):
            max_epochs = None
        else:
            max_epochs = start.epochs_of(record.trial_id)
        self._refresh()  # (printing a line redraws the display under it)
        self.say(trial_line(record, max_epochs, width=self.width))

    def epoch(self, event: EpochProgress) -> None:
        """``run_search``'s ``on_epoch``: moves the live display (prints nothing off a
        terminal)."""
        self.state.epoch(event)
        self._refresh()

    @property
    def first_trial_s(self) -> float | None:
        """Seconds from the command's start to the first trial's start."""
        at = self.state.first_trial_at
        return None if at is None else at - self.state.started

    # -- the live display
    def __enter__(self) -> SearchTerminal:
        if self.live:
            try:
                self._start_live()
            except Exception:  # noqa: BLE001 - no display is better than no search
                self._progress = self._console = None
                self.live = False
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """End the live display (it is cleared); later lines print as plain text."""
        progress, self._progress = self._progress, None
        if progress is not None:
            self._refresh_tasks(progress)
            progress.stop()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        console = Console(file=sys.stdout, highlight=False, emoji=False)
        if console.width > self.width:
            console.width = self.width
        state = self.state

        class _Text(TextColumn):
            """The task's line, computed from the search's state at each refresh."""

            def render(self, task: Any) -> Any:
                from rich.text import Text

                try:
                    search, trial = state.lines()
                except Exception:  # noqa: BLE001 - a display glitch must not end the display
                    search, trial = "", None
                text = search if task.fields.get("row") == "search" else (trial or "")
                return Text(text, no_wrap=True, overflow="ellipsis")

        progress = Progress(BarColumn(bar_width=20), _Text(""), console=console,
                            transient=True, refresh_per_second=4, redirect_stdout=True,
                            redirect_stderr=_isatty(sys.stderr), expand=False)
        search = progress.add_task("", total=1000, row="search")
        trial = progress.add_task("", total=1, row="trial", visible=False)
        self._tasks = (search, trial)
        self._console = console
        self._progress = progress
        progress.start()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._refresh_tasks(self._progress)

    def _refresh_tasks(self, progress: Any) -> None:
        if self._tasks is None:
            return
        search, trial = self._tasks
        fraction = self.state.fraction()
        if fraction is None:  # (a pulsing bar)
            progress.update(search, total=None)
        else:
            progress.update(search, total=1000, completed=1000 * fraction)
        running = self.state._running()
        if running:
            trial_id, event = max(running.items(), key=lambda item: item[0])
            total = max(1, event.epochs or 1)
            progress.update(trial, visible=True, total=total,
                            completed=min(total, max(0, event.epoch)))
        else:
            progress.update(trial, visible=False)


def holds_command(line: str) -> bool:
    """Whether ``line`` holds a command or an address to paste (``tensorboard --logdir
    RUN/tensorboard``, ``python -m kerastune_kit inspect RUN``, TensorBoard's URL): it must
    reach the terminal unbroken."""
    return "tensorboard --logdir " in line or f"{CLI} " in line or "://" in line


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class WrappingFormatter(logging.Formatter):
    """A ``logging`` formatter for the CLI's ``warning: …`` lines: wrapped at :data:`WIDTH`
    columns, continuation lines indented."""

    def __init__(self, prefix: str = "warning: ", width: int = WIDTH) -> None:
        super().__init__("%(message)s")
        self.prefix, self.width = prefix, width

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(fit_lines(self.prefix + super().format(record), self.width))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is at each message: above the live
    display while it runs (``rich`` redirects ``sys.stderr`` there), and to the stream a
    test captures."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
