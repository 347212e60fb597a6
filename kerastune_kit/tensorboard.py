"""TensorBoard logging: the HParams experiment, one session per trial, epoch scalars, summaries.

Owns: the HParams experiment config written once at ``RUN/tensorboard`` (domains from the
search space, the objective and metrics, trial-level metrics), :class:`TrialWriter`, which
writes a trial's hparams, its session status, its epoch scalars split into ``train/`` and
``validation/`` like Keras's TensorBoard callback (``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate``), memory readings and its trial-level results (``trial/score``,
``trial/best_epoch``, ...) and the training loop's gradient health (``gradients/*``,
``update_ratio/*`` in ``train/``); :class:`SearchSummaryWriter` (text panels with the
leaderboard, the best configuration and hyperparameter importance). Does not own: choosing
trials, training, or the Keras callback for plain ``model.fit`` runs
(``callbacks.HParamsCallback``, which writes through :class:`TrialWriter`).

Open the result with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit import _memory
from kerastune_kit._backend import keras as _keras
from kerastune_kit.results import (
    BASELINE_HPARAM,
    PARENT_HPARAM,
    TrialRecord,
    TrialStatus,
    best_of,
)
from kerastune_kit.space import Domain, Fixed, FloatRange, IntRange

_keras()
import tensorflow as tf  # noqa: E402
from tensorboard.plugins.hparams import api as hp_api  # noqa: E402
from tensorboard.plugins.hparams import api_pb2  # noqa: E402
from tensorboard.plugins.hparams import summary as hp_summary_v1  # noqa: E402

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
#: columns of the HParams dashboard: tag -> display name.
TRIAL_METRICS = {
    "trial/score": "score",
    "trial/best_epoch": "best epoch",
    "trial/epochs": "epochs",
    "trial/wall_time_s": "wall time (s)",
    "trial/peak_memory_mb": "peak memory (MB)",
}


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


def metric_tags(metric_names: Sequence[str]) -> list[Any]:
    """HParams metrics for each metric, in the ``validation`` and ``train`` groups."""
    metrics = []
    for group, prefix in (("validation", "val_"), ("train", "")):
        for name in metric_names:
            metrics.append(hp_api.Metric(f"epoch_{name}", group=group,
                                         display_name=f"{prefix}{name}"))
    return metrics


def trial_metric_tags(objective: str | None = None, direction: str | None = None) -> list[Any]:
    """HParams metrics for the trial-level results; ``trial/score``'s description names the
    objective and its direction (``val_accuracy (max): ...``), which readers parse back."""
    metrics = []
    for tag, display in TRIAL_METRICS.items():
        description = None
        if tag == "trial/score" and objective:
            description = (f"{objective} ({direction or 'max'}): the trial's best "
                           f"{objective}, the objective of the search")
            display = f"score ({objective})"
        metrics.append(hp_api.Metric(tag, group="", display_name=display,
                                     description=description))
    return metrics


def write_experiment_config(
    root: str | Path, domains: Mapping[str, Domain], metric_names: Sequence[str], *,
    objective: str | None = None, direction: str | None = None, with_parent: bool = False,
    with_baseline: bool = False,
) -> None:
    """Write the HParams experiment config at ``root``.

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
    """
    hparams = [hparam(name, domain) for name, domain in domains.items()]
    if with_baseline:
        hparams.append(hp_api.HParam(BASELINE_HPARAM, description=(
            "the popular design this trial ran first, as a baseline (empty: the tuner's own "
            "trial)")))
    if with_parent:
        hparams.append(hp_api.HParam(PARENT_HPARAM, description=(
            "the Hyperband trial this one continued from (empty: trained from scratch)")))
    writer = tf.summary.create_file_writer(str(root))
    with writer.as_default():
        hp_api.hparams_config(
            hparams=hparams,
            metrics=[*trial_metric_tags(objective, direction), *metric_tags(metric_names)],
        )
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


class TrialWriter:
    """Writes one trial's HParams session and epoch scalars under ``root/<trial_id>``.

    Writers are created on first use. Keys starting with ``val_`` go to ``validation/`` with the
    prefix removed; every other key goes to ``train/``; each is logged as ``epoch_<key>`` with the
    epoch index as step (a promoted trial continues its parent's step axis).

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

    def _writer(self, sub: str) -> Any:
        if sub not in self._writers:
            path = self.run_dir / sub if sub else self.run_dir
            self._writers[sub] = tf.summary.create_file_writer(str(path))
        return self._writers[sub]

    def write_hparams(self, values: Mapping[str, Any], *, parent_trial_id: str | None = None,
                      with_parent: bool = False, with_baseline: bool = False) -> None:
        """Start the HParams session: the trial's active hyperparameter values.

        With ``with_parent``, the :data:`PARENT_HPARAM` hparam carries ``parent_trial_id``
        (empty for a trial trained from scratch). Starts a new memory peak.
        """
        clean = {k: hparam_value(v) for k, v in values.items()
                 if not k.startswith(("tuner/", "kit/"))}
        if with_baseline:
            clean[BASELINE_HPARAM] = str(values.get("kit/baseline") or "")
        if with_parent:
            clean[PARENT_HPARAM] = str(parent_trial_id or "")
        _memory.reset_peak()
        with self._writer("").as_default():
            hp_api.hparams(clean, trial_id=self.session_name, start_time_secs=int(time.time()))

    def write_epoch(self, epoch: int, logs: Mapping[str, Any], *, memory: bool = True) -> None:
        """Log one epoch's metrics as ``epoch_<name>`` scalars, and memory readings
        (``memory/rss_mb``, ``memory/peak_rss_mb``, ``memory/gpu_peak_mb`` on GPU) in the
        session run."""
        for key, value in logs.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            sub, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(sub).as_default():
                tf.summary.scalar(f"epoch_{tag}", number if math.isfinite(number) else math.nan,
                                  step=int(epoch))
        if memory:
            with self._writer("").as_default():
                for name, value in _memory.memory_mb().items():
                    tf.summary.scalar(f"memory/{name}", value, step=int(epoch))

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

        Writes :data:`TRIAL_METRICS`, the ``trial/outcome`` text (the outcome, the parent
        trial, how it trained: ``record.training``, its diagnosis, and its message) and, when
        given, the ``trial/objective`` text ``"val_accuracy (max)"``.
        """
        step = int(record.epochs or 0)
        if objective:
            self.write_text("trial/objective", f"{objective} ({direction or 'max'})", step=step)
        values = {"trial/score": record.score, "trial/best_epoch": record.best_epoch,
                  "trial/epochs": record.epochs, "trial/wall_time_s": record.wall_time_s,
                  "trial/peak_memory_mb": _memory.memory_mb().get("peak_rss_mb")}
        for tag, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.write_scalar(tag, float(value), step=step)
        lines = [f"**{record.outcome}**"]
        if record.parent_trial_id:
            lines.append(f"continued from trial {record.parent_trial_id} at epoch "
                         f"{record.initial_epoch}")
        if record.training:
            lines.append("trained with " + ("kerastune_kit's compiled loop"
                                            if record.training == "loop" else "model.fit"))
        if record.diagnosis:  # (kerastune_kit.diagnosis; read back by `inspection`)
            lines.append(record.diagnosis)
        if record.message:
            lines.append(record.message)
        self.write_text("trial/outcome", "  \n".join(lines), step=step)
        self.close(record.status)

    def write_diagnostics(self, epoch: int, diagnostics: Mapping[str, Any]) -> None:
        """Log one epoch's gradient health in ``train/``: numbers as scalars, arrays as histograms.

        Tags are the keys of :class:`~kerastune_kit.training.TrainingHistory` diagnostics
        (``gradients/global_norm_mean``, ``update_ratio/<layer>``, ``weights/<variable>``).
        """
        with self._writer("train").as_default():
            for tag, value in diagnostics.items():
                if getattr(value, "ndim", 0):
                    tf.summary.histogram(tag, value, step=int(epoch))
                else:
                    tf.summary.scalar(tag, float(value), step=int(epoch))

    def close(self, status: str | None = None) -> None:
        """End the session with the trial's status and flush every writer."""
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
    """Text panels (and a chart) summarizing the whole search, at the search's log directory.

    Tags: ``search/leaderboard`` and ``search/best_configuration`` (markdown, rewritten as trials
    finish; step = finished trials), ``search/importance`` (markdown),
    ``search/importance_chart`` and ``search/contour`` (images: importance, and the objective
    over the two most important knobs); before the first trial, ``search/preflight``
    (markdown); after the search, ``search/test_score`` and
    ``search/validation_score`` (scalars) and ``search/test_evaluation`` (markdown). Open
    TensorBoard's TEXT and IMAGES tabs, run ``.``.

    Example:
        >>> summary = SearchSummaryWriter("runs/x/tensorboard")
        >>> summary.write_leaderboard(records, ["learning_rate"], objective="val_accuracy",
        ...                           step=3)
        >>> summary.close()
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._writer: Any = None

    def _default(self) -> Any:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.root))
        return self._writer.as_default()

    def write_leaderboard(self, records: Sequence[TrialRecord], hp_names: Sequence[str], *,
                          objective: str | None, step: int, top: int = 10,
                          direction: str | None = None) -> None:
        """The leaderboard's top rows and the best configuration, as markdown.

        ``records`` are shown in the order given: ranked, best first (as
        :func:`~kerastune_kit.results.rank` returns them). The best is
        :func:`~kerastune_kit.results.best_of` under ``direction`` (the oracle's objective
        direction); without it, the first ranked record of ``records`` as given.
        """
        from kerastune_kit.report import markdown_best, markdown_leaderboard

        best = best_of(records, direction)
        with self._default():
            tf.summary.text("search/leaderboard",
                            markdown_leaderboard(records, hp_names, objective=objective, top=top),
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
