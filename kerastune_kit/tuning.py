"""Running a search: oracle choice, our Tuner subclasses, the run directory, the results.

Owns: :func:`run_search` (config -> validated inputs -> KerasTuner search -> results files),
:func:`build_tuner`, and the ``Kit*`` tuners, which extend KerasTuner's own
``Hyperband``/``BayesianOptimization``/``RandomSearch``/``GridSearch`` with per-trial TensorBoard
sessions, trial records, a leaderboard rewritten after every trial and one progress line per
trial. Does not own: the training loop (``training``) or reading results back (``results``).

Example:
    >>> from kerastune_kit import SearchConfig, run_search
    >>> result = run_search(SearchConfig(data="iris", tuner="random", max_trials=3, max_epochs=3,
    ...                                  run_dir="runs/iris-demo", overwrite=True))
    >>> result.best_score
    0.96...
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerastune_kit import __version__
from kerastune_kit._logging import get_logger
from kerastune_kit.config import RESUME_KEYS, SearchConfig, load_saved_config
from kerastune_kit.data import Dataset, load_dataset
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import (
    BEST_HYPERPARAMETERS,
    BEST_MODEL,
    LEADERBOARD,
    RECORD_FILE,
    TrialRecord,
    atomic_path,
    rank,
    read_trial_records,
    write_json_atomic,
    write_leaderboard,
    write_text_atomic,
)
from kerastune_kit.space import SearchSpace

logger = get_logger("tuning")

RUN_MARKER = "run.json"
TUNER_DIR = "tuner"
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass
class SearchResult:
    """What a finished search produced.

    Attributes:
        run_dir: The run directory.
        objective: The objective's name; ``direction`` is ``min`` or ``max``.
        trials: Every trial, best first.
        best: The best completed trial, None when no trial completed.
        wall_time_s: Seconds the search took.
    """

    run_dir: Path
    objective: str
    direction: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    wall_time_s: float

    @property
    def best_score(self) -> float | None:
        """The best trial's score."""
        return self.best.score if self.best else None

    @property
    def best_hyperparameters(self) -> dict[str, Any]:
        """The best trial's hyperparameters (empty when no trial completed)."""
        return dict(self.best.hyperparameters) if self.best else {}


def warm_up_tensorflow() -> list[str]:
    """Import TensorFlow and initialise its devices now; returns the device names.

    The CLI calls this while TensorFlow's start-up chatter is silenced.
    """
    from kerastune_kit._backend import keras

    keras()
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices()]


