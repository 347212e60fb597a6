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
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerastune_kit.config import BRACKET_TUNERS, TIME_BUDGET_TRIALS, SearchConfig
from kerastune_kit.pruning import Pruner, make_pruner
from kerastune_kit.results import (
    LEADERBOARD,
    RECORD_FILE,
    TENSORBOARD_DIR,
    TUNER_DIR,
    TrialRecord,
    is_ranked,
    rank,
    read_trial_records,
    write_json_atomic,
    write_leaderboard,
    write_text_atomic,
)
from kerastune_kit.rundir import errno_in_text, find_write_error
from kerastune_kit.space import SearchSpace


def trial_seed(seed: int, trial_id: str) -> int:
    """The seed of one trial: stable for a search seed and a trial id."""
    digits = "".join(ch for ch in str(trial_id) if ch.isdigit()) or "0"
    return (int(seed) * 1_000_003 + int(digits)) % (2**31 - 1)


def _classes() -> dict[str, type]:
    import keras_tuner as kt

    from kerastune_kit.designs import BASELINE_KEY, design_values
    from kerastune_kit.distributed import patch_keras_tuner_protos
    from kerastune_kit.hypermodels import DivergedTrialError
    from kerastune_kit.tensorboard import SearchSummaryWriter, TrialWriter
    from kerastune_kit.tpe import BOHBMixin, TPEOracle

    patch_keras_tuner_protos()
    patch_keras_tuner_writes()

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
        """TensorBoard sessions, trial records, pruning, budgets and the failure policy."""

        def __init__(self, *args: Any, kit_run_dir: Path, kit_space: SearchSpace,
                     kit_metric_names: Sequence[str],
                     kit_on_trial: Callable[[TrialRecord], None] | None = None,
                     kit_pruner: Pruner | None = None, kit_seed: int = 0,
                     kit_deadline: float | None = None, kit_trial_budget: int | None = None,
                     **kwargs: Any) -> None:
            self.kit_run_dir = Path(kit_run_dir)
            self.kit_space = kit_space
            self.kit_metric_names = tuple(kit_metric_names)
            self.kit_on_trial = kit_on_trial
            self.kit_pruner = kit_pruner
            self.kit_seed = kit_seed
            self.kit_deadline = kit_deadline
            self.kit_trial_budget = kit_trial_budget
            self.kit_stop_reason: str | None = None
            self._kit_trials_started = 0
            self._kit_writers: dict[str, Any] = {}
            self._kit_started: dict[str, float] = {}
            self._kit_histories: dict[str, Any] = {}
            self._kit_outcomes: dict[str, tuple[str, str]] = {}
            self._kit_summary: Any = None
            super().__init__(*args, **kwargs)
            self._kit_curves: dict[str, dict[int, float]] = {
                r.trial_id: {int(e): v for e, v in r.curve.items() if v is not None}
                for r in read_trial_records(self.project_dir)
            }

        # -- paths
        @property
        def kit_tensorboard_dir(self) -> Path:
            return self.kit_run_dir / TENSORBOARD_DIR

        def kit_hp_names(self) -> list[str]:
            return list(self.kit_space.hparam_domains())

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
                if trial.status == "IDLE":
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
            record = Path(self.get_trial_dir(trial_id)) / RECORD_FILE
            if session.exists() and not record.exists():
                shutil.rmtree(session, ignore_errors=True)
            self.hypermodel.seed = trial_seed(self.kit_seed, trial_id)
            writer = TrialWriter(self.kit_tensorboard_dir, trial_id)
            values = trial.hyperparameters.values
            writer.write_hparams(values, parent_trial_id=values.get("tuner/trial_id"),
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
            return super()._build_and_fit_model(trial, *args, **kwargs)

        #: Epochs without improvement after which a trial stops (``EarlyStopping``); 0: never.
        kit_patience = 0
        #: Whether the HParams experiment has the ``baseline`` column.
        kit_with_baseline = False

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            if self.kit_patience:
                from kerastune_kit._backend import keras as _keras

                stopper = _keras().callbacks.EarlyStopping(
                    monitor=self.oracle.objective.name, mode=self.oracle.objective.direction,
                    patience=int(self.kit_patience))
                kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), stopper]
            try:
                histories = super().run_trial(trial, *args, **kwargs)
            except DivergedTrialError as exc:
                self._kit_histories[trial.trial_id] = exc.history
                worst = self._kit_worst_score(exc.history)
                self._kit_outcomes[trial.trial_id] = ("DIVERGED", f"{exc}{_BELOW}")
                return {self.oracle.objective.name: worst}
            history = histories[-1] if histories else None
            self._kit_histories[trial.trial_id] = history
            if history is None or not hasattr(history, "history"):
                return histories
            divergence = getattr(history, "divergence", None)
            series = history.history.get(self.oracle.objective.name, [])
            if not any(math.isfinite(v) for v in series):
                # No finite objective at all (for example the validation loss overflowed):
                # never hand NaN/inf to the oracle.
                worst = self._kit_worst_score(history)
                reason = divergence.reason() if divergence is not None else (
                    f"{self.oracle.objective.name} was never finite")
                self._kit_outcomes[trial.trial_id] = ("DIVERGED", f"{reason}{_BELOW}")
                return {self.oracle.objective.name: worst}
            if divergence is not None and trial.trial_id not in self._kit_outcomes:
                self._kit_outcomes[trial.trial_id] = ("DIVERGED", divergence.reason())
            return histories

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
            value = (logs or {}).get(self.oracle.objective.name)
            if value is not None and math.isfinite(float(value)):
                self._kit_curves.setdefault(trial_id, {})[int(epoch)] = float(value)
            if self._is_worker():  # heartbeat: the chief re-queues trials of silent workers
                self.oracle.get_trial(trial_id)
            if self._kit_budget_spent():
                # The time is up: this trial ends here and counts with the epochs it
                # finished (the best model by the deadline); no new trial starts.
                if not model.stop_training:
                    model.stop_training = True
                    self._kit_outcomes.setdefault(trial_id, (
                        "COMPLETED", f"stopped by the time budget after epoch {int(epoch)}"))
            else:
                self._kit_check_stop()
            if self.kit_pruner is not None and not model.stop_training:
                finished = self._kit_finished_curves()
                finished.discard(trial_id)
                decision = self.kit_pruner.check(trial_id, int(epoch), self._kit_curves,
                                                 finished)
                if decision.prune:
                    model.stop_training = True
                    self._kit_outcomes[trial_id] = ("PRUNED", decision.reason)

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)  # the oracle scores the trial here
            ended = self.oracle.get_trial(trial.trial_id)
            record = self._kit_record(ended)
            writer = self._kit_writers.pop(trial.trial_id, None)
            if writer is not None:
                writer.write_result(record, objective=self.oracle.objective.name,
                                    direction=self.oracle.objective.direction)
            write_json_atomic(Path(self.get_trial_dir(trial.trial_id)) / RECORD_FILE,
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
                if str(trial.status) not in ("FAILED", "INVALID") or not trial.message \
                        or trial_id in oracle._retry_queue \
                        or errno_in_text(trial.message) is None:
                    continue
                trial.message = None
                if trial_id in oracle.end_order:
                    oracle.end_order.remove(trial_id)
                oracle._retry_queue.append(trial_id)
                record = Path(self.get_trial_dir(trial_id)) / RECORD_FILE
                record.unlink(missing_ok=True)
                requeued.append(trial_id)
            if requeued:
                oracle._retry_queue.sort(reverse=True)  # popped from the end: lowest id first
                oracle.save()
            return requeued

        def kit_write_summary(self, records: list[TrialRecord]) -> None:
            """The TensorBoard text panels with the leaderboard and the best configuration
            (step = finished trials)."""
            if self._kit_summary is not None:
                self._kit_summary.write_leaderboard(
                    records, self.kit_hp_names(), objective=self.oracle.objective.name,
                    step=sum(r.status not in ("RUNNING", "IDLE") for r in records))

        def kit_close_summary(self) -> None:
            if self._kit_summary is not None:
                self._kit_summary.close()
                self._kit_summary = None

        def kit_write_final_summary(self) -> list[TrialRecord]:
            """Leaderboard, leaderboard panel and hyperparameter importance of the finished
            search (written once, by the process that writes the results files)."""
            from kerastune_kit.importance import hyperparameter_importance

            rescore_diverged(self.oracle, read_trial_records(self.project_dir))
            records = self.kit_write_leaderboard()
            self._kit_summary = SearchSummaryWriter(self.kit_tensorboard_dir)
            try:
                self.kit_write_summary(records)
                step = sum(r.status not in ("RUNNING", "IDLE") for r in records)
                self._kit_summary.write_importance(
                    hyperparameter_importance(records, self.kit_hp_names(),
                                              direction=self.oracle.objective.direction),
                    step=step)
            finally:
                self.kit_close_summary()
            return records

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
                      if r.status in ("COMPLETED", "PRUNED") and r.score is not None
                      and math.isfinite(r.score)]
            start = (history.initial_logs or {}).get(
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
                    record.start_score = history.initial_logs.get(
                        objective.name.removeprefix("val_"))
            if trial.message:
                record.message = _last_line(trial.message)
            outcome = self._kit_outcomes.pop(trial_id, None)
            if outcome is not None and trial.status == "COMPLETED":
                record.status, record.message = outcome
            if record.status == "DIVERGED":
                record.score = None  # the oracle's stand-in is not a score to show
            return record

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
            write_leaderboard(self.kit_run_dir / LEADERBOARD, records, self.kit_hp_names())
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
                return {"status": "RUNNING", "values": self._kit_baseline_values(values)}
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
                      if t_id in self.kit_diverged and t.status == "COMPLETED"]
            for trial, _ in hidden:
                trial.status = "FAILED"
            try:
                return kt.oracles.HyperbandOracle.populate_space(self, trial_id)
            finally:
                for trial, status in hidden:
                    trial.status = status

        def _random_trial(self, trial_id: str, bracket: dict[str, Any]) -> dict[str, Any]:
            result = super()._random_trial(trial_id, bracket)
            if result.get("status") != "STOPPED":
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

    class KitHyperband(KitTunerMixin, kt.Hyperband):
        """KerasTuner's Hyperband with kerastune_kit's logging and records."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _use_oracle_class(self, kt.oracles.HyperbandOracle, KitHyperbandOracle)

    class KitBOHBOracle(BOHBMixin, KitHyperbandOracle):
        """Hyperband whose new configurations come from a TPE model of the finished trials
        at the highest budget with enough of them (BOHB: Falkner, Klein & Hutter, 2018),
        after the popular designs; see :class:`kerastune_kit.tpe.BOHBMixin`."""

    class KitBOHB(KitHyperband):
        """BOHB: Hyperband's brackets with model-based proposals, with kerastune_kit's
        logging and records."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from kerastune_kit.tpe import require_optuna

            require_optuna()  # fail before the first trial, not at the first proposal
            super().__init__(*args, **kwargs)
            _use_oracle_class(self, KitHyperbandOracle, KitBOHBOracle)

    class KitTPEOracle(BaselinesFirst, TPEOracle):
        """Optuna's TPE sampler behind KerasTuner's oracle interface, starting with the
        popular designs; see :class:`kerastune_kit.tpe.TPEOracle`."""

    class KitTPE(KitTunerMixin, kt.Tuner):
        """Tree-structured Parzen estimator search (Optuna's ``TPESampler``) with
        kerastune_kit's logging, records and pruning."""

        def __init__(self, hypermodel: Any = None, *, objective: Any = None,
                     max_trials: int | None = 10, seed: int | None = None,
                     max_retries_per_trial: int = 0, max_consecutive_failed_trials: int = 3,
                     **kwargs: Any) -> None:
            oracle = KitTPEOracle(objective=objective, max_trials=max_trials, seed=seed,
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
            completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
            initial = self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)
            if len(completed) < initial:
                result = self._random_populate_space()
            else:
                result = {"status": "RUNNING", "values": self._kit_propose()}
            values = result.get("values")
            if result.get("status") == "RUNNING" and values and self._duplicate(values):
                values = self._random_values()
                result = ({"status": "RUNNING", "values": values} if values
                          else {"status": "STOPPED", "values": None})
            if result.get("status") == "STOPPED":
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

    class KitBayesianOptimization(KitTunerMixin, kt.BayesianOptimization):
        """KerasTuner's Bayesian optimization with kerastune_kit's logging, records, pruning."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _use_oracle_class(self, kt.oracles.BayesianOptimizationOracle, KitBayesianOracle)

    class KitRandomSearch(KitTunerMixin, kt.RandomSearch):
        """KerasTuner's random search with kerastune_kit's logging, records and pruning."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _use_oracle_class(self, kt.oracles.RandomSearchOracle, KitRandomOracle)

    class KitGridSearch(KitTunerMixin, kt.GridSearch):
        """KerasTuner's grid search with kerastune_kit's logging, records and pruning."""

    return {"hyperband": KitHyperband, "bohb": KitBOHB, "tpe": KitTPE,
            "bayesian": KitBayesianOptimization,
            "random": KitRandomSearch, "grid": KitGridSearch, "stopped": SearchStopped,
            "hyperband_oracle": KitHyperbandOracle, "bayesian_oracle": KitBayesianOracle}


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


