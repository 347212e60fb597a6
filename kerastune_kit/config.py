"""The validated search configuration.

Owns: :class:`SearchConfig`, reading it from a TOML file, merging CLI flags over it, validating
every field with a one-line message (field, value received, fix), and writing the effective
configuration back as TOML. Does not own: datasets, search spaces or anything that needs
TensorFlow (this module imports none of it), or where a run keeps its files
(:class:`~kerastune_kit.rundir.RunDir`, which it builds on).

Example:
    >>> cfg = SearchConfig(data="iris", tuner="random", max_trials=4)
    >>> cfg.effective_run_dir().name
    'iris-random'
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from kerastune_kit.errors import ConfigError
from kerastune_kit.rundir import RunDir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TunerName = Literal["hyperband", "bohb", "bayesian", "tpe", "random", "grid"]
ModelName = Literal["auto", "mlp", "cnn"]
TaskName = Literal["binary", "multiclass", "regression"]

TUNERS: tuple[str, ...] = ("hyperband", "bohb", "bayesian", "tpe", "random", "grid")
#: Tuners that run Hyperband's brackets (``max_epochs`` and ``factor`` define them).
BRACKET_TUNERS: tuple[str, ...] = ("hyperband", "bohb")
#: The trial cap of a search bounded by ``max_time`` alone (4-digit trial ids).
TIME_BUDGET_TRIALS = 9999
MODELS: tuple[str, ...] = ("auto", "mlp", "cnn")
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
PRUNERS: tuple[str, ...] = ("none", "median", "percentile", "asha")

#: Fields that change what a search computes; ``--resume`` refuses a run whose saved values differ.
RESUME_KEYS: tuple[str, ...] = (
    "data", "target", "task", "model", "tuner", "max_epochs", "objective", "seed",
    "validation_split", "factor", "overrides", "pruner", "pruner_warmup_trials",
    "pruner_min_epoch", "pruner_percentile", "min_steps_per_epoch", "patience", "baselines",
    "categorical_columns", "numeric_columns", "text_columns", "test_split",
    "explosion_factor", "refine", "refine_factor",
)
#: The options that force the kind of a ``.csv`` column, and their CLI flags.
COLUMN_OPTIONS: dict[str, str] = {"categorical_columns": "--categorical",
                                  "numeric_columns": "--numeric",
                                  "text_columns": "--text-columns"}


@dataclasses.dataclass
class SearchConfig:
    """Everything one search needs, validated at construction.

    Attributes:
        data: A bundled dataset name (``digits``, ``iris``, ...) or a path to ``.npz``/``.csv``.
        target: Target column of a ``.csv`` dataset.
        task: Force the task (``binary``, ``multiclass``, ``regression``); inferred when None.
        model: HyperModel family: ``mlp``, ``cnn``, or ``auto`` (the CNN for image-shaped
            samples, the MLP for feature vectors).
        tuner: ``hyperband``, ``bohb`` (Hyperband whose new configurations come from a TPE
            model of the finished trials), ``bayesian`` (Gaussian process), ``tpe`` (Optuna's
            TPE sampler), ``random`` or ``grid``.
        max_trials: Upper bound on trials; None means the oracle's own budget (one full
            Hyperband iteration, or 10 trials for the other oracles), or, with ``max_time``,
            as many as the time allows (Hyperband runs further iterations).
        max_epochs: Epochs of the longest trial (Hyperband's ``max_epochs``; every
            trial's epoch count for the other oracles).
        objective: Metric to optimize, such as ``val_accuracy``; None picks the task's default.
        run_dir: Where results go; None means :meth:`default_run_dir`:
            ``runs/<dataset>-<tuner>``, or ``runs/<dataset>-<model>-<tuner>`` when ``model`` is
            not ``auto``.
        seed: Seeds the split, the oracle and every trial's initialisation.
        overwrite: Delete an existing run directory first.
        resume: Continue the search saved in an existing run directory.
        overrides: Search-space overrides, knob name to a value, a list of choices,
            or a ``{min, max, log}`` range.
        validation_split: Share of the data held out when the dataset has no validation split.
        factor: Hyperband's reduction factor.
        max_consecutive_failures: Stop the search after this many failed trials in a row
            (diverged and pruned trials never count).
        max_retries: Times a trial that crashed is retried before it is recorded as FAILED.
        max_time: Wall-clock budget in seconds: no trial starts after it, and the running
            trial stops at its next epoch end and is left to ``--resume``.
        pruner: ``none``, ``median``, ``percentile`` or ``asha``: stops trials early from their
            per-epoch objective (random, Bayesian and grid search; Hyperband prunes by itself).
        pruner_warmup_trials: Finished trials a median/percentile pruner waits for.
        pruner_min_epoch: No trial is pruned before this epoch index (ASHA's first rung).
        pruner_percentile: Share of trials the percentile pruner keeps, in percent.
        baselines: Start with the popular designs of the model family
            (:data:`kerastune_kit.designs.POPULAR_DESIGNS`: LeNet and a small VGG for the CNN,
            two MLPs), trained to ``max_epochs``, before the tuner's own trials.
        min_steps_per_epoch: Optimizer steps an epoch takes at least: data too small for
            that many batches are passed over several times per epoch, so a trial on 353
            samples learns as much per epoch as one on thousands. 0 turns it off.
        patience: Stop a trial after this many epochs without improving the objective
            (``keras.callbacks.EarlyStopping``); None picks ``max(3, max_epochs // 5)``, 0 turns
            it off. Hyperband's shortest rungs are shorter than that.
        trials_per_worker: Run trials in a worker process replaced after this many trials, so
            memory stays flat over long searches; 0 runs everything in this process. Searches
            of at most this many trials always run in this process.
        categorical_columns: ``.csv`` columns to treat as categorical (one-hot), whatever the
            column-kind rule infers (:class:`kerastune_kit.data.FeatureColumn`).
        numeric_columns: ``.csv`` columns of numbers to treat as numeric (e.g. small integer
            codes that are really counts).
        text_columns: ``.csv`` free-text columns to keep, as a bag of words, instead of
            dropping them.
        test_split: Share of the data held out as a test set that the search never sees,
            when the data has no test split of its own (``x_test``/``y_test`` in an ``.npz``);
            stratified for classes. 0 holds out nothing. The best trial is evaluated on it
            after the search.
        refit: After the search, retrain the best configuration on train + validation for
            its best epoch count and export that model.
        preflight: Before the search, check the initial loss against its chance value and
            that the first baseline configuration overfits a tiny subset (a few seconds).
            None (the default): only before a search of 20 trial-epochs or more, or with a
            ``max_time`` (:func:`kerastune_kit.preflight.short_search_reason`); True: always;
            False: never.
        explosion_factor: A trial whose training loss exceeds this many times its first
            epoch's loss is recorded as diverged ("if the cost is ever more than 3x the
            original cost, break out early"); 0 turns the rule off.
        refine: Coarse-to-fine stages after the first: each narrows the space around the
            previous stage's top trials and trains ``refine_factor`` times longer.
        refine_factor: How much longer (``max_epochs`` times this) each refine stage trains.
    """

    data: str = "digits"
    target: str | None = None
    task: str | None = None
    model: str = "auto"
    tuner: str = "hyperband"
    max_trials: int | None = None
    max_epochs: int = 9
    objective: str | None = None
    run_dir: str | None = None
    seed: int = 0
    overwrite: bool = False
    resume: bool = False
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    validation_split: float = 0.2
    factor: int = 3
    max_consecutive_failures: int = 10
    max_retries: int = 0
    max_time: float | None = None
    pruner: str = "none"
    pruner_warmup_trials: int = 3
    pruner_min_epoch: int = 1
    pruner_percentile: float = 25.0
    trials_per_worker: int = 20
    baselines: bool = True
    min_steps_per_epoch: int = 50
    patience: int | None = None
    categorical_columns: list[str] | None = None
    numeric_columns: list[str] | None = None
    text_columns: list[str] | None = None
    test_split: float = 0.15
    refit: bool = False
    preflight: bool | None = None
    explosion_factor: float = 3.0
    refine: int = 0
    refine_factor: float = 2.0

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if not isinstance(self.data, str) or not self.data.strip():
            raise ConfigError(
                f"data: expected a dataset name or a file path, received {self.data!r}; "
                "run `python -m kerastune_kit datasets` to list the bundled ones"
            )
        _check_choice("model", self.model, MODELS)
        _check_choice("tuner", self.tuner, TUNERS)
        if self.task is not None:
            _check_choice("task", self.task, TASKS)
        if self.max_trials is not None:
            _check_int("max_trials", self.max_trials, minimum=1,
                       fix="pass --max-trials 1 or more, or leave it out for the tuner's default")
        _check_int("max_epochs", self.max_epochs, minimum=1, fix="pass --max-epochs 1 or more")
        _check_int("seed", self.seed, minimum=0, fix="pass a non-negative integer --seed")
        _check_int("factor", self.factor, minimum=2, fix="use a Hyperband factor of 2 or more")
        _check_int("max_consecutive_failures", self.max_consecutive_failures, minimum=1,
                   fix="use 1 or more")
        _check_int("max_retries", self.max_retries, minimum=0, fix="pass --max-retries 0 or more")
        _check_int("trials_per_worker", self.trials_per_worker, minimum=0,
                   fix="pass --trials-per-worker 0 (no workers) or more")
        _check_int("pruner_warmup_trials", self.pruner_warmup_trials, minimum=0, fix="use 0+")
        _check_int("pruner_min_epoch", self.pruner_min_epoch, minimum=0, fix="use 0 or more")
        _check_int("min_steps_per_epoch", self.min_steps_per_epoch, minimum=0,
                   fix="pass --min-steps-per-epoch 0 (off) or more")
        if self.patience is not None:
            _check_int("patience", self.patience, minimum=0,
                       fix="pass --patience 0 (no early stopping) or more")
        if not isinstance(self.baselines, bool):
            raise ConfigError(f"baselines: expected true or false, received {self.baselines!r}")
        _check_choice("pruner", self.pruner, PRUNERS)
        if self.pruner != "none" and self.tuner in BRACKET_TUNERS:
            raise ConfigError(
                f"pruner: Hyperband prunes through its own brackets, received "
                f"--pruner {self.pruner} with --tuner {self.tuner}; use --tuner random, "
                "bayesian, tpe or grid, or --pruner none"
            )
        if self.max_time is not None and (
            isinstance(self.max_time, bool) or not isinstance(self.max_time, (int, float))
            or not math.isfinite(self.max_time) or self.max_time <= 0
        ):
            raise ConfigError(
                f"max_time: expected a positive duration, received {self.max_time!r}; pass for "
                "example --max-time 90s, 30m or 2h"
            )
        if (isinstance(self.pruner_percentile, bool)
                or not isinstance(self.pruner_percentile, (int, float))
                or not 0 < self.pruner_percentile <= 100):
            raise ConfigError(
                f"pruner_percentile: expected a share in (0, 100], received "
                f"{self.pruner_percentile!r}"
            )
        if (
            isinstance(self.validation_split, bool)
            or not isinstance(self.validation_split, (int, float))
            or not 0.0 < float(self.validation_split) < 1.0
        ):
            raise ConfigError(
                f"validation_split: expected a number strictly between 0 and 1, received "
                f"{self.validation_split!r}; use for example 0.2"
            )
        if self.objective is not None and (
            not isinstance(self.objective, str) or not self.objective.strip()
        ):
            raise ConfigError(
                f"objective: expected a metric name such as 'val_accuracy', received "
                f"{self.objective!r}"
            )
        if self.overwrite and self.resume:
            raise ConfigError(
                "overwrite/resume: received both --overwrite and --resume; pass only one"
            )
        self._validate_recipe()
        self._validate_columns()
        if not isinstance(self.overrides, Mapping):
            raise ConfigError(
                f"overrides: expected a table of knob = value, received {self.overrides!r}"
            )
        self.overrides = _plain(dict(self.overrides))

    def _validate_recipe(self) -> None:
        """The held-out test split, the preflight, the explosion rule and the refine stages."""
        if (isinstance(self.test_split, bool) or not isinstance(self.test_split, (int, float))
                or not 0.0 <= float(self.test_split) < 1.0):
            raise ConfigError(
                f"test_split: expected a share in [0, 1), received {self.test_split!r}; use "
                "for example 0.15, or 0 to hold out no test set"
            )
        for name in ("refit", "preflight"):
            if name == "preflight" and self.preflight is None:
                continue
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{name}: expected true or false, received {getattr(self, name)!r}"
                )
        if isinstance(self.explosion_factor, str) and self.explosion_factor.lower() == "off":
            self.explosion_factor = 0.0
        if (isinstance(self.explosion_factor, bool)
                or not isinstance(self.explosion_factor, (int, float))
                or not math.isfinite(self.explosion_factor)
                or (self.explosion_factor != 0 and self.explosion_factor <= 1)):
            raise ConfigError(
                f"explosion_factor: expected a number above 1 (or 0 for off), received "
                f"{self.explosion_factor!r}; use for example 3, or off"
            )
        _check_int("refine", self.refine, minimum=0, fix="pass --refine 0 (off) or more")
        if (isinstance(self.refine_factor, bool)
                or not isinstance(self.refine_factor, (int, float))
                or not math.isfinite(self.refine_factor) or self.refine_factor < 1):
            raise ConfigError(
                f"refine_factor: expected a number of 1 or more, received "
                f"{self.refine_factor!r}; use for example 2"
            )

    def _validate_columns(self) -> None:
        """Normalise the column options to lists of names (None when empty) and check them: a
        ``.csv`` dataset, no name twice, not the target."""
        seen: dict[str, str] = {}
        for option, flag in COLUMN_OPTIONS.items():
            value = getattr(self, option)
            if isinstance(value, str):
                value = value.split(",")
            if value is not None and (
                not isinstance(value, (list, tuple))
                or not all(isinstance(name, str) and name.strip() for name in value)
            ):
                raise ConfigError(
                    f"{option}: expected a list of column names, received {value!r}; pass for "
                    f"example {flag} origin,cylinders"
                )
            names = list(dict.fromkeys(name.strip() for name in value or ())) or None
            for name in names or ():
                if name == self.target:
                    raise ConfigError(
                        f"{option}: {name!r} is the --target column, received it in {flag}; "
                        "name feature columns only"
                    )
                if name in seen:
                    raise ConfigError(
                        f"{option}: column {name!r} is also in {seen[name]}, received both; "
                        "name each column in one of --categorical, --numeric, --text-columns"
                    )
                seen[name] = option
            if names and Path(self.data).suffix.lower() != ".csv":
                raise ConfigError(
                    f"{option}: only a .csv dataset has named columns, received data "
                    f"{self.data!r} with {flag}; drop {flag} or pass a .csv file"
                )
            setattr(self, option, names)

    # ------------------------------------------------------------------ derived values
    def effective_run_dir(self) -> Path:
        """The run directory: ``run_dir``, or :meth:`default_run_dir`."""
        if self.run_dir:
            return Path(self.run_dir)
        return self.default_run_dir()

    def default_run_dir(self) -> Path:
        """``runs/<dataset>-<tuner>``, with the model family in the middle when one was chosen
        (``runs/digits-cnn-hyperband`` for ``model="cnn"``), so searches that differ in what
        the user chose get directories of their own.

        Example:
            >>> SearchConfig(model="cnn").default_run_dir().name
            'digits-cnn-hyperband'
        """
        stem = Path(self.data).stem if _looks_like_path(self.data) else self.data.lower()
        family = "" if self.model == "auto" else f"-{self.model}"
        return Path("runs") / f"{stem}{family}-{self.tuner}"

    def legacy_run_dir(self) -> Path:
        """The default before the model family was part of it: ``runs/<dataset>-<tuner>``
        (where ``--resume`` still finds a ``--model mlp|cnn`` search started by an older
        version)."""
        stem = Path(self.data).stem if _looks_like_path(self.data) else self.data.lower()
        return Path("runs") / f"{stem}-{self.tuner}"

    def effective_max_trials(self) -> int | None:
        """``max_trials``, or the default budget of the chosen oracle: one Hyperband
        iteration (None), 10 trials for the others, and with ``max_time`` alone
        :data:`TIME_BUDGET_TRIALS` (the time is the budget)."""
        if self.max_trials is not None:
            return self.max_trials
        if self.tuner in BRACKET_TUNERS:
            return None
        return TIME_BUDGET_TRIALS if self.max_time else 10

    def effective_patience(self) -> int:
        """Epochs without improvement before a trial stops early (0: never)."""
        if self.patience is not None:
            return self.patience
        return max(3, self.max_epochs // 5)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain values (None fields left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if v is not None}

    def to_toml(self, fingerprint: Mapping[str, str] | None = None) -> str:
        """The effective configuration as TOML, in the layout :func:`load_toml` reads.

        Args:
            fingerprint: Hashes of the data and the search space, written as a
                ``[fingerprint]`` table that ``--resume`` checks.
        """
        import tomli_w

        search = {
            k: v for k, v in self.to_dict().items()
            if k not in ("overrides", "overwrite", "resume")
        }
        search["run_dir"] = str(self.effective_run_dir())
        doc: dict[str, Any] = {"search": search}
        if self.overrides:
            doc["space"] = self.overrides
        if fingerprint:
            doc["fingerprint"] = dict(fingerprint)
        return tomli_w.dumps(doc)

    def resume_fingerprint(self) -> dict[str, Any]:
        """The values ``--resume`` compares against the saved configuration."""
        data = self.to_dict()
        data["patience"] = self.effective_patience()  # None means the default: compare that
        if not self.refine:  # no refine stages: their length factor changes nothing
            data["refine_factor"] = None
        return {k: data.get(k) for k in RESUME_KEYS}

    def check_against_saved(self) -> None:
        """Refuse to resume the search saved in the run directory with a setting changed
        (:func:`check_resume_settings`; what ``rundir.check_run_dir_for_search`` calls).

        Raises:
            RunDirError: One line naming the setting, the saved value and the received one.
        """
        check_resume_settings(self)


# ---------------------------------------------------------------------- loading / merging
def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into keyword arguments for :class:`SearchConfig`.

    The file has a ``[search]`` table with :class:`SearchConfig` fields and an optional
    ``[space]`` table of search-space overrides.

    Raises:
        ConfigError: The file is missing, is not TOML, or names an unknown field.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file '{path}' does not exist; pass an existing TOML file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: '{path}' is not valid TOML ({exc}); fix the file") from None
    for table in ("search", "space"):
        if table in doc and not isinstance(doc[table], dict):
            raise ConfigError(
                f"config: {table} in '{path}' must be a table, received {doc[table]!r}; write "
                f"[{table}] on its own line followed by key = value lines"
            )
    unknown_tables = sorted(set(doc) - {"search", "space", "fingerprint"})
    if unknown_tables:
        raise ConfigError(
            f"config: unknown table [{unknown_tables[0]}] in '{path}'; "
            "expected [search] and [space]"
        )
    search = dict(doc.get("search", {}))
    _check_field_names(search, source=f"[search] in '{path}'")
    if "space" in doc:
        search["overrides"] = dict(doc["space"])
    return search


def build_config(
    file_values: Mapping[str, Any] | None = None, **flags: Any
) -> SearchConfig:
    """Merge CLI flags (those not None) over values from a config file and validate.

    Example:
        >>> build_config({"data": "iris", "max_epochs": 3}, max_epochs=5).max_epochs
        5
    """
    values: dict[str, Any] = dict(file_values or {})
    overrides = dict(values.pop("overrides", {}) or {})
    flag_overrides = flags.pop("overrides", None) or {}
    overrides.update(flag_overrides)
    _check_field_names(flags, source="arguments")
    for key, value in flags.items():
        if value is not None:
            values[key] = value
    values["overrides"] = overrides
    return SearchConfig(**values)


def parse_set_flags(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set KNOB=VALUE`` flags into overrides.

    ``VALUE`` is a single value (fixes the knob: ``normalization=batch``, ``units=64``,
    ``clipnorm=off``), a comma-separated list (restricts choices: ``optimizer=adam,sgd``), or a
    range ``MIN..MAX`` (narrows or widens: ``learning_rate=1e-4..1e-2``).

    Raises:
        ConfigError: A flag is not ``KNOB=VALUE``.
    """
    overrides: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise ConfigError(
                f"--set: expected KNOB=VALUE, received {item!r}; "
                "for example --set normalization=batch or --set learning_rate=1e-4..1e-2"
            )
        if ".." in raw:
            low, _, high = raw.partition("..")
            overrides[name] = {"min": _parse_scalar(low), "max": _parse_scalar(high)}
        elif "," in raw:
            overrides[name] = [_parse_scalar(v) for v in raw.split(",") if v.strip()]
        else:
            overrides[name] = _parse_scalar(raw)
    return overrides


#: Settings added after runs were first saved, with the value that reproduces what a run saved
#: without them computed (no test split, no explosion rule), so such a run still resumes.
_BEFORE_THEY_EXISTED: dict[str, Any] = {"test_split": 0.0, "explosion_factor": 0.0}


def load_saved_config(run_dir: str | Path) -> dict[str, Any]:
    """Read ``RUN/config.toml`` back as keyword arguments (for ``--resume``); a setting the
    saved file predates gets the value that run used (:data:`_BEFORE_THEY_EXISTED`)."""
    values = load_toml(RunDir(run_dir).config)
    return {**_BEFORE_THEY_EXISTED, **values}


def resume_base(file_values: Mapping[str, Any] | None, *, run_dir: str | None,
                data: str | None, tuner: str | None,
                model: str | None = None) -> dict[str, Any]:
    """The settings a resumed search starts from: the saved ``RUN/config.toml`` under
    ``file_values`` (a ``--config`` file), which CLI flags then override.

    The run directory is ``run_dir`` (``--run-dir``), else the config file's, else the default
    for the given ``data``, ``tuner`` and ``model`` (:meth:`SearchConfig.default_run_dir`; for
    a ``model`` other than ``auto`` whose default holds nothing, the older
    ``runs/<dataset>-<tuner>`` when the search saved there used that model). When it holds no
    saved configuration, ``file_values`` is returned unchanged (the run-directory check then
    says there is nothing to resume).

    Example:
        >>> resume_base(None, run_dir="runs/iris-random", data=None, tuner=None)["tuner"]
        'random'
    """
    values = dict(file_values or {})
    where = run_dir or values.get("run_dir")
    if not where:
        defaults = {k: v for k, v in (("data", data), ("tuner", tuner), ("model", model))
                    if v is not None}
        wanted = SearchConfig(**{**values, **defaults})
        where = str(wanted.default_run_dir())
        legacy = wanted.legacy_run_dir()
        if (wanted.model != "auto" and not RunDir(where).config.is_file()
                and _saved_model(legacy) == wanted.model):
            where = str(legacy)
    if not RunDir(where).config.is_file():
        return values
    saved = load_saved_config(where)
    overrides = {**dict(saved.pop("overrides", {}) or {}),
                 **dict(values.pop("overrides", {}) or {})}
    merged = {**saved, **values, "run_dir": str(where)}
    if overrides:
        merged["overrides"] = overrides
    return merged


def check_resume_settings(config: SearchConfig) -> None:
    """Refuse to resume with a setting that shapes the search (:data:`RESUME_KEYS`) changed.

    Raises:
        RunDirError: One line naming the setting, the saved value and the received one.
    """
    from kerastune_kit.errors import RunDirError

    run_dir = config.effective_run_dir()
    if not RunDir(run_dir).config.is_file():
        return
    saved = SearchConfig(**{**load_saved_config(run_dir), "run_dir": str(run_dir)})
    now, before = config.resume_fingerprint(), saved.resume_fingerprint()
    if before.get("objective") is None:  # saved before the default was resolved: run.json has it
        before["objective"] = _saved_objective(RunDir(run_dir))
    if now.get("objective") is None:  # not given: the task's default, which the run resolved
        now["objective"] = before["objective"]
    for key in RESUME_KEYS:
        if now.get(key) != before.get(key):
            raise RunDirError(
                f"{key}: the saved search in '{run_dir}' used {before.get(key)!r}, received "
                f"{now.get(key)!r}; resume with the same settings or pass --overwrite"
            )


def _saved_model(run_dir: Path) -> str | None:
    """The ``model`` saved in ``RUN/config.toml``, None when there is none to read."""
    search = RunDir(run_dir).read_config_document().get("search")
    return search.get("model", "auto") if isinstance(search, dict) else None


def _saved_objective(run_dir: RunDir) -> str | None:
    """The objective ``RUN/run.json`` names (the one the run resolved), None if it names none."""
    value = run_dir.read_marker().get("objective")
    return value if isinstance(value, str) else None


def load_saved_fingerprint(run_dir: str | Path) -> dict[str, str]:
    """The ``[fingerprint]`` table of ``RUN/config.toml`` (empty when absent)."""
    return RunDir(run_dir).read_fingerprint()


# ---------------------------------------------------------------------- helpers
def _parse_scalar(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``2h`` or ``1.5h``.

    Raises:
        ConfigError: Not a positive duration.
    """
    raw = str(text).strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:], None)
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"max_time: expected a duration such as 90s, 30m or 2h, received {text!r}"
        )
    return value


def _plain(value: Any) -> Any:
    """Tuples to lists and mappings to dicts, as they come back from TOML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or Path(value).suffix != ""


def _check_field_names(values: Mapping[str, Any], *, source: str) -> None:
    names = [f.name for f in dataclasses.fields(SearchConfig)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(names)}"
            raise ConfigError(f"{key}: unknown setting in {source}; {hint}")


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{field}: expected one of {', '.join(choices)}, received {value!r}{hint}"
        )


def _check_int(field: str, value: Any, *, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{field}: expected an integer >= {minimum}, received {value!r}; {fix}"
        )
