"""Fused optimizer updates: Keras's own optimizer state, TensorFlow's fused training kernels.

Owns: :func:`fused_update`, which returns an update function for the plain configurations of
the optimizers our hypermodels build (``Adam``, ``AdamW``, ``SGD`` with or without (Nesterov)
momentum, non-centered ``RMSprop``) or ``None`` when Keras's own ``apply_gradients`` must run.
Does not own: gradients, loss scaling or distribution (those configurations return ``None``).

Why: Keras 3 writes each optimizer's update as a dozen small ops per variable (about 270 graph
nodes for a 3-layer MLP with Adam and ``clipnorm``); on a CPU those small ops cost about as much
as the forward and backward passes of a small network. TensorFlow's fused kernels
(``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``, ...) compute the same update in one op
per variable. The update reads and writes the optimizer's own slot variables, learning rate and
iteration count, so checkpoints, callbacks that change the learning rate, and
``model.optimizer`` stay exactly what Keras expects. ``tests/test_updates.py`` checks every
supported configuration against Keras's ``apply_gradients``.

Example:
    >>> update = fused_update(model.optimizer, model.trainable_variables)
    >>> if update is not None:
    ...     update(gradients)          # inside a tf.function
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kerastune_kit._backend import keras as _keras

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)

Update = Callable[..., None]


def _handle(variable: Any) -> Any:
    handle = getattr(variable, "handle", None)
    return handle if handle is not None else variable.value.handle


def _plain(optimizer: Any) -> bool:
    """True when nothing but clipping by norm and weight decay wraps the core update."""
    return (
        not getattr(optimizer, "clipvalue", None)
        and not getattr(optimizer, "use_ema", False)
        and not getattr(optimizer, "gradient_accumulation_steps", None)
        and getattr(optimizer, "loss_scale_factor", None) is None
    )


def fused_update(optimizer: Any, variables: Sequence[Any]) -> Update | None:
    """A fused update for ``optimizer`` over ``variables``, or None when Keras must apply it.

    The returned function takes the gradients (aligned with ``variables``; ``None`` entries
    are skipped as Keras skips them) and, optionally, their squared L2 norms (reused for
    ``clipnorm``), and runs clipping, weight decay, the update, variable constraints and the
    iteration increment in Keras's order. It must be called inside a ``tf.function``.

    Args:
        optimizer: A built Keras optimizer.
        variables: The trainable variables the optimizer was built on.

    Returns:
        The update function, or None for an optimizer, option or context the fused kernels do
        not cover (a distribution strategy, loss scaling, ``clipvalue``, EMA, gradient
        accumulation, AMSGrad, centered RMSprop, non-float32 variables, other optimizers).
    """
    kind = type(optimizer)
    opts = keras.optimizers
    if kind not in (opts.Adam, opts.AdamW, opts.SGD, opts.RMSprop):
        return None
    if tf.distribute.has_strategy() or not _plain(optimizer):
        return None
    if getattr(optimizer, "amsgrad", False) or getattr(optimizer, "centered", False):
        return None
    variables = list(variables)
    if not variables or any(v.dtype != "float32" for v in variables):
        return None
    if any(getattr(v, "overwrite_with_gradient", False) for v in variables):
        return None
    try:
        slots = _slot_lists(optimizer, kind)
        indices = [optimizer._get_variable_index(v) for v in variables]
        decayed = [optimizer.weight_decay is not None and optimizer._use_weight_decay(v)
                   for v in variables]
    except (AttributeError, KeyError):  # a Keras version with other internals
        return None
    apply_one = _KERNELS[kind](optimizer)

    def update(gradients: Sequence[Any], squared_norms: Sequence[Any] | None = None) -> None:
        live = [(i, g) for i, g in enumerate(gradients) if g is not None]
        grads = [tf.convert_to_tensor(g) for _, g in live]  # densify IndexedSlices
        if squared_norms is None:
            squared_norms = [tf.reduce_sum(tf.square(g)) for g in grads]
        else:
            squared_norms = [squared_norms[i] for i, _ in live]
        grads = _clip(optimizer, grads, squared_norms)
        learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
        if optimizer.weight_decay is not None:
            decay = tf.cast(optimizer.weight_decay, tf.float32)
            for i, _ in live:
                if decayed[i]:
                    variable = variables[i]
                    variable.assign_sub(variable * decay * learning_rate)
        context = apply_one.prepare(learning_rate)
        for (i, _), grad in zip(live, grads, strict=True):
            variable = variables[i]
            apply_one(variable, [s[indices[i]] for s in slots], grad, context)
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable))
        optimizer.iterations.assign_add(1)

    return update


def _slot_lists(optimizer: Any, kind: type) -> list[list[Any]]:
    opts = keras.optimizers
    if kind in (opts.Adam, opts.AdamW):
        return [optimizer._momentums, optimizer._velocities]
    if kind is opts.SGD:
        return [optimizer.momentums] if optimizer.momentum != 0 else []
    return ([optimizer._velocities, optimizer._momentums] if optimizer.momentum > 0
            else [optimizer._velocities])


def _clip(optimizer: Any, grads: list[Any], squared_norms: list[Any]) -> list[Any]:
    """Keras's clipping, reusing the squared norms: ``g * (c / max(||g||, c))``.

    Keras computes ``(g * c) / max(||g||, c)``; scaling by one scalar factor instead spares an
    elementwise division per gradient (within a rounding error of Keras's result).
    """
    if not grads:
        return grads
    if optimizer.clipnorm and optimizer.clipnorm > 0:
        clip = tf.constant(optimizer.clipnorm, tf.float32)
        # One vector op per step for all the factors: on a CPU each small op costs more than
        # its arithmetic, and a search's models are small.
        factors = clip / tf.maximum(tf.sqrt(tf.stack(squared_norms)), clip)
        return [g * f for g, f in zip(grads, tf.unstack(factors, num=len(grads)), strict=True)]
    if optimizer.global_clipnorm and optimizer.global_clipnorm > 0:
        clip = tf.constant(optimizer.global_clipnorm, tf.float32)
        norm = tf.sqrt(tf.add_n(squared_norms))
        scale = clip * tf.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)
        return [g * scale for g in grads]
    return grads


# The kernels keep their hyperparameters as Python floats and make the float32 constants in
# the graph: an eager tensor made here would be captured by the compiled pass, tying the trace
# to this optimizer object (the passes are reused across trials; see ``steps``).


class _AdamKernel:
    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.beta_1 = float(optimizer.beta_1)
        self.beta_2 = float(optimizer.beta_2)
        self.epsilon = float(optimizer.epsilon)

    def prepare(self, learning_rate: Any) -> tuple[Any, ...]:
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)
        beta_1 = tf.constant(self.beta_1, tf.float32)
        beta_2 = tf.constant(self.beta_2, tf.float32)
        return (learning_rate, tf.pow(beta_1, step), tf.pow(beta_2, step), beta_1, beta_2,
                tf.constant(self.epsilon, tf.float32))

    def __call__(self, variable: Any, slots: list[Any], grad: Any, context: tuple) -> None:
        learning_rate, beta_1_power, beta_2_power, beta_1, beta_2, epsilon = context
        m, v = slots
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(m), v=_handle(v), beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=learning_rate, beta1=beta_1, beta2=beta_2,
            epsilon=epsilon, grad=grad)


class _LearningRateOnly:
    """A kernel whose per-step context is just the learning rate."""

    def prepare(self, learning_rate: Any) -> Any:
        return learning_rate


class _SGDKernel(_LearningRateOnly):
    def __init__(self, optimizer: Any) -> None:
        self.momentum = float(optimizer.momentum)
        self.nesterov = bool(optimizer.nesterov)

    def __call__(self, variable: Any, slots: list[Any], grad: Any, learning_rate: Any) -> None:
        if not slots:
            tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=learning_rate,
                                                    delta=grad)
            return
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(slots[0]), lr=learning_rate, grad=grad,
            momentum=tf.constant(self.momentum, tf.float32), use_nesterov=self.nesterov)


class _RMSpropKernel(_LearningRateOnly):
    def __init__(self, optimizer: Any) -> None:
        self.rho = float(optimizer.rho)
        self.momentum = float(optimizer.momentum)
        self.epsilon = float(optimizer.epsilon)

    def __call__(self, variable: Any, slots: list[Any], grad: Any, learning_rate: Any) -> None:
        if len(slots) == 2:
            velocity, momentum = slots
            tf.raw_ops.ResourceApplyRMSProp(
                var=_handle(variable), ms=_handle(velocity), mom=_handle(momentum),
                lr=learning_rate, rho=tf.constant(self.rho, tf.float32),
                momentum=tf.constant(self.momentum, tf.float32),
                epsilon=tf.constant(self.epsilon, tf.float32), grad=grad)
            return
        # No momentum slot: Keras's own two lines (there is no fused kernel without one).
        velocity = slots[0]
        velocity.assign(self.rho * velocity + (1 - self.rho) * tf.square(grad))
        variable.assign_sub(learning_rate * grad / tf.sqrt(velocity + self.epsilon))


_KERNELS: dict[type, Callable[[Any], Any]] = {
    keras.optimizers.Adam: _AdamKernel,
    keras.optimizers.AdamW: _AdamKernel,
    keras.optimizers.SGD: _SGDKernel,
    keras.optimizers.RMSprop: _RMSpropKernel,
}