_CLASSES: dict[str, type] | None = None


def tuner_class(name: str) -> type:
    """The Tuner class for ``hyperband``, ``bayesian``, ``random`` or ``grid``
    (``stopped`` gives the exception that ends a search early)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _classes()
    return _CLASSES[name]


def build_tuner(config: SearchConfig, hypermodel: Any, *, objective: str,
                on_trial: Callable[[TrialRecord], None] | None = None,
                deadline: float | None = None, trial_budget: int | None = None) -> Any:
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
    """
    import keras_tuner as kt

    from kerastune_kit.hypermodels import objective_direction

    run_dir = config.effective_run_dir()
    direction = objective_direction(objective)
    kwargs: dict[str, Any] = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective, direction=direction),
        seed=config.seed + 1,  # KerasTuner reads seed 0 as "no seed" and draws a random one
        directory=str(run_dir),
        project_name=TUNER_DIR,
        overwrite=False,
        max_retries_per_trial=config.max_retries,
        max_consecutive_failed_trials=config.max_consecutive_failures,
        kit_run_dir=run_dir,
        kit_space=hypermodel.space,
        kit_metric_names=hypermodel.head.metric_names,
        kit_on_trial=on_trial,
        kit_seed=config.seed,
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
    with contextlib.redirect_stdout(io.StringIO()):  # KerasTuner prints "Reloading Tuner"
        tuner = tuner_class(config.tuner)(**kwargs)
    if not tuner._is_worker():
        # KerasTuner saves oracle.json before it forgets an ended trial, and a reload re-queues
        # every trial oracle.json calls ongoing: a process killed in between would run a
        # COMPLETED trial again.
        queue = tuner.oracle._retry_queue
        queue[:] = [t for t in queue
                    if str(getattr(tuner.oracle.trials.get(t), "status", "")) != "COMPLETED"]
        # A trial whose trial.json was written but whose oracle.json update was not (a full
        # disk, a kill) is RUNNING and owned by nobody: run it again rather than leave it.
        owned = {t.trial_id for t in tuner.oracle.ongoing_trials.values()}
        orphans = sorted((trial_id for trial_id, trial in tuner.oracle.trials.items()
                          if str(trial.status) == "RUNNING" and trial_id not in owned
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
    tuner.kit_patience = config.effective_patience()
    tuner.kit_with_baseline = config.baselines and config.tuner != "grid"
    if config.tuner == "grid" and not tuner._is_worker():
        restore_grid_walk(tuner.oracle)
    return tuner


#: Random proposals cost at most this many times the dearest popular design of the family,
#: and never less than COST_LIMIT_FLOOR multiply-accumulates per sample (networks that cheap
#: train fast whatever their shape: every MLP of the default space is below it).
COST_LIMIT_FACTOR = 4.0
COST_LIMIT_FLOOR = 16e6


def cost_limit(hypermodel: Any) -> float | None:
    """The multiply-accumulates per sample random proposals stay under:
    :data:`COST_LIMIT_FACTOR` times the dearest popular design of the factory's family, at
    least :data:`COST_LIMIT_FLOOR` (so
    on 28x28 images a random network costs at most about four LeNets, one epoch at most a
    few times a baseline's). None for a factory without designs or a cost model."""
    from kerastune_kit.designs import designs_for

    costs = [hypermodel.cost(dict(d.values)) for d in designs_for(hypermodel.family)]
    costs = [c for c in costs if c > 0]
    return max(COST_LIMIT_FLOOR, COST_LIMIT_FACTOR * max(costs)) if costs else None


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


def initial_random_points(max_trials: int | None, dimensions: int) -> int:
    """Random trials a Bayesian search starts with before its Gaussian process proposes.

    KerasTuner's default, 3 × the number of hyperparameters (Snoek et al., 2012 use a similar
    rule), is 48 for the default 16-knob space: a 12-trial "Bayesian" search would be random
    from start to end. Here it is a quarter of the trial budget, at least 3 and at most
    3 × dimensions; for a search bounded by time alone, 10 (Optuna's TPE default) at most.

    Example:
        >>> initial_random_points(12, 16), initial_random_points(100, 16)
        (3, 25)
    """
    ceiling = max(3, 3 * dimensions)
    if not max_trials:  # a time budget: as many as Optuna's TPE starts with
        return min(ceiling, 10)
    return max(3, min(ceiling, round(max_trials / 4)))


def search_plan(config: SearchConfig, hypermodel: Any) -> str:
    """One line saying how the search will choose its trials (printed before it starts).

    Example (a 12-trial Bayesian search of the MLP)::

        bayesian optimization: of 12 trials, the first 2 are the popular designs (mlp_2x256,
        mlp_2x64), 1 random, the other 9 proposed by a Gaussian process fitted to the
        finished ones
    """
    from kerastune_kit.designs import describe, designs_for

    designs = designs_for(hypermodel.family) if config.baselines and config.tuner != "grid" \
        else ()
    time_only = bool(config.max_time) and config.max_trials is None
    until = f", until {_duration(config.max_time)} is spent" if config.max_time else ""
    epochs = f"{config.max_epochs} epoch{'s' if config.max_epochs != 1 else ''}"
    if config.tuner in BRACKET_TUNERS:
        first = (f"the popular designs ({describe(designs)}) for {epochs}, then "
                 if designs else "")
        how = ("new configurations from a TPE model of the finished trials once it has enough "
               "of them (BOHB)" if config.tuner == "bohb" else "random new configurations")
        cap = "" if time_only else f", up to {expected_trials(config)} trials in all"
        return (f"{config.tuner}: {first}brackets of {epochs} at most, factor "
                f"{config.factor}, {how}{cap}{until}")
    trials = config.effective_max_trials() or 0
    lead = len(designs) if time_only else min(len(designs), trials)
    names = f"the popular designs ({describe(designs[:lead])})"
    if time_only:
        head = f"trials of {epochs} until {_duration(config.max_time)} is spent: "
        first = f"{names} first, then " if lead else ""
    else:
        head = f"{trials} trial{'s' if trials != 1 else ''} of {epochs}{until}: "
        first = f"the first {lead} {names}, " if lead else ""
    rest = "the rest" if time_only else f"the other {trials - lead}"
    if config.tuner == "bayesian":
        random = initial_random_points(None if time_only else trials,
                                       len(hypermodel.space.hparam_domains()))
        random = max(0, random - lead)  # the designs count as initial points
        if not time_only:
            random = min(random, trials - lead)
            rest = f"the other {trials - lead - random}"
        if not lead and not time_only:
            return (f"bayesian optimization: the first {random} of {trials} trials are random, "
                    f"{rest} {'is' if trials - random == 1 else 'are'} proposed by a Gaussian "
                    f"process fitted to the finished ones{until}")
        return (f"bayesian optimization: {head}{first}{random} random, {rest} proposed by a "
                "Gaussian process fitted to the finished ones")
    what = {"tpe": "proposed by Optuna's TPE sampler after its random start-up trials",
            "random": "random", "grid": ""}[config.tuner]
    name = {"tpe": "tpe", "random": "random search", "grid": "grid search"}[config.tuner]
    if not what or (not time_only and trials == lead):
        tail = first.rstrip(", ")
    else:
        tail = f"{first}{rest if lead else 'all'} {what}"
    return f"{name}: {head}{tail}".rstrip(": ")


def _duration(seconds: float | None) -> str:
    seconds = float(seconds or 0)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def expected_trials(config: SearchConfig) -> int:
    """How many trials the search will run at most (Hyperband: one full iteration; with only
    a time budget, :data:`~kerastune_kit.config.TIME_BUDGET_TRIALS`)."""
    from kerastune_kit.designs import POPULAR_DESIGNS

    if config.tuner not in BRACKET_TUNERS:
        return int(config.effective_max_trials() or 0)
    if config.max_time:  # brackets repeat until the time is spent or max_trials exist
        return config.max_trials or TIME_BUDGET_TRIALS
    max_epochs, factor = config.max_epochs, config.factor
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    total = 0
    for bracket in range(brackets):
        for round_num in range(bracket + 1):
            total += math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_num))
    if config.baselines:  # (as many as the family has; the CNN and the MLP have 2 each)
        total += max(len(d) for d in POPULAR_DESIGNS.values())
    return min(total, config.max_trials) if config.max_trials else total


