"""TensorBoard logging: the HParams experiment, one session per trial, epoch scalars, summaries.

Owns: the HParams experiment config written once at ``RUN/tensorboard`` (domains from the
search space, the objective and metrics, trial-level metrics), :class:`TrialWriter`, which
writes a trial's hparams, its session status, its epoch scalars split into ``train/`` and
``validation/`` like Keras's TensorBoard callback (``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate``), memory readings and its trial-level results (``trial/score``,
``trial/best_epoch``, ...) and the training loop's gradient health (``gradients/*``,
``update_ratio/*`` in ``train/``); :class:`SearchSummaryWriter` (text panels with the
leaderboard, the best configuration and hyperparameter importance, in the run
``RUN/tensorboard/search``). Does not own: choosing trials, training, or the Keras callback for
plain ``model.fit`` runs (``callbacks.HParamsCallback``, which writes through
:class:`TrialWriter`).

Open the result with ``tensorboard --logdir RUN/tensorboard``.

What a writer controls in the HParams dashboard (TensorBoard 2.21's plugin, read from its
source):

- **Which hparams are ticked, and first.** The backend sorts the experiment's hparams by
  ``(not differs, name)`` (``backend_context._sort_and_reduce_to_hparams_limit``); the query
  pane moves ``differs`` ones to the top and ticks the first five
  (``tf-hparams-query-pane.ts``, ``kNumHParamsToDisplayByDefault``). ``differs`` is the one
  lever: the knobs that matter are declared with it (and the outcome), so they come first and
  are ticked; inside each of the two groups the order is alphabetical.
- **Metric order.** Kept as written; the first five are ticked
  (``kNumMetricsToDisplayByDefault``), and "show metrics" draws a chart of each ticked one.
- **Discrete domains** with fewer than 10 values get one checkbox each as a filter; colour-by
  in parallel coordinates takes only numeric columns (metrics, float hparams); parallel
  coordinates leave out a trial missing any ticked column or holding NaN there; the table
  shows a missing metric as an empty cell and NaN as ``NaN``.
- **Nothing is superseded.** The first summary metadata of a (run, tag) wins in both of
  TensorBoard's readers (``plugin_event_accumulator``, the Rust data server), so a second
  experiment config or session start is ignored: a trial's session start is written once,
  when its outcome is known, and the experiment config is rewritten in place (same file name)
  once importance is known, which a TensorBoard started after the search shows.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit import _memory
from kerastune_kit._backend import keras as _keras
from kerastune_kit.results import (
    BASELINE_HPARAM,
    OUTCOME_HPARAM,
    OUTCOMES,
    PARENT_HPARAM,
    TrialRecord,
    TrialStatus,
    best_of,
    is_ranked,
)
from kerastune_kit.rundir import SEARCH_RUN
from kerastune_kit.space import Domain, Fixed, FloatRange, IntRange

_keras()
import tensorflow as tf  # noqa: E402
from tensorboard.plugins.hparams import api as hp_api  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2  # noqa: E402
from tensorboard.plugins.hparams import metadata as hp_metadata  # noqa: E402
from tensorboard.plugins.hparams import summary as hp_summary_v1  # noqa: E402
from tensorboard.plugins.hparams import summary_v2 as hp_summary_v2  # noqa: E402

#: Trial status -> HParams session status (a pruned trial ends normally, with a score).
SESSION_STATUS = {
    TrialStatus.COMPLETED: api_pb2.STATUS_SUCCESS,
    TrialStatus.PRUNED: api_pb2.STATUS_SUCCESS,
    TrialStatus.STOPPED: api_pb2.STATUS_SUCCESS,
    TrialStatus.DIVERGED: api_pb2.STATUS_FAILURE,
    TrialStatus.FAILED: api_pb2.STATUS_FAILURE,
    TrialStatus.INVALID: api_pb2.STATUS_FAILURE,
    TrialStatus.RUNNING: api_pb2.STATUS_RUNNING,
}

#: Trial-level metrics, written once per trial in its session run (group ``""``), shown as
#: columns of the HParams dashboard: tag -> display name. ``trial/score`` is the first metric
#: column; the others follow the epoch metrics (one value per trial: a single dot under "show
#: metrics", so they start unticked).
TRIAL_METRICS = {
    "trial/score": "score",
    "trial/best_epoch": "best epoch",
    "trial/epochs": "epochs",
    "trial/wall_time_s": "wall time (s)",
    "trial/peak_memory_mb": "peak memory (MB)",
    "trial/outcome_code": "outcome code (" + ", ".join(
        f"{i} {outcome}" for i, outcome in enumerate(OUTCOMES)) + ")",
}
#: The first metric column of the HParams dashboard.
SCORE_TAG = "trial/score"
#: The outcome as a number (the index in :data:`~kerastune_kit.results.OUTCOMES`): colour-by in
#: parallel coordinates takes only numeric columns, so the outcome is also a metric.
OUTCOME_CODE_TAG = "trial/outcome_code"
#: How many hparams and how many metrics the HParams dashboard ticks when it opens
#: (``kNumHParamsToDisplayByDefault`` and ``kNumMetricsToDisplayByDefault`` in
#: ``tf-hparams-query-pane.ts``).
SHOWN_BY_DEFAULT = 5
#: The knobs ticked by default: the five less the :data:`OUTCOME_HPARAM` column.
KNOBS_SHOWN = SHOWN_BY_DEFAULT - 1
#: Epoch scalars that are settings, not results: a diverged trial keeps their last value.
_NOT_RESULTS = frozenset({"epoch_learning_rate", "epoch_lr"})


def epoch_step(epoch: int) -> int:
    """The TensorBoard step of Keras's 0-based epoch index ``epoch``: its number from 1
    (index 3 -> step 4), as Keras prints ``Epoch 4/9`` and ``leaderboard.csv`` numbers it."""
    return int(epoch) + 1


def hparam(name: str, domain: Domain) -> Any:
    """An HParams-plugin ``HParam`` for one knob's domain.

    The plugin stores every number as a float; the description says ``int`` for integer knobs
    so that readers (``inspect`` on event files) can restore the type.
    """
    if isinstance(domain, IntRange):
        return hp_api.HParam(name, hp_api.IntInterval(domain.min, domain.max),
                             description=f"int {domain.min}..{domain.max}"
                             f"{', log' if domain.log else ''}")
    if isinstance(domain, FloatRange):
        return hp_api.HParam(name, hp_api.RealInterval(float(domain.min), float(domain.max)),
                             description=f"float {domain.min:g}..{domain.max:g}"
                             f"{', log' if domain.log else ''}")
    raw = [domain.value] if isinstance(domain, Fixed) else list(domain.values)
    if raw and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        return hp_api.HParam(name, hp_api.Discrete([float(v) for v in raw], dtype=float),
                             description="int")
    values = [hparam_value(v) for v in raw]
    if all(isinstance(v, bool) for v in values):
        return hp_api.HParam(name, hp_api.Discrete(values, dtype=bool))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return hp_api.HParam(name, hp_api.Discrete([float(v) for v in values], dtype=float))
    return hp_api.HParam(name, hp_api.Discrete([str(v) for v in values], dtype=str))


def hparam_value(value: Any) -> bool | float | str:
    """A value the HParams plugin stores (bool, float or str)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def metric_tags(metric_names: Sequence[str], objective: str | None = None) -> list[Any]:
    """HParams metrics for each metric, the ``validation`` group first, then ``train``; in
    each, the objective's metric (``accuracy`` for ``val_accuracy``) leads."""
    lead = (objective or "").removeprefix("val_")
    names = sorted(metric_names, key=lambda name: name != lead)  # (stable: the rest as given)
    metrics = []
    for group, prefix in (("validation", "val_"), ("train", "")):
        for name in names:
            metrics.append(hp_api.Metric(f"epoch_{name}", group=group,
                                         display_name=f"{prefix}{name}"))
    return metrics


