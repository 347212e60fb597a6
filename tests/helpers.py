"""Helpers shared by several test modules."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerastune_kit.errors import ConfigError


def assert_one_line(exc: BaseException, *fragments: str, kind: type = ConfigError) -> str:
    """The message is a single line and contains every fragment; ``exc`` is a ``kind``."""
    message = str(exc)
    assert isinstance(exc, kind)
    assert message and "\n" not in message, f"not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    return message


def exploding_regression(keras: Any, **compile_kwargs: Any) -> tuple[Any, Any, Any]:
    """(model, x, y): plain SGD with a far too high learning rate on MSE, so the loss
    overflows within a few steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32") * 10
    y = rng.normal(size=(64, 1)).astype("float32")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8)(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=5.0), **compile_kwargs)
    return model, x, y