def patch_keras_tuner_writes() -> None:
    """Make KerasTuner's own state files (``oracle.json``, ``trial.json``, ``tuner0.json``)
    atomic: written to a temporary file, then renamed.

    ``keras_tuner.src.utils.save_json`` writes in place, so a full disk left them empty or cut
    short, and ``--resume`` then failed to parse them even after space was freed. Remote paths
    (``gs://``) keep KerasTuner's writer.
    """
    from keras_tuner.src import utils

    if getattr(utils.save_json, "_kerastune_kit", False):
        return
    original = utils.save_json

    def save_json(path: Any, obj: Any) -> str:
        if "://" in str(path):
            return original(path, obj)
        text = json.dumps(obj)
        write_text_atomic(path, text)
        return text

    save_json._kerastune_kit = True  # type: ignore[attr-defined]
    utils.save_json = save_json


_BELOW = " (ranked below every completed and pruned trial)"


def rescore_diverged(oracle: Any, records: Sequence[TrialRecord]) -> list[str]:
    """Give every DIVERGED trial the oracle knows a stand-in score just worse than the worst
    ranked (completed or pruned) trial, revised whenever called.

    The oracle needs a finite score for a diverged trial (NaN would read as a perfect score to
    KerasTuner's Bayesian oracle, and Hyperband sorts by score), but the worst score *so far*
    goes stale: a later, worse trial would rank below a diverged one, and a Gaussian process
    or a Hyperband promotion would prefer the diverged configuration. Called before each new
    trial (and by the chief before each ``CreateTrial``), so promotions and proposals always
    see diverged trials last. The stand-in is the worst score moved by 0.1% of its size
    (at least 1e-6) in the losing direction.

    Args:
        oracle: A KerasTuner oracle (not a worker's client).
        records: The search's trial records (their statuses say which trials diverged).

    Returns:
        The ids of the trials whose score changed (their ``trial.json`` is rewritten).
    """
    diverged = [r.trial_id for r in records if r.outcome == "diverged"]
    oracle.kit_diverged = set(diverged)  # Hyperband never promotes these (KitHyperbandOracle)
    scores = [r.score for r in records if is_ranked(r)]
    if not diverged or not scores:
        return []
    maximize = oracle.objective.direction == "max"
    worst = min(scores) if maximize else max(scores)
    margin = max(abs(worst) * 1e-3, 1e-6)
    stand_in = worst - margin if maximize else worst + margin
    changed = []
    for trial_id in diverged:
        trial = oracle.trials.get(trial_id)
        if trial is None or trial.score is None or trial.score == stand_in:
            continue
        trial.score = stand_in
        oracle._save_trial(trial)
        changed.append(trial_id)
    if changed:
        oracle.save()
    return changed


def _save_checkpoint(callback: Any, save: Callable[[Any, str], None]) -> None:
    """``SaveBestEpoch._save_model`` through ``save`` (one process, one file)."""
    save(callback.model, callback.filepath)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else message
