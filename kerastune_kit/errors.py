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
