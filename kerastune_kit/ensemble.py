"""Ensembles of a run's best trials: the top-K distinct trials averaged into one Keras model.

Owns: choosing the members (:func:`distinct_top_trials`: ranked trials with a checkpoint, one per
distinct hyperparameter set, best first), averaging models (:func:`average_models`, Keras's own
``Average`` layer, so the file loads with plain ``keras.saving.load_model``), scoring the ensemble
next to the single best trial on the validation and test splits (:func:`build_ensemble`,
:class:`Ensemble`) and writing it (:func:`export_ensemble`, ``export RUN --ensemble K``).
Does not own: how a trial's model is rebuilt (KerasTuner's ``Tuner.load_model``, behind the
data's preprocessing by :meth:`~kerastune_kit.hypermodels.KitHyperModel.inference_model`, the
path ``best_model.keras`` takes), reloading the data (:func:`kerastune_kit.session.prepare`).

Averaging the predictions of several independently trained networks is the classic ensemble
(Hansen & Salamon, 1990; Lakshminarayanan et al., 2017 for deep networks); a search's best trials
are such networks for free (Caruana et al., 2004 select ensembles from a library of models).

Example:
    >>> from kerastune_kit import load_results
    >>> ensemble = load_results("runs/iris-random").ensemble(3)
    >>> ensemble.scores["validation"]["accuracy"], ensemble.best_scores["validation"]["accuracy"]
    (0.966..., 0.933...)
    >>> probabilities = ensemble.model.predict(x_raw)  # a plain keras.Model
    >>> ensemble.save("iris-ensemble.keras")
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit._logging import get_logger
from kerastune_kit.errors import ConfigError, RunDirError
from kerastune_kit.results import RunResults, TrialRecord, is_ranked
from kerastune_kit.rundir import RunDir, split_stage_trial_id

logger = get_logger("ensemble")

#: The splits an ensemble is scored on, as :attr:`Ensemble.scores` names them.
SPLITS = ("validation", "test")


@dataclasses.dataclass
class Ensemble:
    """The top-K distinct trials of a run averaged into one Keras model, and how it scores.

    Like the ``History`` that ``model.fit`` returns, it carries the model (:attr:`model`) and
    numbers about it (:attr:`scores`); ``predict``, ``evaluate`` and ``save`` are the model's.

    Attributes:
        model: A ``keras.Model`` (functional): the members' inputs in (raw features, the
            training split's preprocessing inside, as ``best_model.keras`` takes them), the mean
            of their outputs out: class probabilities ``(n, n_classes)`` for multiclass,
            probabilities ``(n, 1)`` for binary, values ``(n, 1)`` in the target's units for
            regression (a user's own model: its outputs as they are). Compiled with the best
            member's loss and metrics. Built from Keras layers only: ``keras.saving.load_model``
            reads a saved one without kerastune_kit.
        trial_ids: The members, best first.
        requested: The K asked for (more than ``len(trial_ids)`` when fewer distinct trials
            had a checkpoint).
        objective: The run's objective (``val_accuracy``); :attr:`metric` is its name in
            ``evaluate``'s dict (``accuracy``).
        scores: The ensemble's ``model.evaluate(..., return_dict=True)`` per split:
            ``{"validation": {"loss": ..., "accuracy": ...}, "test": {...}}``; ``test`` is None
            when the run has no test split (and none was passed).
        best_trial_id: The best member, the single model compared against.
        best_scores: The same as :attr:`scores` for the best member alone.
    """

    model: Any
    trial_ids: list[str]
    requested: int
    objective: str
    scores: dict[str, dict[str, float] | None]
    best_trial_id: str
    best_scores: dict[str, dict[str, float] | None]

    @property
    def metric(self) -> str:
        """The objective's key in ``evaluate``'s dict (``val_accuracy`` -> ``accuracy``)."""
        return self.objective.removeprefix("val_")

    def score(self, split: str = "validation", *, best: bool = False) -> float | None:
        """The objective's metric on ``split`` (``validation`` or ``test``) for the ensemble,
        or with ``best=True`` for the best single trial; None when that split is absent."""
        scores = (self.best_scores if best else self.scores).get(split)
        if not scores:
            return None
        return scores.get(self.metric, scores.get("loss"))

    def predict(self, x: Any, **kwargs: Any) -> Any:
        """``self.model.predict(x, **kwargs)``: the mean of the members' predictions."""
        return self.model.predict(x, **kwargs)

    def evaluate(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """``self.model.evaluate(x, y, **kwargs)``."""
        return self.model.evaluate(x, y, **kwargs)

    def save(self, filepath: str | Path) -> Path:
        """Write :attr:`model` to ``filepath`` (``.keras``) atomically; returns the path.

        Raises:
            ConfigError: ``filepath`` does not end in ``.keras`` or is a directory.
            OSError: It cannot be written (nothing is left half-written).
        """
        from kerastune_kit._saving import save_model_atomically
        from kerastune_kit.runs import check_model_path

        path = check_model_path(filepath)
        save_model_atomically(self.model, path)
        return path

    def summary_lines(self) -> list[str]:
        """One line per split: the ensemble's score next to the best single trial's
        (``validation accuracy: ensemble 0.9667, best trial (0002) 0.9333``), or
        ``test: n/a (no test split)``."""
        lines = []
        for split in SPLITS:
            ours, single = self.score(split), self.score(split, best=True)
            if ours is None or single is None:
                lines.append(f"{split}: n/a (no {split} split)")
                continue
            lines.append(f"{split} {self._metric_label(split)}: ensemble {ours:.4f}, "
                         f"best trial ({self.best_trial_id}) {single:.4f}")
        return lines

    def _metric_label(self, split: str) -> str:
        scores = self.scores.get(split) or {}
        return self.metric if self.metric in scores else "loss"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the sidecar file of :func:`export_ensemble`)."""
        return {"trial_ids": list(self.trial_ids), "requested": self.requested,
                "objective": self.objective, "scores": self.scores,
                "best_trial_id": self.best_trial_id, "best_scores": self.best_scores}


def check_ensemble_size(k: Any) -> int:
    """``k`` as the number of trials to average: an integer of 2 or more.

    Raises:
        ConfigError: ``k`` is not an integer, or below 2 (one line).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(
            f"ensemble: expected an integer of 2 or more (the number of trials to average), "
            f"received {k!r}; pass for example --ensemble 3 (export without --ensemble writes "
            "the best trial alone)")
    return int(k)


def _hyperparameter_key(record: TrialRecord) -> str:
    return json.dumps(record.hyperparameters, sort_keys=True, default=str)


def distinct_top_trials(records: Iterable[TrialRecord], k: int, *,
                        has_checkpoint: Callable[[TrialRecord], bool] | None = None,
                        direction: str | None = None) -> list[TrialRecord]:
    """The best ``k`` ranked trials with a checkpoint, one per distinct hyperparameter set.

    A Hyperband configuration promoted twice is three trials with the same hyperparameters: only
    its best-ranked trial is kept. Trials that :func:`~kerastune_kit.results.is_ranked` rejects
    (diverged, failed, running) never count.

    Args:
        records: Trial records, best first (:class:`~kerastune_kit.results.RunResults`), or in
            any order with ``direction``.
        k: How many to return at most.
        has_checkpoint: Whether a trial's checkpoint file exists (None: assume it does).
        direction: ``max`` or ``min`` to rank ``records`` first; None: they are ranked.

    Returns:
        Up to ``k`` records, best first.
    """
    from kerastune_kit.results import rank

    ordered = rank(records, direction) if direction else list(records)
    chosen: list[TrialRecord] = []
    seen: set[str] = set()
    for record in ordered:
        if len(chosen) >= k:
            break
        if not is_ranked(record) or (has_checkpoint is not None and not has_checkpoint(record)):
            continue
        key = _hyperparameter_key(record)
        if key not in seen:
            seen.add(key)
            chosen.append(record)
    return chosen


def average_models(models: Sequence[Any], *, names: Sequence[str] | None = None,
                   name: str = "ensemble") -> Any:
    """One functional ``keras.Model`` whose output is the mean of ``models``' outputs.

    The models must take the same inputs (shapes, dtypes, structure: one tensor, a list or a
    dict of named inputs) and return outputs of the same shapes. Each becomes a nested,
    uncompiled functional model sharing its layers and weights (so the file carries no
    optimizer per member), and their outputs meet in ``keras.layers.Average`` (per output for
    several outputs). The result is compiled from the first model's compile configuration
    (loss, metrics, a fresh optimizer of its kind, built so that loading restores every slot).

    Args:
        models: Two or more ``keras.Model``s with defined inputs (functional, or Sequential
            models started with ``keras.Input``).
        names: The nested models' names (default ``member_0``, ``member_1``, ...); unique.
        name: The ensemble's name.

    Returns:
        The ensemble, a ``keras.Model``.

    Raises:
        ConfigError: Fewer than two models, or a model without defined inputs.

    Example:
        >>> ensemble = average_models(tuner.get_best_models(3))
        >>> ensemble.predict(x_val).shape
        (30, 3)
    """
    from kerastune_kit._backend import keras as _keras

    keras = _keras()
    models = list(models)
    if len(models) < 2:
        raise ConfigError(f"models: an ensemble averages 2 or more models, received "
                          f"{len(models)}; pass more models")
    names = list(names) if names is not None else [f"member_{i}" for i in range(len(models))]
    members = []
    for model, member_name in zip(models, names, strict=True):
        inputs, outputs = _inputs_and_outputs(model)
        members.append(keras.Model(inputs, outputs, name=member_name))
    first = models[0]
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype,
                              name=None if (t.name or "keras_tensor").startswith("keras_tensor")
                              else t.name), _inputs_and_outputs(first)[0])
    outputs = [member(inputs) for member in members]
    flat = [keras.tree.flatten(out) for out in outputs]
    averaged = [keras.layers.Average(name="average" if len(flat[0]) == 1 else f"average_{i}")(
        [out[i] for out in flat]) for i in range(len(flat[0]))]
    ensemble = keras.Model(inputs, keras.tree.pack_sequence_as(outputs[0], averaged),
                           name=name)
    compile_config = first.get_compile_config() if getattr(first, "compiled", False) else None
    if compile_config:
        ensemble.compile_from_config(compile_config)  # builds the optimizer too
    return ensemble


