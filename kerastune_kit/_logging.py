"""The library logger. Library code logs; only the CLI prints."""

from __future__ import annotations

import logging

_LOGGER_NAME = "kerastune_kit"


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the package logger, or a child of it (``get_logger("tuning")``)."""
    logger = logging.getLogger(_LOGGER_NAME)
    if not getattr(logger, "_kerastune_kit_configured", False):
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
        logger._kerastune_kit_configured = True  # type: ignore[attr-defined]
    return logger.getChild(name) if name else logger


def set_verbosity(level: int) -> None:
    """Set the level of the package logger (``logging.INFO`` shows one line per trial)."""
    get_logger().setLevel(level)