def trial_metric_tags(objective: str | None = None, direction: str | None = None) -> list[Any]:
    """HParams metrics for the trial-level results; ``trial/score``'s description names the
    objective and its direction (``val_accuracy (max): ...``), which readers parse back."""
    metrics = []
    for tag, display in TRIAL_METRICS.items():
        description = None
        if tag == SCORE_TAG and objective:
            description = (f"{objective} ({direction or 'max'}): the trial's best "
                           f"{objective}, the objective of the search; empty for a diverged, "
                           "failed or unfinished trial")
            display = f"score ({objective})"
        elif tag == OUTCOME_CODE_TAG:
            description = ("the outcome as a number, to colour parallel coordinates by "
                           "(the outcome column holds the words)")
        elif tag == "trial/best_epoch":
            description = ("the epoch of the trial's best score, numbered from 1 like the "
                           "curves' steps and Keras's 'Epoch 4/9'")
        metrics.append(hp_api.Metric(tag, group="", display_name=display,
                                     description=description))
    return metrics


def experiment_metrics(metric_names: Sequence[str], *, objective: str | None = None,
                       direction: str | None = None) -> list[Any]:
    """The experiment's metric columns in dashboard order: ``trial/score``, the validation
    curves, the training curves (the first five are ticked, and "show metrics" draws them),
    then the one-value-per-trial results (:data:`TRIAL_METRICS`)."""
    trial = trial_metric_tags(objective, direction)
    return [trial[0], *metric_tags(metric_names, objective), *trial[1:]]


