"""Error types of kerastune_kit.

Every error subclasses :class:`KerastuneKitError` and, where it makes sense, a builtin, so
``except ValueError`` keeps working for callers that do not know our types (the same contract as
KerasTuner's ``FatalValueError``). Messages are one line: the field, the value received, the fix.
"""

from __future__ import annotations


class KerastuneKitError(Exception):
    """Base class of every error raised on purpose by kerastune_kit."""


class ConfigError(KerastuneKitError, ValueError):
    """A configuration value, CLI flag or search-space override is invalid."""


class DataError(KerastuneKitError, ValueError):
    """A dataset cannot be found, read or used for the requested task."""


class RunDirError(KerastuneKitError, ValueError):
    """A run directory is missing, foreign, or in the way of a new search."""


class BackendError(KerastuneKitError, RuntimeError):
    """Keras is configured for a backend other than TensorFlow."""


class WriteError(KerastuneKitError, OSError):
    """A file could not be written: no space left, a read-only file system, no permission.

    The message is one line naming the cause, the path the user gave and the fix (free space
    and ``--resume``; another ``--run-dir``). ``os_error`` is the underlying ``OSError``;
    ``errno`` is its errno, so ``except OSError`` callers keep working.
    """

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error
        self.errno = getattr(os_error, "errno", None)
        self.filename = getattr(os_error, "filename", None)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: The one line for ``--tuner tpe``/``bohb`` without Optuna installed.
MISSING_OPTUNA = ("tuner: --tuner tpe and --tuner bohb need Optuna, which is not installed; "
                  "run pip install 'kerastune_kit[tpe]'")
