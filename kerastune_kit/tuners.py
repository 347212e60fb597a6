"""Our KerasTuner tuners: KerasTuner's own oracles plus logging, records, pruning and budgets.

Owns: ``KitTunerMixin`` and the ``Kit*`` classes that extend KerasTuner's ``Hyperband``,
``BayesianOptimization``, ``RandomSearch`` and ``GridSearch``; :func:`build_tuner`. Per trial the
mixin writes a TensorBoard HParams session and epoch scalars, reports each epoch's objective to
the pruner, stops cleanly at the time budget (the running trial ends at its next epoch end and
counts) or on SIGINT/SIGTERM (the running trial is left
unfinished for ``--resume``), ranks diverged trials below every finished one (for the oracle
too: :func:`rescore_diverged`),
records every trial (``kerastune_kit_trial.json``) and rewrites the leaderboard.
Does not own: loading data or the run directory (``tuning``), the training loop (``training``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras_tuner as kt
import numpy as np

from kerastune_kit._logging import get_logger
from kerastune_kit.config import BRACKET_TUNERS, TIME_BUDGET_TRIALS, SearchConfig
from kerastune_kit.designs import BASELINE_KEY, design_values
from kerastune_kit.diagnosis import diagnose_history, validation_size
from kerastune_kit.fit_paths import fit_with_keras, fit_with_loop, loop_unsupported
from kerastune_kit.hypermodels import DivergedTrialError, KitHyperModel
from kerastune_kit.kt_patches import patch_keras_tuner_protos, patch_keras_tuner_writes
from kerastune_kit.plan import (  # noqa: F401 - re-exported (they lived here)
    COST_LIMIT_FACTOR,
    COST_LIMIT_FLOOR,
    cost_limit,
    expected_trials,
    initial_random_points,
    search_plan,
)
from kerastune_kit.progress import EpochProgress
from kerastune_kit.pruning import Pruner, make_pruner
from kerastune_kit.results import (
    TUNER_DIR,
    TrialRecord,
    is_ranked,
    rank,
    read_trial_records,
    write_json_atomic,
    write_leaderboard,
)
from kerastune_kit.rundir import (
    STAGES_DIR,
    RunDir,
    errno_in_text,
    find_write_error,
    record_path,
    write_errors,
)
from kerastune_kit.space import SearchSpace
from kerastune_kit.tensorboard import SearchSummaryWriter, TrialWriter
from kerastune_kit.tpe import BOHBMixin, TPEOracle
from kerastune_kit.trial_report import (  # noqa: F401 - re-exported (they lived here)
    _BELOW,
    _last_line,
    _plain,
    rescore_diverged,
    trial_seed,
)
from kerastune_kit.trial_status import FAILED_STATUSES, TrialStatus

patch_keras_tuner_protos()
patch_keras_tuner_writes()
#: A ``--refine`` stage k seeds its oracle and trials with ``seed + STAGE_SEED_STRIDE * (k - 1)``.
STAGE_SEED_STRIDE = 1000

logger = get_logger("search")


class SearchStopped(kt.errors.FatalError):
    """Ends ``tuner.search`` without ending the running trial (it stays resumable).

    ``write_error`` is the ``OSError`` when a file of the trial could not be written (no
    space, read-only, no permission): the trial did not fail, the disk did.
    """

    def __init__(self, reason: str, write_error: OSError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.write_error = write_error

class KitTunerMixin:
    """TensorBoard sessions, trial records, pruning, budgets and the failure policy.

    Mixed into KerasTuner's tuners to make the public classes (:class:`RandomSearch`,
    :class:`Hyperband`, ...). Used two ways:

    - by a user, as KerasTuner's class is (``tuner.search(x, y, ...)``): the run directory is
      ``directory/project_name`` and ``search`` validates the data, writes ``run.json`` and
      the HParams experiment, runs the trials and writes the results files;
    - by :func:`kerastune_kit.tuning.run_search` (the CLI), which owns the run directory and
      passes the internal ``kit_*`` settings.
    """

    def __init__(self, *args: Any, pruner: str | Pruner | None = None,
                 max_time: float | None = None, workers: int = 0,
                 trials_per_worker: int | None = None, training: str = "auto",
                 patience: int | None = None, explosion_factor: float | str | None = 3.0,
                 kit_run_dir: Path | None = None, kit_space: SearchSpace | None = None,
                 kit_metric_names: Sequence[str] = (),
                 kit_on_trial: Callable[[TrialRecord], None] | None = None,
                 kit_on_epoch: Callable[[EpochProgress], None] | None = None,
                 kit_pruner: Pruner | None = None, kit_seed: int | None = None,
                 kit_deadline: float | None = None, kit_trial_budget: int | None = None,
                 kit_job: bool = False, **kwargs: Any) -> None:
        #: Run by ``run_search``, or a worker process's part of a user's search: ``search``
        #: is KerasTuner's loop alone (the caller writes the run directory's files).
        self.kit_managed = kit_run_dir is not None or kit_job
        # What a worker process needs to build this tuner again (TunerJob).
        user_args, user_kwargs = getattr(self, "_kit_user_call", (args, dict(kwargs)))
        check_tuner_options(pruner=pruner, max_time=max_time, workers=workers,
                            trials_per_worker=trials_per_worker, training=training,
                            patience=patience)
        #: The explosion rule's factor (0: off): see ``explosion_factor`` of
        #: :class:`~kerastune_kit.training.TrainLoop`.
        self.kit_explosion_factor = _explosion_factor(explosion_factor)
        if kit_run_dir is not None:
            self.kit_run_dir = Path(kit_run_dir)
        else:
            self.kit_run_dir = Path(str(kwargs.pop("directory", None) or ".")) / str(
                kwargs.pop("project_name", None) or DEFAULT_PROJECT)
            if kwargs.pop("overwrite", False) and not kit_job:
                clear_run_dir(self.kit_run_dir)
            kwargs.update(directory=str(self.kit_run_dir), project_name=TUNER_DIR,
                          overwrite=False)
        self.kit_space = kit_space
        self.kit_metric_names = tuple(kit_metric_names)
        self.kit_on_trial = kit_on_trial
        #: Called at each trial's start and after each epoch (the CLI's live display).
        self.kit_on_epoch = kit_on_epoch
        self._kit_planned: dict[str, int | None] = {}  # the epoch each trial trains to
        self.kit_pruner = kit_pruner
        self.kit_seed = kit_seed
        self.kit_deadline = kit_deadline
        self.kit_trial_budget = kit_trial_budget
        self.kit_training = training
        self.kit_max_time = max_time
        self.kit_workers = int(workers or 0)
        self.kit_trials_per_worker = trials_per_worker
        self.kit_stop_reason: str | None = None
        #: Why the last ``search`` stopped early (``time budget``, ``interrupted by SIGINT``);
        #: None when it ran to its end.
        self.kit_stopped: str | None = None
        self._kit_init_args = (tuple(user_args), {**user_kwargs, "overwrite": False},
                               dict(pruner=pruner, max_time=max_time, training=training,
                                    patience=patience, explosion_factor=explosion_factor))
        self._kit_trials_started = 0
        self._kit_writers: dict[str, Any] = {}
        self._kit_started: dict[str, float] = {}
        self._kit_histories: dict[str, Any] = {}
        self._kit_outcomes: dict[str, tuple[str, str]] = {}
        self._kit_paths: dict[str, str] = {}
        self._kit_summary: Any = None
        with contextlib.redirect_stdout(io.StringIO()) if self.kit_managed \
                else contextlib.nullcontext():  # KerasTuner prints "Reloading Tuner"
            super().__init__(*args, **kwargs)
        if self.kit_seed is None:
            self.kit_seed = int(getattr(self.oracle, "seed", 0) or 0)
        if not self.kit_managed or kit_job:
            if isinstance(self, kt.Hyperband) and pruner not in (None, "none"):
                from kerastune_kit.errors import ConfigError

                raise ConfigError(
                    f"pruner: Hyperband prunes through its own brackets, received "
                    f"{pruner!r}; drop pruner, or use RandomSearch or BayesianOptimization")
            if isinstance(pruner, str):
                pruner = make_pruner(pruner, self.oracle.objective.direction)
            self.kit_pruner = pruner
            if patience:
                self.kit_patience = int(patience)
            if max_time and isinstance(self, kt.Hyperband) and not self._is_worker():
                # The time is the budget: Hyperband's brackets repeat until it is spent.
                self.oracle.hyperband_iterations = TIME_BUDGET_TRIALS
        self._kit_curves: dict[str, dict[int, float]] = {
            r.trial_id: {int(e): v for e, v in r.curve.items() if v is not None}
            for r in read_trial_records(self.project_dir)
        }

    # -- paths
    @property
    def kit_tensorboard_dir(self) -> Path:
        return RunDir(self.kit_run_dir).tensorboard_dir

    def kit_hp_names(self) -> list[str]:
        """The hyperparameters of the leaderboard and HParams columns, in their order."""
        if self.kit_space is not None:
            return list(self.kit_space.hparam_domains())
        return [hp.name for hp in self.oracle.get_space().space
                if not hp.name.startswith(("tuner/", "kit/"))]

    def kit_request_stop(self, reason: str) -> None:
        """Stop at the next epoch end (signal handlers call this)."""
        self.kit_stop_reason = reason

    def _kit_budget_spent(self) -> bool:
        if self.kit_stop_reason is None and self.kit_deadline is not None \
                and time.time() >= self.kit_deadline:
            self.kit_stop_reason = "time budget"
        return self.kit_stop_reason == "time budget"

    def _kit_check_stop(self) -> None:
        if self.kit_stop_reason is None and self.kit_deadline is not None \
                and time.time() >= self.kit_deadline:
            self.kit_stop_reason = "time budget"
        if self.kit_stop_reason is not None:
            raise SearchStopped(self.kit_stop_reason)

    # -- search hooks
    def on_search_begin(self) -> None:
        super().on_search_begin()
        # The oracle answers IDLE while Hyperband waits on other workers' trials, and
        # KerasTuner asks again at once: pace those requests.
        create_trial = self.oracle.create_trial

        def paced_create_trial(tuner_id: str) -> Any:
            trial = create_trial(tuner_id)
            if trial.status == TrialStatus.IDLE:
                time.sleep(0.5)
            return trial

        self.oracle.create_trial = paced_create_trial
        self._kit_summary = SearchSummaryWriter(self.kit_tensorboard_dir)

    def on_search_end(self) -> None:
        super().on_search_end()
        self.kit_close_summary()

    def pre_create_trial(self) -> None:
        super().pre_create_trial()
        self._kit_check_stop()
        if not self._is_worker():  # (the chief does it for its workers)
            rescore_diverged(self.oracle, read_trial_records(self.project_dir))
        if self.kit_trial_budget is not None \
                and self._kit_trials_started >= self.kit_trial_budget:
            raise SearchStopped("worker budget")

    def on_trial_begin(self, trial: Any) -> None:
        super().on_trial_begin(trial)
        self._kit_trials_started += 1
        trial_id = trial.trial_id
        self._kit_started[trial_id] = time.perf_counter()
        self._kit_curves[trial_id] = {}
        # An earlier, unfinished attempt (a killed search) leaves a partial session: replace it.
        session = self.kit_tensorboard_dir / trial_id
        record = record_path(self.get_trial_dir(trial_id))
        if session.exists() and not record.exists():
            shutil.rmtree(session, ignore_errors=True)
        self.hypermodel.seed = trial_seed(self.kit_seed, trial_id)
        names = RunDir(self.kit_run_dir)  # (stage-<k>/<id> in a --refine stage)
        writer = TrialWriter(self.kit_tensorboard_dir, trial_id,
                             session_name=names.session_name(trial_id))
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        writer.write_hparams(values, parent_trial_id=parent and names.session_name(parent),
                             with_parent=isinstance(self, kt.Hyperband),
                             with_baseline=self.kit_with_baseline)
        self._kit_writers[trial_id] = writer
        if not self._is_worker():  # `inspect` shows the trial while it runs
            self.kit_write_leaderboard()

    def _run_and_update_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        # KerasTuner records any exception of a trial as INVALID/FAILED; a write error is
        # the disk's fault, not the trial's: stop the search with the trial unfinished.
        try:
            return super()._run_and_update_trial(trial, *args, **kwargs)
        except kt.errors.FatalError:
            raise
        except Exception as exc:
            error = find_write_error(exc)
            if error is None:
                raise
            raise SearchStopped(f"write error: {error}", write_error=error) from exc

    def _build_and_fit_model(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        from keras_tuner.src.engine import tuner_utils

        from kerastune_kit._saving import save_weights_atomically

        # KerasTuner's per-trial checkpoint, serialized in memory and written in one piece:
        # h5py writing straight to a full disk left state that crashed the interpreter.
        for callback in kwargs.get("callbacks") or []:
            if isinstance(callback, tuner_utils.SaveBestEpoch):
                callback._save_model = functools.partial(_save_checkpoint, callback,
                                                         save_weights_atomically)
        hp = trial.hyperparameters
        model = self._try_build(hp)
        path, why = self.kit_training_path(model, args, kwargs)
        self._kit_paths[trial.trial_id] = path
        if why:
            logger.debug("trial %s trains with model.fit: %s", trial.trial_id, why)
        explosion = {"explosion_factor": self.kit_explosion_factor,
                     "explosion_reference": self._kit_explosion_reference(hp)}
        if path == "fit" and type(self.hypermodel).fit is kt.HyperModel.fit:
            results = fit_with_keras(model, *args, **explosion, **kwargs)
        elif path == "loop" and not isinstance(self.hypermodel, KitHyperModel):
            results = fit_with_loop(model, *args, seed=trial_seed(self.kit_seed or 0,
                                                                  trial.trial_id),
                                    **explosion, **kwargs)
        elif isinstance(self.hypermodel, KitHyperModel):  # our factories' fit (the loop)
            # This trial's rule, for this fit only (a refit after the search has its own).
            saved = {name: getattr(self.hypermodel, name) for name in explosion}
            try:
                for name, value in explosion.items():
                    setattr(self.hypermodel, name, value)
                results = self.hypermodel.fit(hp, model, *args, **kwargs)
            finally:
                for name, value in saved.items():
                    setattr(self.hypermodel, name, value)
        else:  # the user's own HyperModel.fit (trains as it likes, without the rule)
            results = self.hypermodel.fit(hp, model, *args, **kwargs)
        if path == "loop" and not isinstance(self.hypermodel, KitHyperModel) \
                and getattr(results, "divergence", None) is not None \
                and not any(math.isfinite(v) for v in results.history.get("loss", [])):
            raise DivergedTrialError(results)
        from keras_tuner.src import backend as kt_backend
        from keras_tuner.src import utils as kt_utils

        if kt_backend.config.multi_backend():  # as KerasTuner: how to build it for loading
            kt_utils.save_json(self._get_build_config_fname(trial.trial_id),
                               model.get_build_config())
        tuner_utils.validate_trial_results(results, self.oracle.objective, "HyperModel.fit()")
        return results

    def _kit_explosion_reference(self, hp: Any) -> float | None:
        """The explosion rule's reference for a promoted Hyperband trial: its parent's (from
        the parent's record; a chain of promotions keeps the first trial's). None for any
        other trial, or when the parent has none: the trial's own first epoch sets it."""
        parent = hp.values.get("tuner/trial_id") if isinstance(self, kt.Hyperband) else None
        if not parent or not self.kit_explosion_factor:
            return None
        from kerastune_kit.rundir import read_json_object

        value = read_json_object(record_path(self.get_trial_dir(parent))).get(
            "explosion_reference")
        return float(value) if isinstance(value, (int, float)) and not isinstance(
            value, bool) and math.isfinite(value) and value > 0 else None

    def _build_hypermodel(self, hp: Any) -> Any:
        """Build (and, for a promoted Hyperband trial, load its parent's checkpoint) as
        KerasTuner does, creating a user's optimizer slots before the checkpoint loads: the
        moments are then restored too, without Keras's "Skipping variable loading for
        optimizer" warning (our factories build theirs in ``build``)."""
        from keras_tuner.src import backend as kt_backend
        from keras_tuner.src import utils as kt_utils

        model = kt.Tuner._build_hypermodel(self, hp)
        parent = hp.values.get("tuner/trial_id") if isinstance(self, kt.Hyperband) else None
        if parent and kt_backend.config.multi_backend():
            model.build_from_config(kt_utils.load_json(self._get_build_config_fname(parent)))
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not getattr(optimizer, "built", True) \
                and getattr(model, "built", False) and model.trainable_variables:
            optimizer.build(model.trainable_variables)
        if parent:
            model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def kit_training_path(self, model: Any, args: Sequence[Any], kwargs: dict[str, Any]
                          ) -> tuple[str, str | None]:
        """How a trial's ``model`` trains: ``("loop", None)`` in :class:`TrainLoop`, or
        ``("fit", why)`` with ``model.fit`` (``why``: what the loop does not support).

        Our factories always train in the loop (their ``fit``). A user's ``HyperModel`` with
        its own ``fit`` trains there (``fit``). Otherwise ``training`` decides: ``auto`` takes
        the loop when :func:`~kerastune_kit.fit_paths.loop_unsupported` finds nothing in the
        way, ``loop`` insists (a model it cannot train stops the search with the reason),
        ``fit`` always uses ``model.fit``.
        """
        if isinstance(self.hypermodel, KitHyperModel):
            return "loop", None
        if type(self.hypermodel).fit is not kt.HyperModel.fit:
            return "fit", "the HyperModel has its own fit"
        if self.kit_training == "fit":
            return "fit", "training='fit'"
        if getattr(self, "distribution_strategy", None) is not None:
            why = "the tuner has a distribution_strategy"  # (the loop runs outside its scope)
            if self.kit_training == "loop":
                raise kt.errors.FatalError(
                    f"training: the loop cannot train this model ({why}); pass "
                    "training='auto' or training='fit'")
            return "fit", why
        x, y = (list(args) + [None, None])[:2]
        fit_kwargs = {k: v for k, v in kwargs.items() if k not in ("x", "y")}
        why = loop_unsupported(model, kwargs.get("x", x), kwargs.get("y", y), **fit_kwargs)
        if why and self.kit_training == "loop":
            raise kt.errors.FatalError(
                f"training: the loop cannot train this model ({why}); pass training='auto' "
                "(model.fit where the loop cannot) or training='fit'")
        return ("fit", why) if why else ("loop", None)

    #: Epochs without improvement after which a trial stops (``EarlyStopping``); 0: never.
    kit_patience = 0
    #: Whether the HParams experiment has the ``baseline`` column.
    kit_with_baseline = False

    #: Validation samples of the last trial's ``fit`` (the diagnosis's standard error).
    _kit_validation_size: int | None = None

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        objective = self.oracle.objective
        self._kit_validation_size = validation_size(kwargs, args)
        if self.kit_patience and not hasattr(objective, "objectives"):
            from kerastune_kit._backend import keras as _keras

            stopper = _keras().callbacks.EarlyStopping(
                monitor=objective.name, mode=objective.direction,
                patience=int(self.kit_patience))
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), stopper]
        if self.kit_on_epoch is not None:  # its start: the epoch it trains to, from which
            values = trial.hyperparameters.values
            planned = values.get("tuner/epochs") or kwargs.get("epochs")
            self._kit_planned[trial.trial_id] = int(planned) if planned else None
            self.kit_on_epoch(EpochProgress(
                trial.trial_id, int(values.get("tuner/initial_epoch")
                                    or kwargs.get("initial_epoch") or 0),
                self._kit_planned[trial.trial_id], None, objective.name))
        try:
            histories = super().run_trial(trial, *args, **kwargs)
        except DivergedTrialError as exc:
            self._kit_histories[trial.trial_id] = exc.history
            self._kit_outcomes[trial.trial_id] = (TrialStatus.DIVERGED, f"{exc}{_BELOW}")
            return self._kit_stand_in(exc.history)
        history = histories[-1] if histories else None
        self._kit_histories[trial.trial_id] = history
        if history is None or not hasattr(history, "history"):
            return histories
        divergence = getattr(history, "divergence", None)
        series = self.kit_objective_series(history)
        if not any(math.isfinite(v) for v in series):
            # No finite objective at all (for example the validation loss overflowed):
            # never hand NaN/inf to the oracle.
            reason = divergence.reason() if divergence is not None else (
                f"{objective.name} was never finite")
            self._kit_outcomes[trial.trial_id] = (TrialStatus.DIVERGED, f"{reason}{_BELOW}")
            return self._kit_stand_in(history)
        if divergence is not None and trial.trial_id not in self._kit_outcomes:
            self._kit_outcomes[trial.trial_id] = (TrialStatus.DIVERGED, divergence.reason())
        return histories

    def kit_objective_value(self, logs: Any) -> float | None:
        """The objective's value in one epoch's logs (KerasTuner's rule: a multi-objective is
        the sum of its minimized metrics minus its maximized ones); None when absent."""
        objective = self.oracle.objective
        if not logs or not objective.has_value(logs):
            return None
        return float(objective.get_value(logs))

    def kit_objective_series(self, history: Any) -> list[float]:
        """The objective after each epoch of a ``History``.

        Raises:
            keras_tuner.errors.FatalError: The logs have epochs but not the objective (a
                misspelt name, or ``val_…`` without validation data): every trial would be the
                same, so the search stops at the first with the names the logs do have.
        """
        objective = self.oracle.objective
        logged = history.history
        names = [o.name for o in getattr(objective, "objectives", None) or [objective]]
        epochs = max((len(v) for v in logged.values()), default=0)
        missing = [name for name in names if name not in logged]
        if missing and epochs:
            have = ", ".join(sorted(k for k in logged if k != "learning_rate"))
            hint = ("; val_ metrics need validation_data or validation_split"
                    if missing[0].startswith("val_") else "")
            raise kt.errors.FatalError(
                f"objective: {missing[0]!r} is not in the trial's logs, which have {have}; "
                f"pass one of those as objective{hint}")
        if missing:
            return []
        return [float(objective.get_value({name: logged[name][i] for name in names}))
                for i in range(min(len(logged[name]) for name in names))]

    def _kit_stand_in(self, history: Any) -> dict[str, float]:
        """What the oracle gets for a diverged trial: the worst score so far (or, for a
        multi-objective, each metric's worst possible value)."""
        objective = self.oracle.objective
        parts = getattr(objective, "objectives", None)
        if parts:
            top = float(np.finfo(np.float32).max)
            return {o.name: (-top if o.direction == "max" else top) for o in parts}
        return {objective.name: self._kit_worst_score(history)}

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
        super().on_epoch_end(trial, model, epoch, logs=logs)
        trial_id = trial.trial_id
        writer = self._kit_writers.get(trial_id)
        if writer is not None and logs:
            writer.write_epoch(epoch, logs)
            # TrainLoop's gradient health for this epoch (kept out of the Keras logs).
            diagnostics = getattr(getattr(model, "history", None), "diagnostics", {})
            if diagnostics.get(epoch):
                writer.write_diagnostics(epoch, diagnostics[epoch])
        value = self.kit_objective_value(logs)
        if value is not None and math.isfinite(value):
            self._kit_curves.setdefault(trial_id, {})[int(epoch)] = value
        if self.kit_on_epoch is not None:  # epochs numbered from 1, as Keras prints them
            self.kit_on_epoch(EpochProgress(trial_id, int(epoch) + 1,
                                            self._kit_planned.get(trial_id), value,
                                            self.oracle.objective.name))
        if self._is_worker():  # heartbeat: the chief re-queues trials of silent workers
            self.oracle.get_trial(trial_id)
        if self._kit_budget_spent():
            # The time is up: this trial ends here and counts with the epochs it
            # finished (the best model by the deadline); no new trial starts.
            if not model.stop_training:
                model.stop_training = True
                self._kit_outcomes.setdefault(trial_id, (
                    TrialStatus.COMPLETED,
                    f"stopped by the time budget after epoch {int(epoch) + 1}"))
        else:
            self._kit_check_stop()
        if self.kit_pruner is not None and not model.stop_training:
            finished = self._kit_finished_curves()
            finished.discard(trial_id)
            decision = self.kit_pruner.check(trial_id, int(epoch), self._kit_curves,
                                             finished)
            if decision.prune:
                model.stop_training = True
                self._kit_outcomes[trial_id] = (TrialStatus.PRUNED, decision.reason)

    def on_trial_end(self, trial: Any) -> None:
        super().on_trial_end(trial)  # the oracle scores the trial here
        ended = self.oracle.get_trial(trial.trial_id)
        record = self._kit_record(ended)
        writer = self._kit_writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.write_result(record, objective=self.oracle.objective.name,
                                direction=self.oracle.objective.direction)
        write_json_atomic(record_path(self.get_trial_dir(trial.trial_id)),
                          record.to_json())
        self.kit_write_summary(self.kit_write_leaderboard())
        if self.kit_on_trial is not None:
            self.kit_on_trial(record)

    def kit_abandon_running(self) -> None:
        """Close the writers of trials left unfinished by a stop (all of them, even when
        one fails to flush; the first error is raised afterwards)."""
        first: BaseException | None = None
        writers = [*self._kit_writers.values()]
        self._kit_writers.clear()
        for close in [writer.close for writer in writers] + [self.kit_close_summary]:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - re-raised below
                first = first or exc
        if first is not None:
            raise first

    def kit_requeue_write_failures(self) -> list[str]:
        """Put trials that failed only because a file could not be written (no space,
        read-only, no permission) back in the oracle's retry queue, so ``--resume`` runs
        them again instead of keeping them FAILED. Returns their ids."""
        oracle = self.oracle
        requeued = []
        for trial_id, trial in oracle.trials.items():
            if str(trial.status) not in FAILED_STATUSES or not trial.message \
                    or trial_id in oracle._retry_queue \
                    or errno_in_text(trial.message) is None:
                continue
            trial.message = None
            if trial_id in oracle.end_order:
                oracle.end_order.remove(trial_id)
            oracle._retry_queue.append(trial_id)
            record = record_path(self.get_trial_dir(trial_id))
            record.unlink(missing_ok=True)
            requeued.append(trial_id)
        if requeued:
            oracle._retry_queue.sort(reverse=True)  # popped from the end: lowest id first
            oracle.save()
        return requeued

    def kit_write_summary(self, records: list[TrialRecord], importance: Any = None) -> None:
        """The TensorBoard text panels with the leaderboard (its knob columns by
        ``importance`` when given) and the best configuration (step = finished trials)."""
        if self._kit_summary is not None:
            self._kit_summary.write_leaderboard(
                records, self.kit_hp_names(), objective=self.oracle.objective.name,
                step=sum(r.status not in (TrialStatus.RUNNING, TrialStatus.IDLE) for r in records),
                importance=importance)

    def kit_close_summary(self) -> None:
        if self._kit_summary is not None:
            self._kit_summary.close()
            self._kit_summary = None

    def kit_write_final_summary(self) -> list[TrialRecord]:
        """Leaderboard, leaderboard panel and hyperparameter importance of the finished
        search (written once, by the process that writes the results files); the HParams
        dashboard then ticks the most important knobs
        (:func:`kerastune_kit.tensorboard.show_first`)."""
        from kerastune_kit.importance import hyperparameter_importance, leading_knobs
        from kerastune_kit.tensorboard import KNOBS_SHOWN, show_first

        rescore_diverged(self.oracle, read_trial_records(self.project_dir))
        records = self.kit_write_leaderboard()
        self._kit_summary = SearchSummaryWriter(self.kit_tensorboard_dir)
        try:
            step = sum(r.status not in (TrialStatus.RUNNING, TrialStatus.IDLE) for r in records)
            importance = hyperparameter_importance(records, self.kit_hp_names(),
                                                   direction=self.oracle.objective.direction)
            self.kit_write_summary(records, importance)
            self._kit_summary.write_importance(importance, step=step)
            self._kit_write_contour(records, importance, step=step)
        finally:
            self.kit_close_summary()
        show_first(self.kit_tensorboard_dir,
                   leading_knobs(self.kit_hp_names(), KNOBS_SHOWN, importance=importance,
                                 records=records))
        return records

    def _kit_write_contour(self, records: list[TrialRecord], importance: Any, *,
                           step: int) -> None:
        """The ``search/contour`` image: the objective over the two most important knobs
        (:mod:`kerastune_kit.contour`); nothing when no two knobs can be drawn yet."""
        from kerastune_kit.contour import build_contour, choose_knobs, knob_scales
        from kerastune_kit.errors import ConfigError

        objective = self.oracle.objective
        try:
            names = self.kit_hp_names()
            x_name, y_name = choose_knobs(records, names, importance.values)
            contour = build_contour(records, x_name, y_name, objective=objective.name,
                                    direction=objective.direction, hp_names=names,
                                    scales=knob_scales(self.oracle.hyperparameters.get_config()))
        except ConfigError as exc:  # too few trials, nothing varied: no image yet
            logger.debug("no contour image: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a chart must not fail a finished search
            logger.warning("no contour image in TensorBoard: %s", exc)
            return
        self._kit_summary.write_contour(contour, step=step)

    # -- the public search (KerasTuner's signature)
    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        """Run the search, as KerasTuner's ``search`` does, and write the run directory.

        Takes ``model.fit``'s arguments: ``x``/``y`` as NumPy arrays, dicts of arrays (named
        inputs), lists of arrays (several inputs or outputs), a batched ``tf.data.Dataset``,
        a ``keras.utils.PyDataset`` or a generator (a finite one is read into memory once:
        every trial needs the data), with ``epochs``, ``validation_data`` or
        ``validation_split``, ``batch_size``, ``callbacks``, ``class_weight``,
        ``sample_weight`` and the rest.

        Before the first trial the data's fingerprint (shapes, dtypes, a hash of a sample) and
        the hyperparameters' names are written to ``RUN/run.json``; a search continued in the
        same directory (``overwrite=False``, KerasTuner's default) refuses other data, or a
        hypermodel that now declares another space (:meth:`kit_check_space`). After
        the last trial (or the time budget, or SIGINT/SIGTERM: the running trial stays
        unfinished and a new ``search`` call continues it) the leaderboard,
        ``best_hyperparameters.json``, ``best_model.keras`` and the TensorBoard summary are
        written. ``self.kit_stopped`` says why it stopped early (None: it ran to its end).

        Raises:
            RunDirError: The run directory holds another search's data or space, or another
                live search holds its lock.
            WriteError: The run directory cannot be written (no space, read-only, ...).
        """
        if self.kit_managed:
            return super().search(*fit_args, **fit_kwargs)
        from kerastune_kit.rundir import RunDirLock
        from kerastune_kit.search_data import check_search_data, reusable_data

        started = time.time()
        self.kit_deadline = started + self.kit_max_time if self.kit_max_time else None
        self.kit_stop_reason = self.kit_stopped = None  # (a second call starts a new budget)
        fit_args, fit_kwargs = reusable_data(fit_args, fit_kwargs)
        check_search_data(tuple(fit_args), fit_kwargs)
        fit_kwargs.setdefault("epochs", getattr(self.oracle, "max_epochs", None) or 1)
        processes = bool(self.kit_workers or self.kit_trials_per_worker)
        job = self._kit_job(fit_args, fit_kwargs) if processes else None  # (checked first)
        with RunDirLock(self.kit_run_dir, action="search"), \
                write_errors(self.kit_run_dir, action="search"):
            self.kit_begin_run(fit_args, fit_kwargs)
            if job is not None:
                reason = self._kit_search_in_processes(*job)
            else:
                reason = self.kit_search_here(fit_args, fit_kwargs)
            self.kit_stopped = None if reason == "finished" else reason
            if self.kit_workers or self.kit_trials_per_worker:
                self.reload()  # the workers' trials, from the oracle's saved state
            _, best = self.kit_write_results()
        if best is None and self.kit_stopped == "time budget":
            from kerastune_kit.errors import ConfigError

            raise ConfigError(
                f"max_time: the budget of {self.kit_max_time:g}s ran out before the first "
                "epoch of the first trial ended; pass a longer max_time (search() again "
                "continues where this one stopped)")
        return None

    def kit_best_trials(self, num_trials: int = 1) -> list[Any]:
        """The best finished trials in the leaderboard's order (:func:`kerastune_kit.results.rank`:
        by score, ties to the later best epoch, then the lower id; diverged trials never).
        KerasTuner orders ties by insertion and does not know the best epochs of our trials,
        so ``get_best_models`` and ``best_model.keras`` could differ on a tie."""
        from kerastune_kit.results import is_ranked

        records = rank(read_trial_records(self.project_dir), self.oracle.objective.direction)
        ids = [r.trial_id for r in records if is_ranked(r)][:num_trials]
        if not ids:  # no records (a run from before them): KerasTuner's own order
            return self.oracle.get_best_trials(num_trials)
        return [self.oracle.get_trial(trial_id) for trial_id in ids]

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[Any]:
        """KerasTuner's ``get_best_hyperparameters``, in the leaderboard's order
        (:meth:`kit_best_trials`)."""
        return [t.hyperparameters for t in self.kit_best_trials(num_trials)]

    def get_best_models(self, num_models: int = 1) -> list[Any]:
        """KerasTuner's ``get_best_models`` (each rebuilt and loaded from its best epoch's
        checkpoint), in the leaderboard's order (:meth:`kit_best_trials`)."""
        return [self.load_model(trial) for trial in self.kit_best_trials(num_models)]

    def kit_search_here(self, fit_args: Sequence[Any], fit_kwargs: dict[str, Any]) -> str:
        """KerasTuner's search loop in this process; returns why it ended (``finished``,
        ``time budget``, ``worker budget``, ``interrupted by SIGINT``)."""
        from kerastune_kit.rundir import write_error
        from kerastune_kit.stopping import startup_objects_frozen, stop_on_signals

        with startup_objects_frozen(), stop_on_signals(self.kit_request_stop):
            try:
                super().search(*fit_args, **fit_kwargs)
            except SearchStopped as exc:
                if exc.write_error is None:
                    self.kit_abandon_running()
                    self.kit_write_leaderboard()
                    return str(exc.reason)
                with contextlib.suppress(Exception):
                    self.kit_abandon_running()
                raise write_error(exc.write_error, self.kit_run_dir, action="search") from None
        return "finished"

    def _kit_job(self, fit_args: Sequence[Any], fit_kwargs: dict[str, Any]
                 ) -> tuple[TunerJob, list[Any]]:
        """The search as a job for worker processes, and the callbacks, checked to pickle and
        to be importable there (:func:`check_main_is_importable`).

        Raises:
            ConfigError: Something a worker process could not receive or rebuild.
        """
        import pickle

        from kerastune_kit.errors import ConfigError

        fit_kwargs = dict(fit_kwargs)
        callbacks = list(fit_kwargs.pop("callbacks", None) or [])
        job = TunerJob(type(self), *self._kit_init_args, fit_args=tuple(fit_args),
                       fit_kwargs=fit_kwargs)
        option = "workers" if self.kit_workers else "trials_per_worker"
        for what, value, fix in (
                ("the hypermodel or the tuner's arguments",
                 TunerJob(type(self), *self._kit_init_args, fit_args=(), fit_kwargs={}),
                 "define the build function (or HyperModel class) at a module's top level"),
                ("the data", (tuple(fit_args), fit_kwargs),
                 "pass arrays, or a PyDataset, instead of a tf.data.Dataset or generator"),
                ("the callbacks", callbacks, "pass callbacks that pickle")):
            try:
                blob = pickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure
                raise ConfigError(
                    f"{option}: {what} cannot be sent to a worker process "
                    f"({type(exc).__name__}: {_last_line(str(exc))[:120]}); {fix}, or pass "
                    "workers=0 and trials_per_worker=None") from None
            if b"__main__" in blob:
                check_main_is_importable(option)
        return job, callbacks

    def _kit_search_in_processes(self, job: TunerJob, callbacks: list[Any]) -> str:
        """``workers`` trials at once in worker processes served by KerasTuner's chief on
        127.0.0.1, or (``trials_per_worker`` alone) one process at a time, replaced every that
        many trials; each rebuilds this tuner from its pickled constructor arguments."""
        self.save()
        if self.kit_workers:
            from kerastune_kit.distributed import free_port, serve_and_wait
            from kerastune_kit.stopping import stop_on_signals

            stop: list[str] = []
            with stop_on_signals(stop.append):
                reason = serve_and_wait(self, "127.0.0.1", free_port(), job=job,
                                        n_workers=self.kit_workers, callbacks=callbacks,
                                        on_trial=self.kit_on_trial, deadline=self.kit_deadline,
                                        stop_requested=lambda: bool(stop))
            self.save()
            return stop[0] if stop else reason
        from kerastune_kit.workers import search_in_workers

        return search_in_workers(job, trials_per_worker=int(self.kit_trials_per_worker or 0),
                                 callbacks=callbacks, on_trial=self.kit_on_trial,
                                 deadline=self.kit_deadline)

    def kit_begin_run(self, fit_args: Sequence[Any], fit_kwargs: dict[str, Any]) -> None:
        """Check a continued search's data and space, write ``run.json`` and the HParams
        experiment (once)."""
        from kerastune_kit import __version__
        from kerastune_kit.errors import RunDirError
        from kerastune_kit.search_data import data_fingerprint
        from kerastune_kit.tensorboard import write_experiment_config_once

        run = RunDir(self.kit_run_dir)
        marker = run.read_marker()
        data = data_fingerprint(tuple(fit_args), fit_kwargs)
        fix = "pass the same, or overwrite=True to start a new search there"
        if marker.get("data_fingerprint") not in (None, data["digest"]):
            before = marker.get("dataset", "?")
            now = ("the same shapes and dtypes, other values" if before == data["summary"]
                   else f"now {data['summary']}")
            raise RunDirError(
                f"data: the data passed to search() differs from the data the search in "
                f"'{self.kit_run_dir}' started with ({before}; {now}); {fix}")
        self.kit_check_space()
        objective = self.oracle.objective
        marker.update(version=__version__, dataset=data["summary"],
                      data_fingerprint=data["digest"], hyperparameters=self.kit_hp_names(),
                      objective=objective.name, direction=objective.direction,
                      tuner=type(self).__name__, training=self.kit_training,
                      hypermodel=_hypermodel_name(self.hypermodel))
        run.write_json(run.marker, marker)
        write_experiment_config_once(run.tensorboard_dir, self.kit_domains(), self.kit_metrics(),
                                     objective=objective.name, direction=objective.direction,
                                     with_parent=isinstance(self, kt.Hyperband),
                                     with_baseline=self.kit_with_baseline)

    def kit_check_space(self) -> None:
        """Refuse to continue a search whose hypermodel now declares another space.

        The oracle keeps the space the search started with (``oracle.json``); KerasTuner would
        go on drawing from it whatever the build function says now. Here the hypermodel is
        built again with the default values, then with a recorded trial's values for each
        hyperparameter still unaccounted for (one behind an ``if``, as ``rate`` under
        ``if hp.Boolean("dropout")``), at most 12 builds; every hyperparameter declared must
        match the saved one's configuration, and every saved one must still be declared.

        Raises:
            RunDirError: Naming the first hyperparameter that differs, was added or is gone.
        """
        from kerastune_kit._backend import keras as _keras
        from kerastune_kit.errors import RunDirError

        saved = {h.name: h for h in self.oracle.get_space().space
                 if not h.name.startswith(("tuner/", "kit/"))}
        trials = [t for t in self.oracle.trials.values() if t.hyperparameters.values]
        if not trials:
            return
        declared: dict[str, Any] = {}
        queue: list[dict[str, Any]] = [{}]
        tried: list[dict[str, Any]] = []
        while queue and len(tried) < 12:
            values = queue.pop(0)
            tried.append(values)
            hp = kt.HyperParameters()
            hp.values.update({k: v for k, v in values.items()
                              if not k.startswith(("tuner/", "kit/"))})
            try:
                self.hypermodel.build(hp)
            except Exception:  # noqa: BLE001 - a build that fails for these values
                continue        # (the trial failed the same way) tells nothing here
            finally:
                _keras().backend.clear_session()
            for h in hp.space:
                declared.setdefault(h.name, h)
            missing = [name for name in saved if name not in declared]
            if missing and not queue:
                queue.extend(t.hyperparameters.values for t in trials[:50]
                             if missing[0] in t.hyperparameters.values
                             and t.hyperparameters.values not in tried)
                queue[1:] = []
        fix = ("pass the same hypermodel, or overwrite=True to start a new search in "
               f"'{self.kit_run_dir}'")

        def describe(h: Any) -> str:
            config = {k: v for k, v in h.get_config().items()
                      if k not in ("name", "conditions") and v is not None}
            return f"{type(h).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items())})"

        for name, h in declared.items():
            if name.startswith(("tuner/", "kit/")):
                continue
            if name not in saved:
                raise RunDirError(f"space: the hypermodel now declares {name!r} "
                                  f"({describe(h)}), which the search did not start with; {fix}")
            before = json.dumps(saved[name].get_config(), sort_keys=True, default=str)
            if json.dumps(h.get_config(), sort_keys=True, default=str) != before:
                raise RunDirError(f"space: {name!r} was {describe(saved[name])} when the search "
                                  f"started, and the hypermodel now declares {describe(h)}; "
                                  f"{fix}")
        gone = [name for name in saved if name not in declared]
        if gone and len(tried) < 12:
            raise RunDirError(f"space: the hypermodel no longer declares {gone[0]!r}, which the "
                              f"search started with; {fix}")

    def kit_domains(self) -> dict[str, Any]:
        """Each hyperparameter's domain (for the HParams experiment)."""
        if self.kit_space is not None:
            return self.kit_space.hparam_domains()
        return {hp.name: domain_of(hp) for hp in self.oracle.get_space().space
                if not hp.name.startswith(("tuner/", "kit/"))}

    def kit_metrics(self) -> tuple[str, ...]:
        """The metric names trials report (without ``val_``): the objective's and ``loss``."""
        if self.kit_metric_names:
            return self.kit_metric_names
        names = ["loss"]
        objectives = getattr(self.oracle.objective, "objectives", None) or [self.oracle.objective]
        for objective in objectives:
            name = objective.name.removeprefix("val_")
            if name not in names:
                names.append(name)
        return tuple(names)

    def kit_write_results(self) -> tuple[list[TrialRecord], TrialRecord | None]:
        """The finished search's leaderboard, TensorBoard summary, ``best_hyperparameters.json``
        and ``best_model.keras`` (raw inputs in: our factories' models come behind the data's
        preprocessing). Returns the records, best first, and the best."""
        from kerastune_kit._saving import save_model_atomically
        from kerastune_kit.results import best_of

        records = self.kit_write_final_summary()
        best = best_of(records, self.oracle.objective.direction)
        if best is None:
            return records, None
        model = self.load_model(self.oracle.get_trial(best.trial_id))
        if isinstance(self.hypermodel, KitHyperModel):
            card = model_card(self.hypermodel)
            model = self.hypermodel.inference_model(model)
        else:
            card = user_model_card(model)
        run = RunDir(self.kit_run_dir)
        write_json_atomic(run.best_hyperparameters, {
            "trial_id": best.trial_id, "objective": self.oracle.objective.name,
            "score": best.score, "best_epoch": best.best_epoch_number, "status": best.status,
            "hyperparameters": best.hyperparameters, "model_card": card,
        })
        save_model_atomically(model, run.best_model)
        return records, best

    # -- records
    def _kit_finished_curves(self) -> set[str]:
        """Load the curves of finished trials (other workers' too); return their ids."""
        finished = set()
        for record in read_trial_records(self.project_dir):
            finished.add(record.trial_id)
            self._kit_curves[record.trial_id] = {
                int(e): v for e, v in record.curve.items() if v is not None}
        return finished

    def _kit_worst_score(self, history: Any) -> float:
        direction = self.oracle.objective.direction
        values = [r.score for r in read_trial_records(self.project_dir)
                  if r.status in (TrialStatus.COMPLETED, TrialStatus.PRUNED) and r.score is not None
                  and math.isfinite(r.score)]
        start = (getattr(history, "initial_logs", None) or {}).get(
            self.oracle.objective.name.removeprefix("val_"))
        if start is not None and math.isfinite(start):
            values.append(float(start))
        if not values:
            return 0.0 if direction == "max" else float(np.finfo(np.float32).max)
        return float(min(values) if direction == "max" else max(values))

    def _kit_record(self, trial: Any) -> TrialRecord:
        values = dict(trial.hyperparameters.values)
        trial_id = trial.trial_id
        history = self._kit_histories.pop(trial_id, None)
        started = self._kit_started.pop(trial_id, time.perf_counter())
        objective = self.oracle.objective
        record = TrialRecord(
            trial_id=trial_id, status=str(trial.status),
            wall_time_s=round(time.perf_counter() - started, 3),
            parent_trial_id=values.get("tuner/trial_id"),
            initial_epoch=int(values.get("tuner/initial_epoch", 0)),
            seed=trial_seed(self.kit_seed, trial_id),
            curve={str(e): v for e, v in sorted(self._kit_curves.get(trial_id, {}).items())},
            hyperparameters={k: _plain(v) for k, v in values.items()
                             if not k.startswith(("tuner/", "kit/"))},
            baseline=values.get(BASELINE_KEY),
            training=self._kit_paths.pop(trial_id, None),
        )
        if trial.status == TrialStatus.COMPLETED and trial.score is not None:
            record.score = float(trial.score)
        if history is not None:
            try:
                series = self.kit_objective_series(history)
            except kt.errors.FatalError:
                series = []
            record.epochs = record.initial_epoch + len(series)
            finite = [(v, i) for i, v in enumerate(series) if math.isfinite(v)]
            if finite:
                best = (max if objective.direction == "max" else min)(finite)
                record.best_epoch = record.initial_epoch + best[1]
            record.start_optimizer_step = getattr(history, "initial_iterations", None)
            record.explosion_reference = getattr(history, "explosion_reference", None)
            start = getattr(history, "initial_logs", None)
            if start is not None:  # (a validation pass: its names have no val_ prefix)
                record.start_score = self.kit_objective_value(
                    {**{f"val_{k}": v for k, v in start.items()}, **start})
        if trial.message:
            record.message = _last_line(trial.message)
        outcome = self._kit_outcomes.pop(trial_id, None)
        if outcome is not None and trial.status == TrialStatus.COMPLETED:
            record.status, record.message = outcome
        if record.status == TrialStatus.DIVERGED:
            record.score = None  # the oracle's stand-in is not a score to show
        if history is not None and record.best_epoch is not None and is_ranked(record):
            record.diagnosis = self._kit_diagnosis(history, record)
        return record

    def _kit_diagnosis(self, history: Any, record: TrialRecord) -> str | None:
        """Overfitting or underfitting at the trial's best epoch (:mod:`~kerastune_kit.diagnosis`),
        compared with the best score of the trials finished so far."""
        objective = self.oracle.objective
        if hasattr(objective, "objectives"):  # a multi-objective: no one train counterpart
            return None
        scores = [r.score for r in read_trial_records(self.project_dir)
                  if is_ranked(r) and r.trial_id != record.trial_id] + [record.score]
        best = (max if objective.direction == "max" else min)(scores)
        found = diagnose_history(
            getattr(history, "history", None) or {}, record.best_epoch - record.initial_epoch,
            objective.name, direction=objective.direction,
            task=getattr(getattr(self.hypermodel, "head", None), "task", None),
            validation_size=self._kit_validation_size, best_score=best)
        return None if found is None else found.text

    def kit_records(self) -> list[TrialRecord]:
        saved = {r.trial_id: r for r in read_trial_records(self.project_dir)}
        trials = {} if self._is_worker() else self.oracle.trials  # workers see the disk
        for trial_id, trial in trials.items():
            if trial_id not in saved:
                saved[trial_id] = TrialRecord(
                    trial_id=trial_id, status=str(trial.status),
                    message=_last_line(trial.message) if trial.message else None,
                    hyperparameters={k: _plain(v) for k, v in
                                     trial.hyperparameters.values.items()
                                     if not k.startswith(("tuner/", "kit/"))},
                    baseline=trial.hyperparameters.values.get(BASELINE_KEY))
        return rank(saved.values(), self.oracle.objective.direction)

    def kit_write_leaderboard(self) -> list[TrialRecord]:
        records = self.kit_records()
        write_leaderboard(RunDir(self.kit_run_dir).leaderboard, records, self.kit_hp_names())
        return records

class BaselinesFirst:
    """Oracle mixin: the first trials are the popular designs (``kit_baselines``), then
    the oracle's own proposals.

    Each design's values come from :func:`kerastune_kit.designs.design_values` (the
    user's overrides apply) and carry the :data:`~kerastune_kit.designs.BASELINE_KEY`
    marker, so the leaderboard and TensorBoard show them as baselines. A design already
    started (before a ``--resume`` too) or equal to a configuration already tried is
    skipped. The marker takes no part in the duplicate check.
    """

    kit_baselines: tuple[Any, ...] = ()
    #: ``values -> multiply-accumulates per sample`` (the factory's ``cost``) and the
    #: limit random proposals stay under (see :func:`cost_limit`); None: no limit.
    kit_cost: Callable[[dict[str, Any]], float] | None = None
    kit_cost_limit: float | None = None
    kit_cost_tries = 20

    def _random_values(self) -> dict[str, Any] | None:
        """KerasTuner's random values, redrawn (up to ``kit_cost_tries`` times, then the
        cheapest draw) while the network would cost more than ``kit_cost_limit``: one
        random corner of the space (three 3x3 convolutions of 117 filters at 28x28) took
        86 s an epoch on one core, half a 170 s budget, where LeNet takes 2.5 s."""
        values = super()._random_values()
        if values is None or self.kit_cost is None or self.kit_cost_limit is None:
            return values
        best, best_cost = values, self.kit_cost(values)
        for _ in range(self.kit_cost_tries):
            if best_cost <= self.kit_cost_limit:
                break
            values = super()._random_values()
            if values is None:
                break
            cost = self.kit_cost(values)
            if cost < best_cost:
                best, best_cost = values, cost
        return best

    def _kit_next_baseline(self) -> dict[str, Any] | None:
        if not self.kit_baselines or not self.hyperparameters.space:
            return None
        started = {t.hyperparameters.values.get(BASELINE_KEY) for t in self.trials.values()}
        for design in self.kit_baselines:
            if design.name in started:
                continue
            values = design_values(self.hyperparameters, design)
            if self._duplicate(values):
                continue
            return {**values, BASELINE_KEY: design.name}
        return None

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        values = self._kit_next_baseline()
        if values is not None:
            return {"status": TrialStatus.RUNNING, "values": self._kit_baseline_values(values)}
        return self._kit_populate_space(trial_id)

    def _kit_populate_space(self, trial_id: str) -> dict[str, Any]:
        """The oracle's own proposal (subclasses override this, not populate_space)."""
        return super().populate_space(trial_id)

    def _kit_baseline_values(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    def _compute_values_hash(self, values: dict[str, Any]) -> str:
        values = {k: v for k, v in values.items() if k != BASELINE_KEY}
        return super()._compute_values_hash(values)

class KitRandomOracle(BaselinesFirst, kt.oracles.RandomSearchOracle):
    """KerasTuner's random search oracle, starting with the popular designs."""

class KitHyperbandOracle(BaselinesFirst, kt.oracles.HyperbandOracle):
    """KerasTuner's Hyperband oracle, which still trains the best to ``max_epochs`` when the
    search space runs out.

    KerasTuner stops the whole search when a bracket's first round cannot be filled with
    new configurations: with 6 configurations and a bracket of 9 one-epoch trials, the
    best model ended with 1 of 9 epochs. Here the bracket continues with the
    configurations it has: round ``r`` keeps ``ceil(n / factor**r)`` of its ``n``, so
    successive halving still promotes the best to ``max_epochs`` (Li et al., 2018).
    ``kit_exhausted`` records that the space ran out (saved in ``oracle.json``).
    """

    kit_exhausted = False
    kit_diverged: set[str] = set()  # set by rescore_diverged before each new trial

    def _kit_baseline_values(self, values: dict[str, Any]) -> dict[str, Any]:
        # A baseline trains to max_epochs at once, outside the brackets: it is the
        # reference every bracket's survivors must beat, never promoted or halved.
        return {**values, "tuner/epochs": self.max_epochs, "tuner/initial_epoch": 0}

    def _kit_populate_space(self, trial_id: str) -> dict[str, Any]:
        # A diverged trial is never promoted, even when its whole round diverged (its
        # stand-in score would otherwise win, and it has no checkpoint to continue from).
        hidden = [(t, t.status) for t_id, t in self.trials.items()
                  if t_id in self.kit_diverged and t.status == TrialStatus.COMPLETED]
        for trial, _ in hidden:
            trial.status = TrialStatus.FAILED
        try:
            return kt.oracles.HyperbandOracle.populate_space(self, trial_id)
        finally:
            for trial, status in hidden:
                trial.status = status

    def _random_trial(self, trial_id: str, bracket: dict[str, Any]) -> dict[str, Any]:
        result = super()._random_trial(trial_id, bracket)
        if result.get("status") != TrialStatus.STOPPED:
            return result
        self.kit_exhausted = True
        if not bracket["rounds"][0] or "kit_size" in bracket:
            return result  # nothing new to halve: every configuration has been tried
        bracket["kit_size"] = len(bracket["rounds"][0])
        return self._kit_populate_space(trial_id)

    def _get_size(self, bracket_num: int, round_num: int) -> int:
        size = super()._get_size(bracket_num, round_num)
        for bracket in self._brackets:
            if bracket["bracket_num"] == bracket_num and "kit_size" in bracket:
                return min(size, max(1, math.ceil(bracket["kit_size"]
                                                  / self.factor ** round_num)))
        return size

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "kit_exhausted": self.kit_exhausted}

class Hyperband(KitTunerMixin, kt.Hyperband):
    """KerasTuner's ``Hyperband`` (Li et al., 2018) with kerastune_kit's records, TensorBoard,
    pruning, budgets and training loop; takes KerasTuner's arguments (``hypermodel``,
    ``objective``, ``max_epochs``, ``factor``, ``hyperband_iterations``, ``seed``,
    ``hyperparameters``, ``directory``, ``project_name``, ``overwrite``, ...).

    The run directory is ``directory/project_name`` (KerasTuner's project is its ``tuner/``).
    A bracket that runs out of new configurations still trains the best to ``max_epochs``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_oracle_class(self, kt.oracles.HyperbandOracle, KitHyperbandOracle)


class KitBOHBOracle(BOHBMixin, KitHyperbandOracle):
    """Hyperband whose new configurations come from a TPE model of the finished trials
    at the highest budget with enough of them (BOHB: Falkner, Klein & Hutter, 2018),
    after the popular designs; see :class:`kerastune_kit.tpe.BOHBMixin`."""


class BOHB(Hyperband):
    """BOHB (Falkner, Klein & Hutter, 2018): Hyperband's brackets with new configurations
    from a TPE model of the finished trials (Optuna's ``TPESampler``; needs the ``[tpe]``
    extra); :class:`Hyperband`'s arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from kerastune_kit.tpe import require_optuna

        require_optuna()  # fail before the first trial, not at the first proposal
        super().__init__(*args, **kwargs)
        _use_oracle_class(self, KitHyperbandOracle, KitBOHBOracle)


class KitTPEOracle(BaselinesFirst, TPEOracle):
    """Optuna's TPE sampler behind KerasTuner's oracle interface, starting with the
    popular designs; see :class:`kerastune_kit.tpe.TPEOracle`."""


class TPE(KitTunerMixin, kt.Tuner):
    """Tree-structured Parzen estimator search (Bergstra et al., 2011; Optuna's
    ``TPESampler``, needs the ``[tpe]`` extra) with kerastune_kit's records, TensorBoard,
    pruning and budgets; :class:`RandomSearch`'s arguments.
    """

    def __init__(self, hypermodel: Any = None, objective: Any = None,
                 max_trials: int | None = 10, seed: int | None = None,
                 hyperparameters: Any = None, tune_new_entries: bool = True,
                 allow_new_entries: bool = True, max_retries_per_trial: int = 0,
                 max_consecutive_failed_trials: int = 3, **kwargs: Any) -> None:
        self._kit_user_call = ((), {
            "hypermodel": hypermodel, "objective": objective, "max_trials": max_trials,
            "seed": seed, "hyperparameters": hyperparameters,
            "tune_new_entries": tune_new_entries, "allow_new_entries": allow_new_entries,
            "max_retries_per_trial": max_retries_per_trial,
            "max_consecutive_failed_trials": max_consecutive_failed_trials,
            **{k: v for k, v in kwargs.items() if not k.startswith("kit_")
               and k not in ("pruner", "max_time", "workers", "trials_per_worker",
                             "training", "patience", "explosion_factor")}})
        oracle = KitTPEOracle(objective=objective, max_trials=max_trials, seed=seed,
                              hyperparameters=hyperparameters,
                              tune_new_entries=tune_new_entries,
                              allow_new_entries=allow_new_entries,
                              max_retries_per_trial=max_retries_per_trial,
                              max_consecutive_failed_trials=max_consecutive_failed_trials)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)