def outcome_hparam() -> Any:
    """The :data:`OUTCOME_HPARAM` hparam: a discrete string, so the query pane filters it with
    one checkbox per outcome."""
    return hp_api.HParam(OUTCOME_HPARAM, hp_api.Discrete(list(OUTCOMES)), description=(
        "how the trial ended: completed, pruned (stopped early, keeps its best score so far), "
        "diverged or failed (no score), running (unfinished)"))


def experiment_summary(
    domains: Mapping[str, Domain], metric_names: Sequence[str], *,
    objective: str | None = None, direction: str | None = None, with_parent: bool = False,
    with_baseline: bool = False, shown: Sequence[str] | None = None,
) -> Any:
    """The HParams experiment config as a ``Summary`` proto (see :func:`write_experiment_config`).

    ``shown`` knobs (default: :func:`~kerastune_kit.importance.leading_knobs` by the recipe's
    priority) and :data:`OUTCOME_HPARAM` are declared with ``differs`` set: the dashboard lists
    them first and ticks them.
    """
    from kerastune_kit.importance import leading_knobs

    if shown is None:
        shown = leading_knobs(list(domains), KNOBS_SHOWN)
    hparams = [hparam(name, domain) for name, domain in domains.items()]
    hparams.append(outcome_hparam())
    if with_baseline:
        hparams.append(hp_api.HParam(BASELINE_HPARAM, description=(
            "the popular design this trial ran first, as a baseline (empty: the tuner's own "
            "trial)")))
    if with_parent:
        hparams.append(hp_api.HParam(PARENT_HPARAM, description=(
            "the Hyperband trial this one continued from (empty: trained from scratch)")))
    summary = hp_summary_v2.hparams_config_pb(
        hparams, experiment_metrics(metric_names, objective=objective, direction=direction))
    return _with_shown(summary, shown)


def _with_shown(summary: Any, shown: Sequence[str]) -> Any:
    """``summary`` (an experiment config) with ``differs`` set on exactly the ``shown`` hparams
    and :data:`OUTCOME_HPARAM`."""
    value = next(v for v in summary.value if v.tag == hp_metadata.EXPERIMENT_TAG)
    experiment = hp_metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    wanted = {*shown, OUTCOME_HPARAM}
    for info in experiment.hparam_infos:
        info.differs = info.name in wanted
    value.metadata.plugin_data.content = hp_metadata.create_summary_metadata(
        plugin_data_pb2.HParamsPluginData(experiment=experiment)).plugin_data.content
    return summary


def shown_hparams(root: str | Path) -> list[str] | None:
    """The hparams the experiment config at ``root`` declares ``differs`` (the ones the
    dashboard ticks), in the dashboard's order; None when ``root`` has no experiment config."""
    found = _experiment_event(Path(root))
    if found is None:
        return None
    _, _, summary = found
    value = next(v for v in summary.value if v.tag == hp_metadata.EXPERIMENT_TAG)
    experiment = hp_metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    return sorted(info.name for info in experiment.hparam_infos if info.differs)


