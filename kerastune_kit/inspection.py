"""Reading a search back from its TensorBoard event files alone, with TensorBoard's own readers.

Owns: :func:`results_from_events` (the trials of a run rebuilt from the HParams experiment
config, each session's start info and end status, and its scalars) and :func:`load_curves`
(learning curves per trial). TensorBoard's event readers are imported when these are called.
Does not own: the leaderboard files (``results``), reading a run directory (``runs``, which
falls back on this module for a run that holds only event files) or writing events
(``tensorboard``). Imports ``results`` and ``rundir`` only, never ``runs``.

Example:
    >>> from kerastune_kit.inspection import load_curves
    >>> curves = load_curves("runs/digits-hyperband", "epoch_accuracy")
    >>> curves["0000"]
    [(1, 0.61), (2, 0.83)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kerastune_kit.errors import RunDirError
from kerastune_kit.results import (
    BASELINE_HPARAM,
    OUTCOME_HPARAM,
    PARENT_HPARAM,
    RunResults,
    TrialRecord,
    TrialStatus,
    direction_of,
    rank,
)
from kerastune_kit.rundir import TENSORBOARD_DIR, RunDir

_OBJECTIVE = re.compile(r"^(\S+) \((max|min)\)")
#: HParams session status (``api_pb2.Status``) -> trial status.
_STATUS = {1: TrialStatus.COMPLETED, 2: TrialStatus.FAILED, 3: TrialStatus.RUNNING}


def tensorboard_dir(run_dir: str | Path) -> Path:
    """``RUN/tensorboard`` when it exists, else ``run_dir`` itself (a bare log directory);
    :attr:`RunDir.logdir <kerastune_kit.rundir.RunDir.logdir>`."""
    return RunDir(run_dir).logdir


class EventRun:
    """Every run (folder of event files) below one log directory, read once.

    Example:
        >>> events = EventRun("runs/x/tensorboard")
        >>> events.scalars("0000/validation", "epoch_accuracy")
        [(1, 0.61), (2, 0.83)]
    """

    def __init__(self, logdir: str | Path) -> None:
        from kerastune_kit._backend import tensorflow

        tensorflow()  # TensorBoard's readers load TensorFlow: start it with its C++ lines filtered
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.backend.event_processing import plugin_event_multiplexer as pem

        self.logdir = Path(logdir)
        guidance = {**ea.DEFAULT_SIZE_GUIDANCE, ea.TENSORS: 0}
        self._mux = pem.EventMultiplexer(size_guidance=guidance, purge_orphaned_data=False)
        self._mux.AddRunsFromDirectory(str(self.logdir))
        self._mux.Reload()

    def runs(self) -> list[str]:
        """Run names (paths relative to the log directory, ``.`` for the directory itself)."""
        return sorted(self._mux.Runs())

    def plugin_content(self, plugin: str) -> dict[str, dict[str, bytes]]:
        """``{run: {tag: plugin data}}`` for one plugin (``hparams``, ``scalars``, ``text``)."""
        return self._mux.PluginRunToTagToContent(plugin)

    def tags(self, run: str) -> list[str]:
        """Every tensor tag in ``run``."""
        try:
            return list(self._mux.GetAccumulator(run).Tags().get("tensors", []))
        except KeyError:
            return []

    def values(self, run: str, tag: str) -> list[tuple[int, Any]]:
        """``(step, value)`` of every event of ``tag`` in ``run`` (empty when absent)."""
        from tensorboard.util import tensor_util

        if tag not in self.tags(run):
            return []
        return [(event.step, tensor_util.make_ndarray(event.tensor_proto))
                for event in self._mux.Tensors(run, tag)]

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        """A scalar series as ``(step, value)`` pairs."""
        return [(step, float(value)) for step, value in self.values(run, tag)]

    def last_text(self, run: str, tag: str) -> str | None:
        """The last value of a text summary."""
        values = self.values(run, tag)
        if not values:
            return None
        raw = values[-1][1].reshape(-1)[0] if values[-1][1].size else b""
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def results_from_events(run_dir: str | Path) -> RunResults:
    """Rebuild a run's trials from its event files alone.

    Each HParams session becomes a :class:`~kerastune_kit.results.TrialRecord`: hyperparameters
    from its start info, status from its end info (none yet: ``RUNNING``), score, best epoch,
    epochs, wall time from the ``trial/*`` scalars, or from the objective's validation curve when
    those are missing (a session written by another tool). A plain ``model.fit`` run logged with
    :class:`~kerastune_kit.HParamsCallback` beside the trials is one more row.

    Raises:
        RunDirError: No HParams session was found below the run's log directory.
    """
    from tensorboard.plugins.hparams import metadata

    run_dir = Path(run_dir)
    events = EventRun(tensorboard_dir(run_dir))
    content = events.plugin_content(metadata.PLUGIN_NAME)
    experiments = sorted(run for run, tags in content.items() if metadata.EXPERIMENT_TAG in tags)
    if len(experiments) > 1:  # ranking trials of different searches together means nothing
        raise RunDirError(
            f"run_dir: '{run_dir}' holds the event files of {len(experiments)} searches "
            f"(HParams experiments in '{experiments[0]}', '{experiments[1]}', ...); pass one "
            f"search's --run-dir or its {TENSORBOARD_DIR}/ directory"
        )
    names, int_names, objective, direction = _experiment_info(content)
    sessions = sorted(run for run, tags in content.items()
                      if metadata.SESSION_START_INFO_TAG in tags)
    if objective is None:
        objective = RunDir(run_dir).saved_objective()
    if objective is None:  # sessions of HParamsCallback runs name theirs
        found = next(filter(None, (_OBJECTIVE.match(events.last_text(run, "trial/objective")
                                                    or "") for run in sessions)), None)
        objective, direction = (found.group(1), found.group(2)) if found else (None, None)
    direction = direction or direction_of(objective or "val_loss")
    records = []
    for run in sessions:
        tags = content[run]
        start = metadata.parse_session_start_info_plugin_data(
            tags[metadata.SESSION_START_INFO_TAG])
        status = TrialStatus.RUNNING
        if metadata.SESSION_END_INFO_TAG in tags:
            end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
            status = _STATUS.get(end.status, TrialStatus.RUNNING)
        records.append(_record(events, run, status, start.hparams, int_names,
                               objective or "val_loss", direction))
    if not records:
        raise RunDirError(
            f"run_dir: no HParams session found in the event files below "
            f"'{tensorboard_dir(run_dir)}'; pass the run directory of a kerastune_kit search "
            "that has run a trial (--run-dir, or a tuner's directory/project_name)"
        )
    for record in records:
        names += [name for name in record.hyperparameters if name not in names]
    used = [name for name in names if any(name in r.hyperparameters for r in records)]
    for record in records:
        record.hyperparameters = {name: record.hyperparameters[name] for name in used
                                  if name in record.hyperparameters}
    return RunResults(run_dir=run_dir, objective=objective, direction=direction,
                      trials=rank(records, direction), hp_names=used, source="tensorboard")


def _experiment_info(content: Mapping[str, Mapping[str, bytes]]
                     ) -> tuple[list[str], set[str], str | None, str | None]:
    """From the experiment config: hparam names, integer hparams, objective and direction."""
    from tensorboard.plugins.hparams import metadata

    for tags in content.values():
        if metadata.EXPERIMENT_TAG not in tags:
            continue
        experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
        names = [h.name for h in experiment.hparam_infos
                 if h.name not in (PARENT_HPARAM, BASELINE_HPARAM, OUTCOME_HPARAM)]
        int_names = {h.name for h in experiment.hparam_infos if h.description.startswith("int")}
        for info in experiment.metric_infos:
            found = _OBJECTIVE.match(info.description or "")
            if info.name.tag == "trial/score" and found:
                return names, int_names, found.group(1), found.group(2)
        return names, int_names, None, None
    return [], set(), None, None


def _record(events: EventRun, run: str, status: str, hparams: Mapping[str, Any],
            int_names: set[str], objective: str, direction: str) -> TrialRecord:
    values = {}
    for name, value in hparams.items():
        kind = value.WhichOneof("kind")
        plain = getattr(value, kind) if kind else None
        if name in int_names and isinstance(plain, float) and plain.is_integer():
            plain = int(plain)
        values[name] = plain
    parent = values.pop(PARENT_HPARAM, None)
    baseline = values.pop(BASELINE_HPARAM, None)
    # (the outcome tells a pruned trial from a completed one, both STATUS_SUCCESS)
    finer = {"pruned": TrialStatus.PRUNED, "diverged": TrialStatus.DIVERGED}
    outcome = values.pop(OUTCOME_HPARAM, None)
    if outcome in finer and status in (TrialStatus.COMPLETED, TrialStatus.FAILED):
        status = finer[outcome]
    record = TrialRecord(trial_id=run, status=status, parent_trial_id=parent or None,
                         hyperparameters=values, baseline=baseline or None)
    split = "validation" if objective.startswith("val_") else "train"
    curve = events.scalars(f"{run}/{split}", f"epoch_{objective.removeprefix('val_')}")
    finals = {tag: events.scalars(run, tag) for tag in
              ("trial/score", "trial/best_epoch", "trial/epochs", "trial/wall_time_s")}
    last = {tag: series[-1][1] for tag, series in finals.items() if series}
    epochs = last.get("trial/epochs")
    # Steps are epoch numbers from 1 (TrialWriter); the index from 0 in a curve that
    # keras.callbacks.TensorBoard wrote, or any written before kerastune_kit numbered them so.
    first = _first_step(events.scalars(f"{run}/train", "epoch_loss") or curve, epochs)
    if curve:
        record.initial_epoch = curve[0][0] - first
        record.epochs = curve[-1][0] + 1 - first
        finite = [(value, step) for step, value in curve if value == value]
        if finite and status == TrialStatus.COMPLETED:
            pick = max if direction == "max" else min
            record.score, step = pick(finite, key=lambda item: item[0])
            record.best_epoch = step - first
    if "trial/score" in last:
        record.score = last["trial/score"]
    if "trial/best_epoch" in last:  # numbered like the session's own steps (memory/*)
        own = events.scalars(run, "memory/rss_mb") or events.scalars(run, "memory/peak_rss_mb")
        record.best_epoch = int(last["trial/best_epoch"]) - _first_step(own, epochs, first)
    if "trial/epochs" in last:
        record.epochs = int(last["trial/epochs"])
    if "trial/wall_time_s" in last:
        record.wall_time_s = round(last["trial/wall_time_s"], 3)
    outcome = events.last_text(run, "trial/outcome")
    if outcome:
        lines = [line.strip() for line in outcome.split("  \n")[1:] if line.strip()]
        from kerastune_kit.diagnosis import is_diagnosis

        record.diagnosis = next((line for line in lines if is_diagnosis(line)), None)
        messages = [line for line in lines if not line.startswith("continued from trial")
                    and not is_diagnosis(line)]
        record.message = messages[-1] if messages else None
    return record


def _first_step(series: list[tuple[int, float]], epochs: float | None, default: int = 0) -> int:
    """The step at which a session logged Keras's epoch index 0: ``1`` when ``series`` (one
    point per epoch) ends at the trial's epoch count ``epochs`` (``trial/epochs``): the epoch
    numbers from 1 that :class:`~kerastune_kit.tensorboard.TrialWriter` logs; ``0`` when it
    ends one below (Keras's index, event files written before); ``default`` when either is
    missing."""
    if epochs is None or not series:
        return default
    return 1 if series[-1][0] >= int(epochs) else 0


def load_curves(run_dir: str | Path, tag: str = "epoch_loss", *,
                split: str = "validation") -> dict[str, list[tuple[int, float]]]:
    """Learning curves read from the event files: ``{trial_id: [(epoch, value), ...]}``, the
    epoch as logged: its number from 1 for kerastune_kit's trials and
    :class:`~kerastune_kit.HParamsCallback` runs (a promoted trial continues its parent's:
    ``[(4, ...), ..., (9, ...)]``), the 0-based index for ``keras.callbacks.TensorBoard``'s.

    Args:
        run_dir: The run directory (or a bare TensorBoard log directory).
        tag: The scalar tag (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``).
        split: ``validation`` or ``train`` (or ``""`` for the session's own scalars, such as
            ``memory/rss_mb``).

    Example:
        >>> for trial_id, points in load_curves(run, "epoch_accuracy").items():
        ...     plt.plot(*zip(*points), label=trial_id)
    """
    events = EventRun(tensorboard_dir(run_dir))
    curves = {}
    suffix = f"/{split}" if split else ""
    for run in events.runs():
        if split and not run.endswith(suffix):
            continue
        trial = run[: -len(suffix)] if suffix else run
        points = events.scalars(run, tag)
        if points and trial != ".":
            curves[trial] = points
    return dict(sorted(curves.items()))