class KitBayesianOracle(BaselinesFirst, kt.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian oracle, which never proposes a configuration twice.

    Over a discrete space the Gaussian process's best proposal is often one already
    tried; KerasTuner runs it again, so a 10-trial search of a 6-point space ran 10 trials
    of 6 configurations. Here a repeated proposal is replaced by an untried random one,
    and the search stops, saying so, when none is left (``kit_exhausted``).
    """

    kit_exhausted = False
    #: Random candidates the acquisition is evaluated on in one vectorized call, and how
    #: many of the best are refined with L-BFGS-B (BoTorch's ``optimize_acqf`` does the
    #: same with ``raw_samples`` and ``num_restarts``).
    kit_raw_samples = 2048
    kit_restarts = 5

    def _kit_populate_space(self, trial_id: str) -> dict[str, Any]:
        completed = [t for t in self.trials.values() if t.status == TrialStatus.COMPLETED]
        initial = self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)
        if len(completed) < initial:
            result = self._random_populate_space()
        else:
            result = {"status": TrialStatus.RUNNING, "values": self._kit_propose()}
        values = result.get("values")
        if result.get("status") == TrialStatus.RUNNING and values and self._duplicate(values):
            values = self._random_values()
            result = ({"status": TrialStatus.RUNNING, "values": values} if values
                      else {"status": TrialStatus.STOPPED, "values": None})
        if result.get("status") == TrialStatus.STOPPED:
            self.kit_exhausted = True
        return result

    def _kit_propose(self) -> dict[str, Any]:
        """The lower confidence bound's minimum (KerasTuner's acquisition, ``mu - beta *
        sigma`` on the sign-flipped objective), found cheaply.

        KerasTuner runs L-BFGS-B from 50 random starts with finite-difference gradients,
        one ``predict`` per point: about 5 s per proposal in the 16-knob space. Here the
        Gaussian process predicts 2048 random candidates in one call, and only the best 5
        are refined with L-BFGS-B: well under a second, and at least as good a minimum.
        """
        import warnings

        import scipy.optimize

        x, y = self._vectorize_trials()
        x = np.nan_to_num(x, posinf=0, neginf=0)
        y = np.nan_to_num(y, posinf=0, neginf=0)
        with warnings.catch_warnings():  # scikit-learn's kernel-bound ConvergenceWarning
            warnings.simplefilter("ignore")
            self.gpr.fit(x, y)
        bounds = self._get_hp_bounds()
        candidates = self._random_state.uniform(
            bounds[:, 0], bounds[:, 1], size=(self.kit_raw_samples, bounds.shape[0]))
        mu, sigma = self.gpr.predict(candidates, return_std=True)
        scores = np.ravel(mu) - self.beta * np.ravel(sigma)
        order = np.argsort(scores)
        best_x, best = candidates[order[0]], float(scores[order[0]])

        def bound(point: np.ndarray) -> float:
            mean, std = self.gpr.predict(point.reshape(1, -1), return_std=True)
            return float(np.ravel(mean)[0] - self.beta * np.ravel(std)[0])

        for start in candidates[order[: self.kit_restarts]]:
            found = scipy.optimize.minimize(bound, x0=start, bounds=bounds,
                                            method="L-BFGS-B")
            if float(np.ravel(found.fun)[0]) < best:
                best_x, best = found.x, float(np.ravel(found.fun)[0])
        # L-BFGS-B may stop on the upper bound, and KerasTuner maps a probability of
        # exactly 1 one step past an Int's max_value (units_0=513 of 16..512).
        best_x = np.clip(best_x, bounds[:, 0], np.nextafter(bounds[:, 1], bounds[:, 0]))
        return self._vector_to_values(best_x)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "kit_exhausted": self.kit_exhausted}


class BayesianOptimization(KitTunerMixin, kt.BayesianOptimization):
    """KerasTuner's ``BayesianOptimization`` (a Gaussian process with a lower confidence bound
    acquisition; Snoek et al., 2012) with kerastune_kit's records, TensorBoard, pruning,
    budgets and training loop; KerasTuner's arguments (``max_trials``, ``num_initial_points``,
    ``alpha``, ``beta``, ``seed``, ...). It never proposes a configuration twice, and proposes
    in well under a second.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_oracle_class(self, kt.oracles.BayesianOptimizationOracle, KitBayesianOracle)