def write_experiment_config(
    root: str | Path, domains: Mapping[str, Domain], metric_names: Sequence[str], *,
    objective: str | None = None, direction: str | None = None, with_parent: bool = False,
    with_baseline: bool = False, shown: Sequence[str] | None = None,
) -> None:
    """Write the HParams experiment config at ``root``.

    Hparams: the knobs, :data:`OUTCOME_HPARAM`, then ``baseline`` and ``parent_trial_id``
    when asked for; metrics in :func:`experiment_metrics`'s order.

    Args:
        root: The TensorBoard log directory of the search (``RUN/tensorboard``).
        domains: Each hyperparameter's domain.
        metric_names: The model's metrics (``loss``, ``accuracy``): each becomes a
            ``validation`` and a ``train`` metric column.
        objective: The search's objective; with ``direction``, described on ``trial/score``.
        direction: ``max`` or ``min``.
        with_parent: Declare the :data:`PARENT_HPARAM` hparam (Hyperband promotions).
        with_baseline: Declare the :data:`BASELINE_HPARAM` hparam (the popular designs a
            search starts with).
        shown: The knobs the dashboard lists first and ticks (:data:`KNOBS_SHOWN` of them);
            default: the recipe's priority (:func:`~kerastune_kit.importance.leading_knobs`).
            :func:`show_first` changes them once importance is known.
    """
    summary = experiment_summary(domains, metric_names, objective=objective,
                                 direction=direction, with_parent=with_parent,
                                 with_baseline=with_baseline, shown=shown)
    writer = tf.summary.create_file_writer(str(root))
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)
    writer.flush()
    writer.close()


def write_experiment_config_once(root: str | Path, domains: Mapping[str, Domain],
                                 metric_names: Sequence[str], **kwargs: Any) -> bool:
    """:func:`write_experiment_config`, unless ``root`` already holds event files (a resumed
    search, or a worker of one): the experiment is written once per run directory.

    Returns:
        Whether it was written now.
    """
    root = Path(root)
    if any(root.glob("events.out.tfevents.*")):
        return False
    root.mkdir(parents=True, exist_ok=True)
    write_experiment_config(root, domains, metric_names, **kwargs)
    return True