def _inputs_and_outputs(model: Any) -> tuple[Any, Any]:
    """A model's symbolic inputs and outputs, in their structure (a tensor, list or dict)."""
    try:
        return model.input, model.output
    except (AttributeError, ValueError):  # a Sequential model has only the flat lists
        inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ConfigError(
            f"models: '{model.name}' has no defined inputs; build it with keras.Input "
            "(functional, or Sequential starting with keras.Input)")
    return (inputs[0] if len(inputs) == 1 else list(inputs),
            outputs[0] if len(outputs) == 1 else list(outputs))


def split_inputs(dataset: Any, split: str) -> tuple[Any, Any] | None:
    """``(x, y)`` of a :class:`~kerastune_kit.data.Dataset` split as an exported model takes
    them: the raw features (the preprocessing undone: ``x * scale + mean`` for
    ``standardize``, ``x / factor`` for ``rescale``), or for a structured CSV the raw columns
    as ``tf.constant`` s. None when the split is absent (``test`` without a test split).

    Args:
        dataset: The run's dataset.
        split: ``val`` or ``test``.
    """
    import numpy as np

    y = getattr(dataset, f"y_{split}", None)
    step = dataset.preprocessing
    if step is not None and step.kind == "feature_space":
        columns = getattr(dataset, f"raw_x_{split}", None)
        if columns is None or y is None:
            return None
        import tensorflow as tf

        return {name: tf.constant(values) for name, values in columns.items()}, y
    x = getattr(dataset, f"x_{split}", None)
    if x is None or y is None:
        return None
    if step is not None and step.kind == "standardize":
        x = np.asarray(x, dtype=np.float64) * np.asarray(step.scale) + np.asarray(step.mean)
    elif step is not None and step.kind == "rescale":
        x = np.asarray(x, dtype=np.float64) / float(step.factor)
    return np.asarray(x, dtype=np.float32), y