# ---------------------------------------------------------------------- tuners
def _tuner_classes() -> dict[str, type]:
    import keras_tuner as kt

    from kerastune_kit.tensorboard import TrialWriter, write_experiment_config

    class KitTunerMixin:
        """Per-trial TensorBoard sessions, trial records, leaderboard and progress lines."""

        def __init__(self, *args: Any, kit_run_dir: Path, kit_space: SearchSpace,
                     kit_metric_names: Sequence[str],
                     kit_on_trial: Callable[[TrialRecord], None] | None = None,
                     **kwargs: Any) -> None:
            self.kit_run_dir = Path(kit_run_dir)
            self.kit_space = kit_space
            self.kit_metric_names = tuple(kit_metric_names)
            self.kit_on_trial = kit_on_trial
            self._kit_writers: dict[str, Any] = {}
            self._kit_started: dict[str, float] = {}
            self._kit_histories: dict[str, Any] = {}
            super().__init__(*args, **kwargs)

        # -- paths
        @property
        def kit_tensorboard_dir(self) -> Path:
            return self.kit_run_dir / TENSORBOARD_DIR

        def kit_hp_names(self) -> list[str]:
            return list(self.kit_space.hparam_domains())

        # -- search hooks
        def on_search_begin(self) -> None:
            super().on_search_begin()
            write_experiment_config(self.kit_tensorboard_dir, self.kit_space.hparam_domains(),
                                    self.kit_metric_names)

        def on_trial_begin(self, trial: Any) -> None:
            super().on_trial_begin(trial)
            self._kit_started[trial.trial_id] = time.perf_counter()
            writer = TrialWriter(self.kit_tensorboard_dir, trial.trial_id)
            writer.write_hparams(trial.hyperparameters.values)
            self._kit_writers[trial.trial_id] = writer

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            histories = super().run_trial(trial, *args, **kwargs)
            self._kit_histories[trial.trial_id] = histories[-1] if histories else None
            return histories

        def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
            super().on_epoch_end(trial, model, epoch, logs=logs)
            writer = self._kit_writers.get(trial.trial_id)
            if writer is not None and logs:
                writer.write_epoch(epoch, logs)
                # TrainLoop's gradient health for this epoch (kept out of the Keras logs).
                diagnostics = getattr(getattr(model, "history", None), "diagnostics", {})
                if diagnostics.get(epoch):
                    writer.write_diagnostics(epoch, diagnostics[epoch])

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)  # the oracle scores the trial here
            ended = self.oracle.get_trial(trial.trial_id)
            record = self._kit_record(ended)
            writer = self._kit_writers.pop(trial.trial_id, None)
            if writer is not None:
                writer.write_scalar("trial/wall_time_s", record.wall_time_s or 0.0,
                                    step=record.epochs or 0)
                writer.close(record.status)
            write_json_atomic(Path(self.get_trial_dir(trial.trial_id)) / RECORD_FILE,
                              record.to_json())
            self.kit_write_leaderboard()
            if self.kit_on_trial is not None:
                self.kit_on_trial(record)

        # -- records
        def _kit_record(self, trial: Any) -> TrialRecord:
            values = dict(trial.hyperparameters.values)
            history = self._kit_histories.pop(trial.trial_id, None)
            started = self._kit_started.pop(trial.trial_id, time.perf_counter())
            objective = self.oracle.objective
            record = TrialRecord(
                trial_id=trial.trial_id, status=str(trial.status),
                wall_time_s=round(time.perf_counter() - started, 3),
                parent_trial_id=values.get("tuner/trial_id"),
                initial_epoch=int(values.get("tuner/initial_epoch", 0)),
                hyperparameters={k: _plain(v) for k, v in values.items()
                                 if not k.startswith("tuner/")},
            )
            if trial.status == "COMPLETED" and trial.score is not None:
                record.score = float(trial.score)
            if history is not None:
                series = history.history.get(objective.name, [])
                record.epochs = record.initial_epoch + len(series)
                finite = [(v, i) for i, v in enumerate(series) if math.isfinite(v)]
                if finite:
                    best = (max if objective.direction == "max" else min)(finite)
                    record.best_epoch = record.initial_epoch + best[1]
                record.start_optimizer_step = history.initial_iterations
                if history.initial_logs is not None:
                    key = objective.name.removeprefix("val_")
                    record.start_score = history.initial_logs.get(key)
            if trial.message:
                record.message = _last_line(trial.message)
            return record

        def kit_records(self) -> list[TrialRecord]:
            saved = {r.trial_id: r for r in read_trial_records(self.project_dir)}
            for trial_id, trial in self.oracle.trials.items():
                if trial_id not in saved:
                    saved[trial_id] = TrialRecord(
                        trial_id=trial_id, status=str(trial.status),
                        hyperparameters={k: _plain(v) for k, v in
                                         trial.hyperparameters.values.items()
                                         if not k.startswith("tuner/")})
            return rank(saved.values(), self.oracle.objective.direction)

        def kit_write_leaderboard(self) -> list[TrialRecord]:
            records = self.kit_records()
            write_leaderboard(self.kit_run_dir / LEADERBOARD, records, self.kit_hp_names())
            return records

    class KitHyperband(KitTunerMixin, kt.Hyperband):
        """KerasTuner's Hyperband with kerastune_kit's logging and records."""

    class KitBayesianOptimization(KitTunerMixin, kt.BayesianOptimization):
        """KerasTuner's Bayesian optimization with kerastune_kit's logging and records."""

    class KitRandomSearch(KitTunerMixin, kt.RandomSearch):
        """KerasTuner's random search with kerastune_kit's logging and records."""

    class KitGridSearch(KitTunerMixin, kt.GridSearch):
        """KerasTuner's grid search with kerastune_kit's logging and records."""

    return {"hyperband": KitHyperband, "bayesian": KitBayesianOptimization,
            "random": KitRandomSearch, "grid": KitGridSearch}


_TUNER_CLASSES: dict[str, type] | None = None


def tuner_class(name: str) -> type:
    """The Tuner class for ``hyperband``, ``bayesian``, ``random`` or ``grid``."""
    global _TUNER_CLASSES
    if _TUNER_CLASSES is None:
        _TUNER_CLASSES = _tuner_classes()
    return _TUNER_CLASSES[name]


def build_tuner(config: SearchConfig, hypermodel: Any, *, objective: str,
                on_trial: Callable[[TrialRecord], None] | None = None) -> Any:
    """Construct the KerasTuner tuner for ``config`` around ``hypermodel``.

    The oracle is seeded with ``config.seed``; the project directory is ``RUN/tuner``.
    """
    import keras_tuner as kt

    from kerastune_kit.hypermodels import objective_direction

    run_dir = config.effective_run_dir()
    kwargs: dict[str, Any] = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective, direction=objective_direction(objective)),
        seed=config.seed,
        directory=str(run_dir),
        project_name=TUNER_DIR,
        overwrite=False,
        max_consecutive_failed_trials=config.max_consecutive_failures,
        kit_run_dir=run_dir,
        kit_space=hypermodel.space,
        kit_metric_names=hypermodel.head.metric_names,
        kit_on_trial=on_trial,
    )
    if config.tuner == "hyperband":
        kwargs.update(max_epochs=config.max_epochs, factor=config.factor)
    else:
        kwargs["max_trials"] = config.effective_max_trials()
    tuner = tuner_class(config.tuner)(**kwargs)
    if config.tuner == "hyperband" and config.max_trials is not None:
        tuner.oracle.max_trials = config.max_trials
    return tuner