def _experiment_event(root: Path) -> tuple[Path, list[bytes], Any] | None:
    """The event file directly in ``root`` holding the experiment config: its path, its raw
    records and the config's ``Summary``; None when there is none."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2

    for path in sorted(root.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        for raw in records:
            event = event_pb2.Event.FromString(raw)
            if any(v.tag == hp_metadata.EXPERIMENT_TAG for v in event.summary.value):
                return path, records, event.summary
    return None


def show_first(root: str | Path, shown: Sequence[str]) -> bool:
    """Rewrite the experiment config at ``root`` so that ``shown`` (and the outcome) are the
    hparams the dashboard lists first and ticks, once importance is known.

    TensorBoard keeps the first config it read of a run, so the file is replaced in place
    under its own name (a temporary file renamed over it): a TensorBoard already running
    keeps the old order until it is restarted, and nothing is read twice.

    Returns:
        Whether the file was rewritten (False: no config at ``root``, as in a refine stage's
        log directory, or ``shown`` is already the ticked set).
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    root = Path(root)
    found = _experiment_event(root)
    if found is None:
        return False
    path, records, summary = found
    if shown_hparams(root) == sorted({*shown, OUTCOME_HPARAM}):
        return False
    new = _with_shown(summary, shown)
    # (a temporary name without "tfevents": TensorBoard would read it as an event file)
    fd, tmp = tempfile.mkstemp(prefix=".experiment-", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = RecordWriter(handle)
            for raw in records:
                event = event_pb2.Event.FromString(raw)
                if any(v.tag == hp_metadata.EXPERIMENT_TAG for v in event.summary.value):
                    event.summary.CopyFrom(new)
                    raw = event.SerializeToString()
                writer.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


class TrialWriter:
    """Writes one trial's HParams session and epoch scalars under ``root/<trial_id>``.

    Writers are created on first use. Keys starting with ``val_`` go to ``validation/`` with the
    prefix removed; every other key goes to ``train/``; each is logged as ``epoch_<key>``.
    Methods take Keras's 0-based epoch index (``on_epoch_end``'s ``epoch``) and log it at the
    epoch's number from 1 as step, as Keras prints ``Epoch 4/9`` (``keras.callbacks.TensorBoard``
    itself logs the index, from 0); a promoted trial continues its parent's step axis (parent
    steps 1-3, its own 4-9).

    Example:
        >>> writer = TrialWriter("runs/x/tensorboard", "0003")
        >>> writer.write_hparams({"learning_rate": 1e-3})
        >>> writer.write_epoch(0, {"loss": 0.7, "val_loss": 0.8})
        >>> writer.close(TrialStatus.COMPLETED)
    """

    def __init__(self, root: str | Path, trial_id: str, *,
                 run_dir: str | Path | None = None, session_name: str | None = None) -> None:
        self.trial_id = str(trial_id)
        #: The HParams session group (``stage-2/03`` for a refine stage's trial 03, so it
        #: does not merge with stage 1's trial 03); the trial id by default.
        self.session_name = session_name or self.trial_id
        self.run_dir = Path(run_dir) if run_dir is not None else Path(root) / self.trial_id
        self._writers: dict[str, Any] = {}
        #: The session start (hparams, start time) waiting for the outcome: see
        #: :meth:`write_hparams`.
        self._session: tuple[dict[str, Any], int] | None = None
        #: (sub-run, tag) -> the step of its last epoch scalar (for a diverged trial's NaN).
        self._last_steps: dict[tuple[str, str], int] = {}

    def _writer(self, sub: str) -> Any:
        if sub not in self._writers:
            path = self.run_dir / sub if sub else self.run_dir
            self._writers[sub] = tf.summary.create_file_writer(str(path))
        return self._writers[sub]

    def write_hparams(self, values: Mapping[str, Any], *, parent_trial_id: str | None = None,
                      with_parent: bool = False, with_baseline: bool = False) -> None:
        """Start the HParams session: the trial's active hyperparameter values.

        With ``with_parent``, the :data:`PARENT_HPARAM` hparam carries ``parent_trial_id``
        (empty for a trial trained from scratch). Starts a new memory peak. The session start
        reaches the event file when the trial ends (:meth:`close`), with its
        :data:`OUTCOME_HPARAM`: TensorBoard never updates a session start it has read, so one
        written now would say ``running`` for ever in a TensorBoard left open. A running trial
        shows in SCALARS meanwhile, and joins HParams when it ends.
        """
        clean = {k: hparam_value(v) for k, v in values.items()
                 if not k.startswith(("tuner/", "kit/"))}
        if with_baseline:
            clean[BASELINE_HPARAM] = str(values.get("kit/baseline") or "")
        if with_parent:
            clean[PARENT_HPARAM] = str(parent_trial_id or "")
        _memory.reset_peak()
        self._session = (clean, int(time.time()))

    def write_epoch(self, epoch: int, logs: Mapping[str, Any], *, memory: bool = True) -> None:
        """Log one epoch's metrics as ``epoch_<name>`` scalars, and memory readings
        (``memory/rss_mb``, ``memory/peak_rss_mb``, ``memory/gpu_peak_mb`` on GPU) in the
        session run, at step ``epoch + 1``.

        Args:
            epoch: Keras's 0-based epoch index (index 3 is logged at step 4, "Epoch 4/9").
            logs: The epoch's logs (``loss``, ``val_accuracy``, ``learning_rate``...).
            memory: Log the memory readings too.
        """
        step = epoch_step(epoch)
        for key, value in logs.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            sub, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._last_steps[(sub, f"epoch_{tag}")] = step
            with self._writer(sub).as_default():
                tf.summary.scalar(f"epoch_{tag}", number if math.isfinite(number) else math.nan,
                                  step=step)
        if memory:
            with self._writer("").as_default():
                for name, value in _memory.memory_mb().items():
                    tf.summary.scalar(f"memory/{name}", value, step=step)

    def write_scalar(self, tag: str, value: float, step: int, *, sub: str = "") -> None:
        """Log any scalar (for example ``trial/wall_time_s``) in the session run."""
        with self._writer(sub).as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """Log markdown text (TensorBoard's TEXT tab) in the session run."""
        with self._writer("").as_default():
            tf.summary.text(tag, text, step=int(step))

    def write_result(self, record: TrialRecord, *, objective: str | None = None,
                     direction: str | None = None) -> None:
        """Log the trial-level results and end the session with the trial's status.

        Writes :data:`TRIAL_METRICS` (``trial/best_epoch`` numbered from 1, like the steps;
        ``trial/epochs`` the count, which is also the last epoch's number), the
        ``trial/outcome`` text (the outcome, the parent trial and the epoch it continued
        after, how it trained: ``record.training``, its diagnosis, and its message) and, when
        given, the ``trial/objective`` text ``"val_accuracy (max)"``; all at the step of the
        trial's last epoch. ``trial/outcome_code`` carries the outcome as a number.

        A trial that competes for best (:func:`~kerastune_kit.results.is_ranked`) gets its
        ``trial/score``; a diverged or failed one gets none (an empty cell) and NaN at its last
        step for each epoch metric, so no HParams column (they show the last value) holds a
        number that looks like a result: the weights after a divergence score chance.
        """
        from kerastune_kit.report import continued_text

        step = int(record.epochs or 0)
        if objective:
            self.write_text("trial/objective", f"{objective} ({direction or 'max'})", step=step)
        ranked = is_ranked(record)
        values = {SCORE_TAG: record.score if ranked else None,
                  "trial/best_epoch": record.best_epoch_number,
                  "trial/epochs": record.epochs, "trial/wall_time_s": record.wall_time_s,
                  "trial/peak_memory_mb": _memory.memory_mb().get("peak_rss_mb")}
        if record.outcome in OUTCOMES:
            values[OUTCOME_CODE_TAG] = OUTCOMES.index(record.outcome)
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.write_scalar(tag, float(value), step=step)
        if not ranked and record.outcome != "running":
            for (sub, tag), last in self._last_steps.items():
                if tag not in _NOT_RESULTS:
                    self.write_scalar(tag, math.nan, last, sub=sub)
        lines = [f"**{record.outcome}**"]
        if record.parent_trial_id:  # (read back by `inspection`, which skips it)
            lines.append(continued_text(record))
        if record.training:
            lines.append("trained with " + ("kerastune_kit's compiled loop"
                                            if record.training == "loop" else "model.fit"))
        if record.diagnosis:  # (kerastune_kit.diagnosis; read back by `inspection`)
            lines.append(record.diagnosis)
        if record.message:
            lines.append(record.message)
        self.write_text("trial/outcome", "  \n".join(lines), step=step)
        self.close(record.status, outcome=record.outcome)

    def write_diagnostics(self, epoch: int, diagnostics: Mapping[str, Any]) -> None:
        """Log one epoch's gradient health in ``train/``: numbers as scalars, arrays as histograms.

        Tags are the keys of :class:`~kerastune_kit.training.TrainingHistory` diagnostics
        (``gradients/global_norm_mean``, ``update_ratio/<layer>``, ``weights/<variable>``);
        ``epoch`` is Keras's 0-based index, logged at step ``epoch + 1`` as in
        :meth:`write_epoch`.
        """
        step = epoch_step(epoch)
        with self._writer("train").as_default():
            for tag, value in diagnostics.items():
                if getattr(value, "ndim", 0):
                    tf.summary.histogram(tag, value, step=step)
                else:
                    tf.summary.scalar(tag, float(value), step=step)

    def close(self, status: str | None = None, *, outcome: str | None = None) -> None:
        """Write the session start (its :data:`OUTCOME_HPARAM`: ``outcome``, else the one
        ``status`` means, else ``running``), end the session with the trial's ``status`` when
        given, and flush every writer."""
        if self._session is not None:
            values, start = self._session
            self._session = None
            if outcome is None:
                outcome = "running" if status is None else TrialRecord("", status).outcome
            with self._writer("").as_default():
                hp_api.hparams({**values, OUTCOME_HPARAM: outcome}, trial_id=self.session_name,
                               start_time_secs=start)
        if status is not None:
            pb = hp_summary_v1.session_end_pb(
                SESSION_STATUS.get(status, api_pb2.STATUS_UNKNOWN)
            )
            with self._writer("").as_default():
                tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
        for writer in self._writers.values():
            writer.flush()
            writer.close()
        self._writers.clear()


class SearchSummaryWriter:
    """Text panels (and a chart) summarizing the whole search, in the run named ``search``
    (``RUN/tensorboard/search``: one run whatever the number of trials, so a run filter
    ``search`` selects it, :data:`~kerastune_kit.rundir.SEARCH_RUN_URL`).

    Tags: ``search/leaderboard`` and ``search/best_configuration`` (markdown, rewritten as trials
    finish; step = finished trials), ``search/importance`` (markdown),
    ``search/importance_chart`` and ``search/contour`` (images: importance, and the objective
    over the two most important knobs); before the first trial, ``search/preflight``
    (markdown); after the search, ``search/test_score`` and
    ``search/validation_score`` (scalars) and ``search/test_evaluation`` (markdown). Open
    TensorBoard's TEXT and IMAGES tabs, run ``search``.

    Example:
        >>> summary = SearchSummaryWriter("runs/x/tensorboard")
        >>> summary.write_leaderboard(records, ["learning_rate"], objective="val_accuracy",
        ...                           step=3)
        >>> summary.close()
    """

    def __init__(self, root: str | Path) -> None:
        #: The search's log directory (``RUN/tensorboard``).
        self.root = Path(root)
        #: Where the panels are written: ``root/search``.
        self.logdir = self.root / SEARCH_RUN
        self._writer: Any = None

    @property
    def run_dir(self) -> Path:
        """The whole run's directory, ``RUN`` of ``RUN/tensorboard`` (also for a refine stage's
        ``RUN/stages/<k>/tensorboard``), for the ``inspect RUN`` the leaderboard names."""
        from kerastune_kit.rundir import RunDir

        run = self.root.parent
        return run.parent.parent if RunDir(run).stage() is not None else run

    def _default(self) -> Any:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        return self._writer.as_default()

    def write_leaderboard(self, records: Sequence[TrialRecord], hp_names: Sequence[str], *,
                          objective: str | None, step: int, top: int = 10,
                          direction: str | None = None, importance: Any = None) -> None:
        """The leaderboard's top rows (:func:`~kerastune_kit.report.markdown_leaderboard`:
        its five leading knobs by ``importance`` when given, else by the recipe's priority)
        and the best configuration, as markdown.

        ``records`` are shown in the order given: ranked, best first (as
        :func:`~kerastune_kit.results.rank` returns them). The best is
        :func:`~kerastune_kit.results.best_of` under ``direction`` (the oracle's objective
        direction); without it, the first ranked record of ``records`` as given.
        """
        from kerastune_kit.report import markdown_best, markdown_leaderboard

        best = best_of(records, direction)
        with self._default():
            tf.summary.text("search/leaderboard",
                            markdown_leaderboard(records, hp_names, objective=objective, top=top,
                                                 importance=importance, run_dir=self.run_dir),
                            step=int(step))
            tf.summary.text("search/best_configuration",
                            markdown_best(best, objective=objective), step=int(step))
        self._writer.flush()

    def write_importance(self, importance: Any, *, step: int) -> None:
        """Hyperparameter importance as markdown and, when matplotlib is installed, a chart."""
        with self._default():
            tf.summary.text("search/importance", importance.markdown(), step=int(step))
            if importance:
                try:
                    from kerastune_kit.importance import importance_image

                    image = importance_image(importance)
                except ImportError:  # matplotlib missing: the text panel still has the numbers
                    image = None
                if image is not None:
                    tf.summary.image("search/importance_chart", image[None], step=int(step))
        self._writer.flush()

    def write_contour(self, contour: Any, *, step: int) -> None:
        """``search/contour``: an image of the objective over two knobs (a
        :class:`kerastune_kit.contour.Contour`), with its one-line summary as description;
        nothing when matplotlib is missing."""
        try:
            from kerastune_kit.contour import contour_image

            image = contour_image(contour)
        except ImportError:
            return
        with self._default():
            tf.summary.image("search/contour", image[None], step=int(step),
                             description=contour.summary())
        self._writer.flush()

    def write_test_evaluation(self, evaluation: Any, *, step: int) -> None:
        """The best trial's held-out test score (a :class:`kerastune_kit.final.TestEvaluation`):
        scalars ``search/test_score`` and ``search/validation_score`` (and
        ``search/refit_test_score`` after ``--refit``), and the text ``search/test_evaluation``
        (the test score next to the validation score, a large gap called out)."""
        with self._default():
            tf.summary.scalar("search/test_score", evaluation.score, step=int(step))
            if evaluation.validation_score is not None:
                tf.summary.scalar("search/validation_score", evaluation.validation_score,
                                  step=int(step))
            if evaluation.refit_score is not None:
                tf.summary.scalar("search/refit_test_score", evaluation.refit_score,
                                  step=int(step))
            tf.summary.text("search/test_evaluation", evaluation.markdown(), step=int(step))
        self._writer.flush()

    def write_preflight(self, report: Any, *, step: int = 0) -> None:
        """``search/preflight``: the sanity checks run before the first trial (a
        :class:`kerastune_kit.preflight.PreflightReport`), as markdown: the summary, each
        finding and the measured values."""
        with self._default():
            tf.summary.text("search/preflight", report.markdown(), step=int(step))
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the writer."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