def rebuild_search(run_dir: str | Path) -> tuple[Any, Any]:
    """The tuner of a ``run_search`` run and its data, rebuilt from ``RUN/config.toml`` as the
    search built them (:func:`~kerastune_kit.session.prepare`,
    :func:`~kerastune_kit.tuners.build_tuner`); nothing is written.

    Returns:
        ``(tuner, dataset)``.

    Raises:
        RunDirError: The run has no ``config.toml``, or its data changed since the search.
        ConfigError, DataError: The saved configuration's data cannot be loaded any more.
    """
    from kerastune_kit.config import SearchConfig, load_saved_config
    from kerastune_kit.session import prepare
    from kerastune_kit.tuners import build_tuner

    run_dir = Path(run_dir)
    layout = RunDir(run_dir)
    saved = load_saved_config(run_dir)
    config = SearchConfig(**{**saved, "run_dir": str(run_dir), "overwrite": False,
                             "resume": True})
    dataset, _, hypermodel, objective = prepare(config, check_run_dir=False)
    recorded = layout.read_marker().get("data_fingerprint")
    if recorded and recorded != dataset.fingerprint():
        raise RunDirError(
            f"data: the data behind '{config.data}' changed since the search in '{run_dir}' "
            "(its scores would not be the search's); restore that data, or pass "
            "validation_data= in Python")
    return build_tuner(config, hypermodel, objective=objective), dataset


