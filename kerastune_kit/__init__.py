"""kerastune_kit: tune Keras 3 / TensorFlow networks with KerasTuner, a fast GradientTape loop
and TensorBoard.

Importing the package is cheap: TensorFlow loads only when a name that needs it is first used.
TensorFlow's C++ start-up lines stay off stderr then, as in the CLI; set the environment
variable ``KERASTUNE_KIT_TF_LOGS=1`` to see TensorFlow's logs. Plots of a run for notebooks:
:mod:`kerastune_kit.plots`.

Examples:
    >>> import kerastune_kit as kk  # KerasTuner's tuners, one import changed
    >>> tuner = kk.RandomSearch(build_model, objective="val_accuracy", max_trials=3)
    >>> tuner.search(x, y, epochs=5, validation_split=0.2)

    >>> from kerastune_kit import SearchConfig, run_search  # the CLI's search
    >>> result = run_search(SearchConfig(data="iris", tuner="random", max_trials=3))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SearchConfig": "kerastune_kit.config",
    "SearchSpace": "kerastune_kit.space",
    "KNOBS": "kerastune_kit.space",
    "Dataset": "kerastune_kit.data",
    "load_dataset": "kerastune_kit.data",
    "list_datasets": "kerastune_kit.data",
    "MLPHyperModel": "kerastune_kit.hypermodels",
    "CNNHyperModel": "kerastune_kit.hypermodels",
    "CNN_KNOBS": "kerastune_kit.space",
    "TrainLoop": "kerastune_kit.training",
    "run_search": "kerastune_kit.tuning",
    "Hyperband": "kerastune_kit.tuners",
    "BayesianOptimization": "kerastune_kit.tuners",
    "RandomSearch": "kerastune_kit.tuners",
    "GridSearch": "kerastune_kit.tuners",
    "TPE": "kerastune_kit.tuners",
    "BOHB": "kerastune_kit.tuners",
    "SearchResult": "kerastune_kit.tuning",
    "KerastuneKitError": "kerastune_kit.errors",
    "ConfigError": "kerastune_kit.errors",
    "DataError": "kerastune_kit.errors",
    "RunDirError": "kerastune_kit.errors",
    "WriteError": "kerastune_kit.errors",
    "HParamsCallback": "kerastune_kit.callbacks",
    "load_results": "kerastune_kit.runs",
    "export_best": "kerastune_kit.runs",
    "Ensemble": "kerastune_kit.ensemble",
    "build_ensemble": "kerastune_kit.ensemble",
    "RunResults": "kerastune_kit.runs",
    "TrialRecord": "kerastune_kit.results",
    "TrialStatus": "kerastune_kit.trial_status",
    "RunDir": "kerastune_kit.rundir",
    "load_curves": "kerastune_kit.inspection",
    "hyperparameter_importance": "kerastune_kit.importance",
    "get_logger": "kerastune_kit._logging",
    "set_verbosity": "kerastune_kit._logging",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(_import_quietly(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerastune_kit' has no attribute {name!r}")


def _import_quietly(module: str) -> Any:
    """Import ``module``; when that loads TensorFlow for the first time, its C++ start-up lines
    stay off stderr (:func:`kerastune_kit._backend.quiet_tensorflow_start`; the environment
    variable ``KERASTUNE_KIT_TF_LOGS=1`` shows them)."""
    import sys

    if "tensorflow" in sys.modules:
        return importlib.import_module(module)
    from kerastune_kit._backend import native_stderr_silenced, quiet_tensorflow_start

    with native_stderr_silenced():
        imported = importlib.import_module(module)
    if "tensorflow" in sys.modules:
        quiet_tensorflow_start()  # the device probe (``failed call to cuInit`` without a GPU)
    return imported


def __dir__() -> list[str]:
    return __all__