class RandomSearch(KitTunerMixin, kt.RandomSearch):
    """KerasTuner's ``RandomSearch`` (Bergstra & Bengio, 2012) with kerastune_kit's records,
    TensorBoard, pruning, budgets and training loop; KerasTuner's arguments (``hypermodel``,
    ``objective``, ``max_trials``, ``seed``, ``hyperparameters``, ``executions_per_trial``,
    ``directory``, ``project_name``, ``overwrite``, ...).

    Example (KerasTuner's getting-started search, one import changed)::

        import kerastune_kit as kk
        tuner = kk.RandomSearch(build_model, objective="val_accuracy", max_trials=3,
                                executions_per_trial=2, directory="my_dir",
                                project_name="helloworld")
        tuner.search(x_train, y_train, epochs=2, validation_data=(x_val, y_val))
        best = tuner.get_best_models(num_models=1)[0]
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_oracle_class(self, kt.oracles.RandomSearchOracle, KitRandomOracle)


class GridSearch(KitTunerMixin, kt.GridSearch):
    """KerasTuner's ``GridSearch`` with kerastune_kit's records, TensorBoard, pruning, budgets
    and training loop; KerasTuner's arguments. A reloaded grid search continues its walk.
    """


#: The names these classes had before they were public.
KitHyperband, KitBOHB, KitTPE = Hyperband, BOHB, TPE
KitBayesianOptimization, KitRandomSearch, KitGridSearch = (BayesianOptimization, RandomSearch,
                                                          GridSearch)

#: The tuner class of each ``--tuner`` name.
TUNERS: dict[str, type] = {"hyperband": Hyperband, "bohb": BOHB, "tpe": TPE,
                           "bayesian": BayesianOptimization, "random": RandomSearch,
                           "grid": GridSearch}


def _use_oracle_class(tuner: Any, base: type, subclass: type) -> None:
    """Give ``tuner``'s oracle (built and reloaded by KerasTuner as ``base``) the methods of
    ``subclass``, which adds no state but ``kit_exhausted`` (read back from ``oracle.json``).

    A worker's oracle is a client of the chief's and is left alone.
    """
    oracle = tuner.oracle
    if type(oracle) is not base:
        return
    oracle.__class__ = subclass
    path = Path(tuner.project_dir) / "oracle.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        state = {}
    oracle.kit_exhausted = bool(state.get("kit_exhausted", False))
    for key in ("kit_model_proposals", "kit_random_proposals", "kit_model_budget"):
        if key in state:  # BOHB's counters
            setattr(oracle, key, state[key])


def tuner_class(name: str) -> type:
    """The tuner class of a ``--tuner`` name (:data:`TUNERS`); ``stopped`` gives
    :class:`SearchStopped`, and ``hyperband_oracle``/``bayesian_oracle`` our oracles."""
    extra = {"stopped": SearchStopped, "hyperband_oracle": KitHyperbandOracle,
             "bayesian_oracle": KitBayesianOracle}
    return {**TUNERS, **extra}[name]


def build_tuner(config: SearchConfig, hypermodel: Any, *, objective: str,
                on_trial: Callable[[TrialRecord], None] | None = None,
                deadline: float | None = None, trial_budget: int | None = None,
                on_epoch: Callable[[EpochProgress], None] | None = None) -> Any:
    """Construct the tuner for ``config`` around ``hypermodel``.

    The oracle is seeded with ``config.seed``; the project directory is ``RUN/tuner`` and an
    existing one is reloaded (that is how ``--resume`` continues).

    Args:
        config: The search configuration.
        hypermodel: One of our factories.
        objective: The objective's name.
        on_trial: Called with each finished trial's record.
        deadline: ``time.time()`` after which no trial starts.
        trial_budget: Trials this process may start (a recycled worker's share).
        on_epoch: Called at each trial's start and after each of its epochs with an
            :class:`~kerastune_kit.progress.EpochProgress`.
    """
    import keras_tuner as kt

    from kerastune_kit.hypermodels import objective_direction

    run_dir = config.effective_run_dir()
    direction = objective_direction(objective)
    # A --refine stage (RUN/stages/<k>) draws afresh: same data split (config.seed), but its
    # oracle and its trials' initialisations seeded apart from the stages before.
    layout = Path(run_dir)
    stage = int(layout.name) if layout.parent.name == STAGES_DIR and layout.name.isdigit() else 1
    seed = config.seed + STAGE_SEED_STRIDE * (stage - 1)
    kwargs: dict[str, Any] = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective, direction=direction),
        seed=seed + 1,  # KerasTuner reads seed 0 as "no seed" and draws a random one
        directory=str(run_dir),
        project_name=TUNER_DIR,
        overwrite=False,
        max_retries_per_trial=config.max_retries,
        max_consecutive_failed_trials=config.max_consecutive_failures,
        kit_run_dir=run_dir,
        kit_space=hypermodel.space,
        kit_metric_names=hypermodel.head.metric_names,
        kit_on_trial=on_trial,
        kit_on_epoch=on_epoch,
        kit_seed=seed,
        kit_deadline=deadline,
        kit_trial_budget=trial_budget,
        kit_pruner=make_pruner(config.pruner, direction,
                               warmup_trials=config.pruner_warmup_trials,
                               min_epoch=config.pruner_min_epoch,
                               percentile=config.pruner_percentile, factor=config.factor),
    )
    if config.tuner in BRACKET_TUNERS:
        kwargs.update(max_epochs=config.max_epochs, factor=config.factor)
        if config.max_time:
            # The time is the budget: iterate Hyperband's brackets until it is spent (or
            # max_trials exist, the cap).
            kwargs["hyperband_iterations"] = TIME_BUDGET_TRIALS
    else:
        kwargs["max_trials"] = config.effective_max_trials()
    if config.tuner == "bayesian":
        kwargs["num_initial_points"] = initial_random_points(
            config.max_trials if config.max_time else config.effective_max_trials(),
            len(hypermodel.space.hparam_domains()))
    tuner = TUNERS[config.tuner](**kwargs)
    if not tuner._is_worker():
        # KerasTuner saves oracle.json before it forgets an ended trial, and a reload re-queues
        # every trial oracle.json calls ongoing: a process killed in between would run a
        # COMPLETED trial again.
        queue = tuner.oracle._retry_queue
        trials = tuner.oracle.trials
        queue[:] = [t for t in queue
                    if str(getattr(trials.get(t), "status", "")) != TrialStatus.COMPLETED]
        # A trial whose trial.json was written but whose oracle.json update was not (a full
        # disk, a kill) is RUNNING and owned by nobody: run it again rather than leave it.
        owned = {t.trial_id for t in tuner.oracle.ongoing_trials.values()}
        orphans = sorted((trial_id for trial_id, trial in tuner.oracle.trials.items()
                          if str(trial.status) == TrialStatus.RUNNING and trial_id not in owned
                          and trial_id not in queue), reverse=True)
        queue.extend(orphans)  # popped from the end: the lowest id runs first
    if config.tuner in BRACKET_TUNERS and config.max_trials is not None:
        tuner.oracle.max_trials = config.max_trials
    if config.tuner in BRACKET_TUNERS and not tuner._is_worker():
        # oracle.json keeps the iterations of the run's start: a time budget given (or
        # dropped) on --resume decides again; without one, the current iteration ends it.
        oracle = tuner.oracle
        oracle.hyperband_iterations = (TIME_BUDGET_TRIALS if config.max_time
                                       else max(1, oracle._current_iteration + 1))
    if not tuner._is_worker():
        from kerastune_kit.designs import designs_for

        tuner.oracle.kit_baselines = (designs_for(hypermodel.family)
                                      if config.baselines and config.tuner != "grid" else ())
        tuner.oracle.kit_cost = hypermodel.cost
        tuner.oracle.kit_cost_limit = cost_limit(hypermodel)
    hypermodel.min_steps_per_epoch = config.min_steps_per_epoch
    hypermodel.schedule_epochs = config.max_epochs  # one learning-rate schedule per trial
    tuner.kit_patience = config.effective_patience()
    tuner.kit_explosion_factor = _explosion_factor(config.explosion_factor)
    tuner.kit_with_baseline = config.baselines and config.tuner != "grid"
    if config.tuner == "grid" and not tuner._is_worker():
        restore_grid_walk(tuner.oracle)
    return tuner


def restore_grid_walk(oracle: Any) -> None:
    """Rebuild a reloaded ``GridSearchOracle``'s walk over the grid from its trials.

    KerasTuner keeps the walk (trial ids in grid order, and the queue of trials whose next
    grid point is still to be proposed) in memory only, not in ``oracle.json``. A reloaded
    grid search therefore failed with ``KeyError`` in ``LinkedList.next`` once a re-run trial
    ended, and a second reload stopped as "exhausted" with grid points never run. Here every
    trial started so far goes back into the ordered list, and each is queued so its next
    point is proposed unless that point was already tried (KerasTuner's own skip rule).
    """
    import functools

    ordered = getattr(oracle, "_ordered_ids", None)
    if ordered is None or getattr(ordered, "_memory", None) or not oracle.start_order:
        return  # not a grid oracle, a walk already in memory, or nothing to restore
    ids = [t for t in dict.fromkeys(oracle.start_order) if t in oracle.trials]

    def values(trial_id: str) -> dict[str, Any]:
        return oracle.trials[trial_id].hyperparameters.values

    ids.sort(key=functools.cmp_to_key(lambda a, b: oracle._compare(values(a), values(b))))
    for trial_id in ids:
        ordered.insert(trial_id)
    oracle._populate_next[:] = ids


def _save_checkpoint(callback: Any, save: Callable[[Any, str], None]) -> None:
    """``SaveBestEpoch._save_model`` through ``save`` (one process, one file)."""
    save(callback.model, callback.filepath)


#: KerasTuner's default ``project_name``: the run directory of a tuner given none.
DEFAULT_PROJECT = "untitled_project"


def check_tuner_options(*, pruner: Any, max_time: Any, workers: Any, trials_per_worker: Any,
                        training: Any, patience: Any) -> None:
    """Refuse a bad keyword-only argument of a public tuner in one line.

    Raises:
        ConfigError: Naming the argument, the value received and what it takes.
    """
    from kerastune_kit.errors import ConfigError
    from kerastune_kit.fit_paths import TRAINING_PATHS
    from kerastune_kit.pruning import PRUNERS

    if training not in TRAINING_PATHS:
        raise ConfigError(f"training: expected one of {', '.join(TRAINING_PATHS)}, received "
                          f"{training!r}")
    if pruner is not None and not isinstance(pruner, Pruner) and pruner not in PRUNERS:
        raise ConfigError(f"pruner: expected one of {', '.join(PRUNERS)} or a Pruner, received "
                          f"{pruner!r}")
    if max_time is not None and (isinstance(max_time, bool)
                                 or not isinstance(max_time, (int, float)) or max_time <= 0):
        raise ConfigError(f"max_time: expected seconds > 0 (or None), received {max_time!r}")
    for name, value in (("workers", workers), ("trials_per_worker", trials_per_worker),
                        ("patience", patience)):
        if value is None or (name == "workers" and value == 0):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (
                0 if name == "patience" else 1):
            least = "0" if name in ("workers", "patience") else "1"
            raise ConfigError(f"{name}: expected an integer >= {least} (or None), received "
                              f"{value!r}")


def _explosion_factor(value: Any) -> float:
    """A tuner's ``explosion_factor`` as a float (0.0: off).

    Raises:
        ConfigError: Not a number above 1, 0, None or ``"off"`` (one line).
    """
    from kerastune_kit.errors import ConfigError
    from kerastune_kit.steps import check_explosion_factor

    try:
        return check_explosion_factor(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def clear_run_dir(run_dir: Path) -> None:
    """``overwrite=True``: empty a run directory, refusing one that holds anything else.

    Raises:
        RunDirError: ``run_dir`` holds files but no kerastune_kit or KerasTuner run.
    """
    from kerastune_kit.errors import RunDirError
    from kerastune_kit.rundir import RunDirLock, empty_run_dir

    run = RunDir(run_dir)
    if not run_dir.exists() or not run.is_occupied():
        return
    if not (run.is_run() or run.tuner_dir.is_dir()):
        raise RunDirError(
            f"overwrite: '{run_dir}' is not a kerastune_kit run directory; refusing to delete "
            "it; pass another directory/project_name")
    with RunDirLock(run_dir, action="start"):
        empty_run_dir(run_dir)


def domain_of(hp: Any) -> Any:
    """Our domain (:mod:`kerastune_kit.space`) of a KerasTuner hyperparameter, for HParams."""
    from kerastune_kit.space import Choices, Fixed, FloatRange, IntRange

    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return Choices((False, True))
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return Fixed(hp.value)
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return Choices(tuple(hp.values))
    if isinstance(hp, kt.engine.hyperparameters.Int):
        return IntRange(int(hp.min_value), int(hp.max_value), log=hp.sampling == "log")
    if isinstance(hp, kt.engine.hyperparameters.Float):
        return FloatRange(float(hp.min_value), float(hp.max_value), log=hp.sampling == "log")
    return Choices((hp.default,))


def _hypermodel_name(hypermodel: Any) -> str:
    if type(hypermodel).__name__ == "DefaultHyperModel":  # KerasTuner's wrapper of a function
        build = vars(hypermodel).get("build")
        return f"{getattr(build, '__module__', '?')}.{getattr(build, '__qualname__', '?')}"
    return f"{type(hypermodel).__module__}.{type(hypermodel).__qualname__}"


def model_card(hypermodel: Any) -> dict[str, Any]:
    """What ``best_model.keras`` of one of our factories takes and returns."""
    step = hypermodel.preprocessing
    head = hypermodel.head
    outputs = {"multiclass": f"class probabilities, shape (n, {head.units})",
               "binary": "probability of class 1, shape (n, 1)",
               "regression": "predicted values, shape (n, 1)"}[head.task]
    shape = ", ".join(map(str, hypermodel.input_shape))
    inputs = f"raw features as in the data, shape (n, {shape})"
    if step is not None and step.kind == "feature_space":
        inputs = ("a dict of raw columns, each a 1-D array: "
                  + ", ".join(f"{name} ({dtype})" for name, dtype in step.input_dtypes.items())
                  + "; a missing value is NaN (numbers) or '' / NA / ? (strings); "
                  "pass string columns to predict as tf.constant")
    card: dict[str, Any] = {
        "inputs": inputs,
        "preprocessing": step.describe() if step is not None else {"kind": "none"},
        "outputs": outputs,
    }
    if getattr(hypermodel, "class_names", None):
        card["class_names"] = list(hypermodel.class_names)
    return card


def user_model_card(model: Any) -> dict[str, Any]:
    """What a user's best model takes and returns (its own inputs and outputs)."""
    def shapes(tensors: Any) -> str:
        items = []
        for tensor in tensors or []:
            shape = ", ".join("n" if d is None else str(d) for d in tensor.shape)
            name = (getattr(tensor, "name", "") or "").split(":")[0]
            if name.startswith("keras_tensor"):  # Keras's automatic name: only the shape
                name = ""
            items.append(f"{name} ({shape})" if name else f"({shape})")
        return "; ".join(items) or "as the model takes them"

    return {"inputs": shapes(getattr(model, "inputs", None)),
            "preprocessing": {"kind": "inside the model"},
            "outputs": shapes(getattr(model, "outputs", None))}


class TunerJob:
    """A public tuner's search, rebuilt in a worker process (picklable).

    Called there as ``job(callbacks=, deadline=, on_trial=, trial_budget=)``: it constructs
    the tuner class with the user's arguments on the same run directory (never overwriting),
    as a part of the search (``kit_job``), and runs KerasTuner's loop until the oracle has no
    trial left for it, the budget of trials is spent or the deadline passes.
    """

    def __init__(self, tuner_class: type, args: tuple[Any, ...], kwargs: dict[str, Any],
                 ours: dict[str, Any], *, fit_args: tuple[Any, ...],
                 fit_kwargs: dict[str, Any]) -> None:
        self.tuner_class = tuner_class
        self.args, self.kwargs, self.ours = args, kwargs, ours
        self.fit_args, self.fit_kwargs = fit_args, fit_kwargs

    def __call__(self, *, callbacks: Sequence[Any] = (), deadline: float | None = None,
                 on_trial: Callable[[TrialRecord], None] | None = None,
                 trial_budget: int | None = None) -> str:
        tuner = self.tuner_class(*self.args, **self.kwargs, **self.ours, kit_job=True,
                                 kit_on_trial=on_trial, kit_deadline=deadline,
                                 kit_trial_budget=trial_budget)
        if not tuner._is_worker():
            tuner.kit_requeue_write_failures()
        return tuner.kit_search_here(self.fit_args,
                                     {**self.fit_kwargs, "callbacks": list(callbacks)})


def check_main_is_importable(option: str) -> None:
    """Refuse, in one line, worker processes that could not rebuild the search.

    Worker processes start with ``multiprocessing``'s ``spawn``: each imports the main script
    again (as ``__mp_main__``) to find the build function defined there. A script that calls
    ``search`` at its top level, outside ``if __name__ == "__main__":``, would start the search
    again in every worker (which then finds the run directory locked, and dies); an
    interactive session or notebook has no script to import at all.

    Raises:
        ConfigError: Naming ``option``, what is wrong and the fix.
    """
    import ast
    import sys

    from kerastune_kit.errors import ConfigError

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        raise ConfigError(
            f"{option}: the build function is defined in an interactive session or notebook, "
            "which worker processes cannot import; move it into a .py module and import it, or "
            "pass workers=0 and trials_per_worker=None")
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>"
                                     and frame.f_globals.get("__name__") == "__main__"):
        frame = frame.f_back
    if frame is None:
        return
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) \
                and node.lineno <= line <= (node.end_lineno or node.lineno):
            return
    raise ConfigError(
        f"{option}: {Path(path).name} runs its search at import time (line {line}), and every "
        "worker process imports it again; put the search under "
        "'if __name__ == \"__main__\":', or pass workers=0 and trials_per_worker=None")