def _member_model(tuner: Any, trial_id: str) -> Any:
    """A trial's model as ``best_model.keras`` holds the best one: KerasTuner's
    ``load_model`` (its best epoch's checkpoint), behind the preprocessing for our factories."""
    from kerastune_kit.hypermodels import KitHyperModel

    model = tuner.load_model(tuner.oracle.get_trial(trial_id))
    if isinstance(tuner.hypermodel, KitHyperModel):
        model = tuner.hypermodel.inference_model(model)
    return model


def _evaluate(model: Any, data: tuple[Any, Any] | None) -> dict[str, float] | None:
    if data is None:
        return None
    x, y = data
    scores = model.evaluate(x, y, verbose=0, return_dict=True)
    return {str(key): float(value) for key, value in scores.items()}


def _check_data(value: Any, name: str) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{name}: expected a tuple (x, y), received {type(value).__name__}; "
                          f"pass {name}=(x, y)")
    return value[0], value[1]


def build_ensemble(results: RunResults, k: int, *, tuner: Any = None,
                   validation_data: tuple[Any, Any] | None = None,
                   test_data: tuple[Any, Any] | None = None) -> Ensemble:
    """Average the top-``k`` distinct trials of a run and score the result next to the best.

    For a run of ``run_search`` / ``python -m kerastune_kit search`` everything comes from the
    run directory: the tuner is rebuilt from ``RUN/config.toml`` and the data reloaded as the
    search loaded it (``validation_data`` / ``test_data`` replace its splits when given, in
    the exported model's raw inputs). For a run of a public tuner around your own model
    (``kk.RandomSearch(build_model, ...)``) pass that ``tuner`` (constructed again on the same
    directory, as KerasTuner reloads one) and ``validation_data``; members are then your models
    as they are, and the ensemble averages their outputs (probabilities if they end in softmax).

    Args:
        results: The run (:func:`~kerastune_kit.runs.load_results`).
        k: Trials to average, 2 or more. Fewer distinct trials with a checkpoint: those are
            used, with one warning on the ``kerastune_kit`` logger.
        tuner: The tuner of the run (needed for a run of a public tuner).
        validation_data: ``(x, y)``: score on these instead of the run's validation split.
        test_data: ``(x, y)``: score on these instead of the run's test split.

    Returns:
        The :class:`Ensemble`.

    Raises:
        ConfigError: ``k`` is not an integer of 2 or more; ``validation_data`` is missing for a
            public tuner's run, or not a pair; ``tuner`` belongs to another directory.
        RunDirError: Fewer than 2 distinct trials have a checkpoint; the run was read from
            event files alone; its data changed since the search.
    """
    k = check_ensemble_size(k)
    run_dir = Path(results.run_dir)
    layout = RunDir(run_dir)
    if results.source != "leaderboard":
        raise RunDirError(
            f"run_dir: '{run_dir}' holds only TensorBoard event files, no trial checkpoints; "
            "an ensemble needs the run directory of a search")
    validation_data = _check_data(validation_data, "validation_data")
    test_data = _check_data(test_data, "test_data")
    stage_tuners: dict[int, Any] = {}  # a --refine search: each stage's own tuner
    if tuner is None:
        if not layout.config.is_file():
            raise ConfigError(
                f"tuner: '{run_dir}' holds a search of your own model (no config.toml to "
                "rebuild its trials from); in Python pass that tuner and data: "
                "load_results(run).ensemble(k, tuner=tuner, validation_data=(x_val, y_val))")
        tuner, dataset = rebuild_search(run_dir)
        stage_tuners[1] = tuner
        validation_data = validation_data or split_inputs(dataset, "val")
        test_data = test_data or split_inputs(dataset, "test")
    else:
        where = Path(str(getattr(tuner, "kit_run_dir", "")))
        if not hasattr(tuner, "kit_run_dir") or where.resolve() != run_dir.resolve():
            raise ConfigError(
                f"tuner: expected a kerastune_kit tuner on '{run_dir}', received one on "
                f"'{where}'; construct it with the run's directory and project_name")
        if validation_data is None:
            raise ConfigError(
                "validation_data: a run of your own model keeps no data; pass "
                "validation_data=(x_val, y_val) as the model takes them")

    def locate(record: TrialRecord) -> tuple[Any, str]:
        """The tuner that ran ``record`` and its id there: a ``--refine`` stage's trial
        (``stage-2/0003``) lives in ``RUN/stages/2``'s own tuner as ``0003``."""
        stage, local = split_stage_trial_id(record.trial_id)
        if stage is None or not stage_tuners:
            return tuner, record.trial_id
        if stage not in stage_tuners:
            stage_tuners[stage] = rebuild_search(layout.stage_dir(stage))[0]
        return stage_tuners[stage], local

    def has_checkpoint(record: TrialRecord) -> bool:
        owner, local = locate(record)
        return Path(owner._get_checkpoint_fname(local)).is_file()

    chosen = distinct_top_trials(results.trials, k, has_checkpoint=has_checkpoint)
    if len(chosen) < 2:
        raise RunDirError(
            f"ensemble: '{run_dir}' has {len(chosen)} distinct trial(s) with a checkpoint, an "
            "ensemble needs 2; run more trials (search --resume) or export the best alone")
    if len(chosen) < k:
        logger.warning("ensemble: %d trials requested, '%s' has %d distinct trials with a "
                       "checkpoint; averaging those %d", k, run_dir, len(chosen), len(chosen))
    members = [_member_model(*locate(record)) for record in chosen]
    model = average_models(members, names=[f"trial_{r.trial_id.replace('/', '_')}"
                                           for r in chosen],
                           name=f"ensemble_of_{len(chosen)}")
    objective = results.objective or tuner.oracle.objective.name
    return Ensemble(
        model=model, trial_ids=[r.trial_id for r in chosen], requested=k,
        objective=objective,
        scores={"validation": _evaluate(model, validation_data),
                "test": _evaluate(model, test_data)},
        best_trial_id=chosen[0].trial_id,
        best_scores={"validation": _evaluate(members[0], validation_data),
                     "test": _evaluate(members[0], test_data)},
    )


