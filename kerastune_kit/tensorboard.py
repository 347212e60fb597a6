"""TensorBoard logging: the HParams experiment, one session per trial, epoch scalars.

Owns: the HParams experiment config written once at ``RUN/tensorboard`` (domains from the
search space, the objective and metrics), and :class:`TrialWriter`, which writes a trial's
hparams, its session status and its epoch scalars split into ``train/`` and ``validation/`` like
Keras's TensorBoard callback (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``), plus
the training loop's gradient health in ``train/`` (``gradients/*``, ``update_ratio/*``).
Does not own: choosing trials or training.

Open the result with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit._backend import keras as _keras
from kerastune_kit.space import Domain, Fixed, FloatRange, IntRange

_keras()
import tensorflow as tf  # noqa: E402
from tensorboard.plugins.hparams import api as hp_api  # noqa: E402
from tensorboard.plugins.hparams import api_pb2  # noqa: E402
from tensorboard.plugins.hparams import summary as hp_summary_v1  # noqa: E402

#: Trial status -> HParams session status.
SESSION_STATUS = {
    "COMPLETED": api_pb2.STATUS_SUCCESS,
    "FAILED": api_pb2.STATUS_FAILURE,
    "INVALID": api_pb2.STATUS_FAILURE,
}


def hparam(name: str, domain: Domain) -> Any:
    """An HParams-plugin ``HParam`` for one knob's domain."""
    if isinstance(domain, IntRange):
        return hp_api.HParam(name, hp_api.IntInterval(domain.min, domain.max))
    if isinstance(domain, FloatRange):
        return hp_api.HParam(name, hp_api.RealInterval(float(domain.min), float(domain.max)))
    values = [domain.value] if isinstance(domain, Fixed) else list(domain.values)
    values = [hparam_value(v) for v in values]
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


def write_experiment_config(
    root: str | Path, domains: Mapping[str, Domain], metric_names: Sequence[str]
) -> None:
    """Write the HParams experiment config (hparams and metrics) at ``root``."""
    writer = tf.summary.create_file_writer(str(root))
    with writer.as_default():
        hp_api.hparams_config(
            hparams=[hparam(name, domain) for name, domain in domains.items()],
            metrics=metric_tags(metric_names),
        )
    writer.flush()
    writer.close()


class TrialWriter:
    """Writes one trial's HParams session and epoch scalars under ``root/<trial_id>``.

    Writers are created on first use. Keys starting with ``val_`` go to ``validation/`` with the
    prefix removed; every other key goes to ``train/``; each is logged as ``epoch_<key>`` with the
    epoch index as step (a promoted trial continues its parent's step axis).

    Example:
        >>> writer = TrialWriter("runs/x/tensorboard", "0003")
        >>> writer.write_hparams({"learning_rate": 1e-3})
        >>> writer.write_epoch(0, {"loss": 0.7, "val_loss": 0.8})
        >>> writer.close("COMPLETED")
    """

    def __init__(self, root: str | Path, trial_id: str) -> None:
        self.trial_id = str(trial_id)
        self.run_dir = Path(root) / self.trial_id
        self._writers: dict[str, Any] = {}

    def _writer(self, sub: str) -> Any:
        if sub not in self._writers:
            path = self.run_dir / sub if sub else self.run_dir
            self._writers[sub] = tf.summary.create_file_writer(str(path))
        return self._writers[sub]

    def write_hparams(self, values: Mapping[str, Any]) -> None:
        """Start the HParams session: the trial's active hyperparameter values."""
        clean = {k: hparam_value(v) for k, v in values.items() if not k.startswith("tuner/")}
        with self._writer("").as_default():
            hp_api.hparams(clean, trial_id=self.trial_id, start_time_secs=int(time.time()))

    def write_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Log one epoch's metrics as ``epoch_<name>`` scalars."""
        for key, value in logs.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            sub, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(sub).as_default():
                tf.summary.scalar(f"epoch_{tag}", number if math.isfinite(number) else math.nan,
                                  step=int(epoch))

    def write_scalar(self, tag: str, value: float, step: int, *, sub: str = "") -> None:
        """Log any scalar (for example ``trial/wall_time_s``) in the session run."""
        with self._writer(sub).as_default():
            tf.summary.scalar(tag, float(value), step=int(step))

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