def _public_signature(cls: type, base: Any) -> inspect.Signature:
    """KerasTuner's constructor signature of ``base``, then ``kt.Tuner``'s keywords, then
    ours (keyword-only): what ``help(kk.RandomSearch)`` shows."""
    params: dict[str, inspect.Parameter] = {}
    for source in (base, kt.Tuner):
        for name, param in inspect.signature(source).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in params \
                    or name in ("self", "oracle", "logger"):
                continue
            params[name] = param.replace(kind=param.POSITIONAL_OR_KEYWORD)
    ours = {"pruner": None, "max_time": None, "workers": 0, "trials_per_worker": None,
            "training": "auto", "patience": None, "explosion_factor": 3.0}
    listed = [*params.values()]
    listed += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
               for name, default in ours.items()]
    listed.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(listed)


#: The keyword-only arguments every public tuner adds to KerasTuner's, for their docstrings.
_OURS_DOC = """
    kerastune_kit's keyword-only arguments (see :class:`KitTunerMixin`): ``pruner`` (``median``,
    ``percentile``, ``asha``, ``none`` or a :class:`~kerastune_kit.pruning.Pruner`; not for
    Hyperband), ``max_time`` (seconds; the running trial ends at its next epoch end and
    counts), ``workers`` (trials at once in worker processes; the search must run under
    ``if __name__ == "__main__":``), ``trials_per_worker`` (recycle processes), ``training``
    (``auto``, ``loop`` or ``fit``), ``patience`` (early stopping, epochs) and
    ``explosion_factor`` (default 3: a trial whose training loss exceeds that many times its
    starting loss is recorded as diverged; 0 or ``"off"``: never; a HyperModel with its own
    ``fit`` trains as it likes, without the rule).
"""

for _cls, _base in ((Hyperband, kt.Hyperband), (BOHB, kt.Hyperband), (TPE, TPE.__init__),
                    (BayesianOptimization, kt.BayesianOptimization),
                    (RandomSearch, kt.RandomSearch), (GridSearch, kt.GridSearch)):
    _cls.__signature__ = _public_signature(_cls, _base)  # type: ignore[attr-defined]
    _cls.__doc__ = (_cls.__doc__ or "").rstrip() + "\n" + _OURS_DOC