def export_ensemble(run_dir: str | Path, k: int, output: str | Path
                    ) -> tuple[Ensemble, Path, Path]:
    """``export RUN --ensemble K --output PATH``: the ensemble (``.keras``) and a sidecar
    (``PATH`` with ``.json``: members and their hyperparameters, scores, what the model takes
    and returns), both written atomically.

    Raises:
        ConfigError: ``k`` below 2 or not an integer; ``output`` not a ``.keras`` file path.
        RunDirError: See :func:`build_ensemble`; also a run of a public tuner (Python only).
        WriteError: ``output`` cannot be written; nothing is left half-written.
    """
    from kerastune_kit._saving import save_model_atomically
    from kerastune_kit.runs import check_model_path, load_results, write_export

    k = check_ensemble_size(k)
    output = check_model_path(output)
    results = load_results(run_dir)
    ensemble = build_ensemble(results, k)
    by_id = {record.trial_id: record for record in results.trials}
    card = dict(RunDir(run_dir).read_best_hyperparameters().get("model_card") or {})
    if card.get("outputs"):
        card["outputs"] = (f"the mean of {len(ensemble.trial_ids)} trials' "
                           f"{card['outputs']}")
    sidecar = output.with_suffix(".json")
    summary = {
        **ensemble.to_json(),
        "members": [{"trial_id": trial_id, "score": by_id[trial_id].score,
                     "hyperparameters": by_id[trial_id].hyperparameters}
                    for trial_id in ensemble.trial_ids],
        "model_card": card, "model": output.name, "run_dir": str(run_dir),
    }
    write_export(output, lambda tmp: save_model_atomically(ensemble.model, tmp), sidecar,
                 summary)
    return ensemble, output, sidecar

