"""A Keras callback that puts a plain ``model.fit`` run into the HParams dashboard.

Owns: :class:`HParamsCallback`. It writes what a tuned trial writes (through the same
:class:`~kerastune_kit.tensorboard.TrialWriter`): an HParams session with the hyperparameters
you used, ``epoch_<metric>`` scalars split into ``train/`` and ``validation/``, the learning
rate, memory readings, the trial-level results (``trial/score``, ``trial/best_epoch``, ...) and
the session status. Point ``log_dir`` at a folder beside a search's trials
(``RUN/tensorboard/my_run``) and your run appears in the same table, next to the tuned trials.
Does not own: training (``model.fit`` does it) or searching.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit._backend import keras as _keras
from kerastune_kit.errors import ConfigError
from kerastune_kit.results import TrialRecord, TrialStatus, direction_of
from kerastune_kit.tensorboard import TrialWriter

keras = _keras()


class HParamsCallback(keras.callbacks.Callback):
    """Log a ``model.fit`` run as an HParams session, with the same tags as tuned trials.

    Args:
        log_dir: The run's folder; TensorBoard shows it as a run (and the session) named after
            its path below ``--logdir``. Scalars go to ``log_dir/train`` and
            ``log_dir/validation``, as with ``keras.callbacks.TensorBoard``.
        hparams: The hyperparameters of this run, ``{name: value}`` (numbers, booleans,
            strings). Use the search's names (``learning_rate``, ``units_0``) to line the run up
            with tuned trials; values outside a search's discrete domains may be filtered out
            by the dashboard's default filters.
        trial_id: The session's name in the dashboard (default: ``log_dir``'s folder name).
        metrics: Metric names to log (``("loss", "accuracy")`` logs ``loss``, ``val_loss``,
            ``accuracy`` and ``val_accuracy``); default: every metric in the logs.
        objective: The log key whose best epoch gives ``trial/score`` (default: ``val_loss``
            when validation data is given, else ``loss``).
        write_scalars: Set False when a ``keras.callbacks.TensorBoard`` writes the epoch
            scalars to the same ``log_dir`` already (the dashboard reads those). Steps differ
            by one then: Keras's callback logs the 0-based epoch index, this one (and every
            tuned trial) the epoch's number from 1, as Keras prints ``Epoch 1/5``.

    Attributes:
        record: After training, the run's :class:`~kerastune_kit.results.TrialRecord`.

    Example:
        >>> callback = HParamsCallback("runs/digits-hyperband/tensorboard/my_fit",
        ...                            {"learning_rate": 1e-3, "num_layers": 2},
        ...                            objective="val_accuracy")
        >>> model.fit(x, y, validation_data=(x_val, y_val), epochs=5, callbacks=[callback])
        >>> callback.record.score
        0.95...
    """

    def __init__(self, log_dir: str | Path, hparams: Mapping[str, Any],
                 trial_id: str | None = None, *, metrics: Sequence[str] | None = None,
                 objective: str | None = None, write_scalars: bool = True) -> None:
        super().__init__()
        if not isinstance(hparams, Mapping):
            raise ConfigError(
                f"hparams: expected a dict of name -> value, received "
                f"{type(hparams).__name__}; pass e.g. {{'learning_rate': 1e-3}}"
            )
        if isinstance(metrics, str) or (metrics is not None and not all(
                isinstance(m, str) for m in metrics)):
            raise ConfigError(
                f"metrics: expected a list of metric names, received {metrics!r}; pass e.g. "
                "('loss', 'accuracy')"
            )
        self.log_dir = Path(log_dir)
        self.hparams = dict(hparams)
        self.trial_id = str(trial_id) if trial_id is not None else self.log_dir.name
        self.metrics = None if metrics is None else {m.removeprefix("val_") for m in metrics}
        self.objective = objective
        self.write_scalars = write_scalars
        self.record: TrialRecord | None = None
        self._writer: TrialWriter | None = None
        self._series: list[tuple[int, float]] = []
        self._first_epoch: int | None = None
        self._last_epoch: int | None = None
        self._diverged_at: int | None = None
        self._started = 0.0

    # -------------------------------------------------------------- hooks
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._writer = TrialWriter(self.log_dir.parent, self.trial_id, run_dir=self.log_dir)
        self._writer.write_hparams(self.hparams)
        self._series, self._first_epoch, self._last_epoch = [], None, None
        self._diverged_at = None
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if "learning_rate" not in logs and getattr(self.model, "optimizer", None) is not None:
            try:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                    self.model.optimizer.learning_rate))
            except (TypeError, ValueError):
                pass
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._last_epoch = epoch
        if self.objective is None:
            self.objective = "val_loss" if "val_loss" in logs else "loss"
        value = _float(logs.get(self.objective))
        if value is not None:
            self._series.append((epoch, value))
        elif epoch == self._first_epoch:
            hint = (" (validation metrics need validation_data or validation_split)"
                    if self.objective.startswith("val_") and not any(
                        k.startswith("val_") for k in logs) else "")
            warnings.warn(
                f"HParamsCallback: objective {self.objective!r} is not in the epoch logs, "
                f"which have {', '.join(sorted(logs)) or 'nothing'}{hint}; the run gets no "
                "score. Pass objective= one of those.", stacklevel=2)
        loss = _float(logs.get("loss"))
        if loss is not None and not math.isfinite(loss) and self._diverged_at is None:
            self._diverged_at = epoch
        if self.metrics is not None:
            logs = {k: v for k, v in logs.items()
                    if k == "learning_rate" or k.removeprefix("val_") in self.metrics}
        if self._writer is not None:
            self._writer.write_epoch(epoch, logs if self.write_scalars else {})

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._writer is None:
            return
        record = TrialRecord(trial_id=self.trial_id, status=TrialStatus.COMPLETED,
                             initial_epoch=self._first_epoch or 0,
                             wall_time_s=round(time.perf_counter() - self._started, 3),
                             hyperparameters=dict(self.hparams))
        if self._last_epoch is not None:
            record.epochs = self._last_epoch + 1
        finite = [(value, epoch) for epoch, value in self._series if math.isfinite(value)]
        if finite:
            pick = max if direction_of(self.objective or "val_loss") == "max" else min
            record.score, record.best_epoch = pick(finite, key=lambda item: item[0])
        if self._diverged_at is not None and not finite:
            record.status = TrialStatus.FAILED
            record.message = f"diverged: non-finite loss at epoch {self._diverged_at + 1}"
        elif self._last_epoch is None:
            record.status = TrialStatus.FAILED
            record.message = "no epoch finished"
        objective = self.objective or "val_loss"
        self._writer.write_result(record, objective=objective, direction=direction_of(objective))
        self._writer = None
        self.record = record


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