# ---------------------------------------------------------------------- run_search
def prepare(config: SearchConfig) -> tuple[Dataset, SearchSpace, Any, str]:
    """Load and validate everything a search needs, writing nothing.

    Returns:
        ``(dataset, space, hypermodel, objective)``.

    Raises:
        ConfigError, DataError, RunDirError: Bad input, with a one-line message.
    """
    dataset = load_dataset(config.data, target=config.target, task=config.task,
                           validation_split=config.validation_split, seed=config.seed)
    space = SearchSpace(config.overrides)
    from kerastune_kit.hypermodels import MLPHyperModel, available_objectives, task_head

    head = task_head(dataset.task, dataset.n_classes)
    objective = config.objective or head.default_objective
    choices = available_objectives(dataset.task)
    if objective not in choices:
        raise ConfigError(
            f"objective: {dataset.task} models report {', '.join(choices)}; received "
            f"{objective!r}; pass one of those to --objective"
        )
    hypermodel = MLPHyperModel.for_dataset(dataset, space, seed=config.seed)
    _check_run_dir(config, dataset)
    return dataset, space, hypermodel, objective


def _check_run_dir(config: SearchConfig, dataset: Dataset) -> None:
    run_dir = config.effective_run_dir()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run_dir: '{run_dir}' is a file; pass a directory to --run-dir")
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    is_run = (run_dir / RUN_MARKER).is_file() or (run_dir / "config.toml").is_file()
    if config.resume:
        if not is_run:
            raise RunDirError(
                f"run_dir: '{run_dir}' holds no search to resume; drop --resume to start one"
            )
        saved = SearchConfig(**{**load_saved_config(run_dir), "run_dir": str(run_dir)})
        now, before = config.resume_fingerprint(), saved.resume_fingerprint()
        for key in RESUME_KEYS:
            if now.get(key) != before.get(key):
                raise RunDirError(
                    f"{key}: the saved search in '{run_dir}' used {before.get(key)!r}, received "
                    f"{now.get(key)!r}; resume with the same settings or pass --overwrite"
                )
        marker = _read_marker(run_dir)
        if marker.get("data_fingerprint") not in (None, dataset.fingerprint()):
            raise RunDirError(
                f"data: the data behind '{config.data}' changed since the search in '{run_dir}' "
                "started; resume with the same data or pass --overwrite"
            )
        return
    if occupied and not config.overwrite:
        raise RunDirError(
            f"run_dir: '{run_dir}' already exists; pass --overwrite to replace it, --resume to "
            "continue it, or another --run-dir"
        )
    if occupied and config.overwrite and not is_run:
        raise RunDirError(
            f"run_dir: '{run_dir}' is not a kerastune_kit run directory; refusing to delete it "
            "with --overwrite; pass another --run-dir"
        )


def _read_marker(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_search(
    config: SearchConfig,
    *,
    callbacks: Sequence[Any] | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> SearchResult:
    """Run a complete search and write the results into the run directory.

    Everything is validated before anything is written. Results (``leaderboard.csv``,
    ``best_hyperparameters.json``, ``best_model.keras``) are written atomically.

    Args:
        config: The search configuration.
        callbacks: Keras callbacks added to every trial (deep-copied per trial by KerasTuner).
        on_trial: Called with each finished trial's record (the CLI prints progress with it).

    Returns:
        The :class:`SearchResult`.
    """
    started = time.perf_counter()
    dataset, space, hypermodel, objective = prepare(config)
    run_dir = config.effective_run_dir()
    if config.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.toml", config.to_toml())
    marker = _read_marker(run_dir) if config.resume else {}
    marker.update(version=__version__, dataset=dataset.summary(),
                  data_fingerprint=dataset.fingerprint(), objective=objective)
    write_json_atomic(run_dir / RUN_MARKER, marker)
    logger.info("search: %s, %s tuner, objective %s, run directory %s",
                dataset.summary(), config.tuner, objective, run_dir)

    tuner = build_tuner(config, hypermodel, objective=objective, on_trial=on_trial)
    tuner.search(
        dataset.x_train, dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=config.max_epochs, callbacks=list(callbacks or []), verbose=0,
    )
    records = tuner.kit_write_leaderboard()
    best = next((r for r in records if r.status == "COMPLETED" and r.score is not None), None)
    if best is not None:
        write_json_atomic(run_dir / BEST_HYPERPARAMETERS, {
            "trial_id": best.trial_id, "objective": objective, "score": best.score,
            "best_epoch": best.best_epoch, "hyperparameters": best.hyperparameters,
        })
        _save_best_model(tuner, run_dir / BEST_MODEL)
    return SearchResult(run_dir=run_dir, objective=objective,
                        direction=tuner.oracle.objective.direction, trials=records, best=best,
                        wall_time_s=time.perf_counter() - started)


def _save_best_model(tuner: Any, path: Path) -> None:
    model = tuner.get_best_models(1)[0]
    with atomic_path(path) as tmp:
        model.save(tmp)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else message
