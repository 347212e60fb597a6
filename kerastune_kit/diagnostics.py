"""Gradient health, measured inside the compiled training epoch.

Owns: :class:`GradientHealth`, a handful of ``tf.Variable`` accumulators that the train step
updates every step and that :class:`~kerastune_kit.training.TrainLoop` reads once per epoch:

- ``gradients/global_norm_mean`` and ``gradients/global_norm_max``: the global L2 norm of the
  gradients *before* clipping (and, under loss scaling, after unscaling), over the epoch's steps;
- ``gradients/clipped_fraction``: the share of steps the optimizer clipped (some variable's
  gradient norm above ``clipnorm``, or the global norm above ``global_clipnorm``; 0 when the
  optimizer does not clip);
- ``update_ratio/<layer>``: the mean of ``||w_after - w_before|| / ||w_before||`` over the
  epoch's sampled steps for each kernel (every trainable variable with 2 or more axes). The
  "about 1e-3" rule of thumb fits plain SGD late in training; Adam and RMSprop step by about
  ``learning_rate / |w|``, and the first epoch runs 3 to 10 times higher (the README's table,
  from ``benchmarks/gradient_health.py``, gives measured healthy ranges per optimizer).
  By default about :data:`RATIO_SAMPLES` steps per epoch are
  sampled (step 0 and every ``ceil(steps / RATIO_SAMPLES)``-th step after it): measuring a step
  copies its kernels before the update and costs about 15% of a small model's step, so
  sampling keeps the whole measurement near 1% of an epoch at any epoch length;
- ``weights/<variable>`` (only with ``weight_histograms=True``): each trainable variable's values
  at the end of the epoch, as a NumPy array for a histogram.

Does not own: writing them anywhere (``tuning`` writes them to the trial's TensorBoard run) or
the callback logs, which keep ``model.fit``'s keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastune_kit._backend import keras as _keras

keras = _keras()
import tensorflow as tf  # noqa: E402  (after the backend check)

GLOBAL_NORM_MEAN = "gradients/global_norm_mean"
GLOBAL_NORM_MAX = "gradients/global_norm_max"
CLIPPED_FRACTION = "gradients/clipped_fraction"
UPDATE_RATIO = "update_ratio/"
WEIGHTS = "weights/"
RATIO_SAMPLES = 4  # update-ratio measurements per epoch, by default
UNKNOWN_EPOCH_EVERY = 8  # the sampling interval when the epoch's length is unknown


def variable_names(variables: Sequence[Any]) -> list[str]:
    """Readable, unique names: the variable's path (``dense_1/kernel``)."""
    names: list[str] = []
    for variable in variables:
        name = str(getattr(variable, "path", None) or variable.name).replace(":", "_")
        base, k = name, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    return names


def kernel_tags(variables: Sequence[Any]) -> list[str]:
    """``update_ratio/`` tags of the kernels: the layer name when a layer has one kernel."""
    paths = variable_names(variables)
    layers = [p.rsplit("/", 1)[0] if "/" in p else p for p in paths]
    tags = []
    for path, layer in zip(paths, layers, strict=True):
        tags.append(UPDATE_RATIO + (layer if layers.count(layer) == 1 else path))
    return tags


class GradientHealth:
    """Per-epoch gradient-health accumulators, updated inside the compiled train step.

    Args:
        variables: The trainable variables, in the order of the gradients.
        optimizer: The optimizer (its ``clipnorm``/``global_clipnorm``; a loss-scaling wrapper
            is looked through).
        weight_histograms: Also report every trainable variable's values at epoch end.
        ratio_every: Measure update ratios on every ``ratio_every``-th step of an epoch. None:
            about :data:`RATIO_SAMPLES` steps per epoch, from the length that
            :meth:`set_epoch_steps` gives (every 8th step until it is called).

    Example:
        >>> health = GradientHealth(model.trainable_variables, model.optimizer)
        >>> # inside the step, around the update:
        >>> sampled = health.sampled(step); before = health.snapshot(sampled)
        >>> health.observe(squared_norms, health.update_ratios(sampled, before), sampled)
        >>> health.to_python(health.results())["gradients/global_norm_mean"]
        0.83
    """

    def __init__(self, variables: Sequence[Any], optimizer: Any, *,
                 weight_histograms: bool = False, ratio_every: int | None = None) -> None:
        if ratio_every is not None and ratio_every < 1:
            raise ValueError(f"ratio_every: expected a positive step interval, received "
                             f"{ratio_every}; pass 1 to measure every step")
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        self.clipnorm = float(getattr(inner, "clipnorm", None) or 0.0)
        self.global_clipnorm = float(getattr(inner, "global_clipnorm", None) or 0.0)
        self.variables = list(variables)
        self.kernel_indices = [i for i, v in enumerate(self.variables) if len(v.shape) >= 2]
        self.kernel_tags = kernel_tags([self.variables[i] for i in self.kernel_indices])
        self.weight_histograms = weight_histograms
        self.fixed_every = ratio_every is not None
        # A variable, so a new epoch length reaches the compiled passes without a retrace.
        self.ratio_every = tf.Variable(int(ratio_every or UNKNOWN_EPOCH_EVERY), dtype=tf.int64,
                                       trainable=False, name="gradient_health_ratio_every")
        self.histogram_names = [WEIGHTS + n for n in variable_names(self.variables)]
        # [sum of global norms, clipped steps, steps, sampled steps], the running max, and the
        # per-kernel sums of update ratios over the sampled steps.
        self.totals = tf.Variable(tf.zeros([4]), trainable=False, name="gradient_health_totals")
        self.norm_max = tf.Variable(0.0, trainable=False, name="gradient_health_norm_max")
        self.ratio_sums = tf.Variable(tf.zeros([len(self.kernel_indices)]), trainable=False,
                                      name="gradient_health_ratio_sums")

    @property
    def kernels(self) -> list[Any]:
        """The variables whose update ratio is measured."""
        return [self.variables[i] for i in self.kernel_indices]

    @property
    def state(self) -> list[Any]:
        """The accumulators' own ``tf.Variable`` objects (what the compiled passes update)."""
        return [self.ratio_every, self.totals, self.norm_max, self.ratio_sums]

    def set_epoch_steps(self, steps: int | None) -> None:
        """Sample about :data:`RATIO_SAMPLES` steps of an epoch of ``steps`` (None: unknown)."""
        if self.fixed_every:
            return
        every = UNKNOWN_EPOCH_EVERY if steps is None else max(1, -(-steps // RATIO_SAMPLES))
        self.ratio_every.assign(every)

    # -------------------------------------------------------------- in-graph
    def reset(self) -> None:
        """Zero the accumulators (at the start of an epoch)."""
        self.totals.assign(tf.zeros([4]))
        self.norm_max.assign(0.0)
        self.ratio_sums.assign(tf.zeros_like(self.ratio_sums))

    def sampled(self, step: Any) -> Any:
        """Whether the update ratio is measured at ``step`` (its index in the epoch)."""
        return tf.equal(tf.math.floormod(tf.cast(step, tf.int64), self.ratio_every), 0)

    def snapshot(self, sampled: Any) -> list[Any]:
        """The kernels' values before the update, flattened (empty when not ``sampled``).

        Call it before the update and :meth:`update_ratios` after; TensorFlow orders both
        around the update since they touch the same variables. The condition keeps the copy
        of the kernels (the reads outlive the in-place update) to the sampled steps.
        """
        if not self.kernel_indices:
            return []
        return tf.cond(
            sampled,
            lambda: [tf.reshape(tf.convert_to_tensor(v), [-1]) for v in self.kernels],
            lambda: [tf.zeros([0]) for _ in self.kernels],
        )

    def update_ratios(self, sampled: Any, before: Sequence[Any]) -> Any:
        """``||w_after - w_before|| / ||w_before||`` per kernel as one vector (zeros unsampled)."""
        if not self.kernel_indices:
            return tf.zeros([0])

        def ratios() -> Any:
            out = []
            for variable, old in zip(self.kernels, before, strict=True):
                new = tf.reshape(tf.convert_to_tensor(variable), [-1])
                out.append(tf.math.divide_no_nan(tf.norm(new - old), tf.norm(old)))
            return tf.stack(out)

        return tf.cond(sampled, ratios, lambda: tf.zeros([len(self.kernel_indices)]))

    def observe(self, squared_norms: Sequence[Any], ratios: Any, sampled: Any) -> None:
        """Add one step: the gradients' squared norms (unclipped) and the update ratios."""
        squared = [tf.cast(s, tf.float32) for s in squared_norms]
        norm = tf.sqrt(tf.add_n(squared)) if squared else tf.constant(0.0)
        clipped = tf.constant(False)
        if self.clipnorm > 0 and squared:
            clipped = tf.reduce_max(tf.stack(squared)) > self.clipnorm ** 2
        elif self.global_clipnorm > 0:
            clipped = norm > self.global_clipnorm
        self.totals.assign_add(tf.stack([norm, tf.cast(clipped, tf.float32), 1.0,
                                         tf.cast(sampled, tf.float32)]))
        self.norm_max.assign(tf.maximum(self.norm_max, norm))
        self.ratio_sums.assign_add(ratios)

    def results(self) -> dict[str, Any]:
        """The epoch's values as tensors (read once per epoch)."""
        steps = tf.maximum(self.totals[2], 1.0)
        return {
            GLOBAL_NORM_MEAN: self.totals[0] / steps,
            GLOBAL_NORM_MAX: tf.identity(self.norm_max),
            CLIPPED_FRACTION: self.totals[1] / steps,
            "update_ratios": self.ratio_sums / tf.maximum(self.totals[3], 1.0),
        }

    # -------------------------------------------------------------- on the host
    def to_python(self, results: dict[str, Any]) -> dict[str, Any]:
        """Floats per tag (and arrays for ``weights/`` histograms) from :meth:`results`."""
        out: dict[str, Any] = {
            key: float(results[key]) for key in (GLOBAL_NORM_MEAN, GLOBAL_NORM_MAX,
                                                 CLIPPED_FRACTION)
        }
        ratios = np.asarray(results["update_ratios"], dtype="float64")
        out.update({tag: float(r) for tag, r in zip(self.kernel_tags, ratios, strict=True)})
        if self.weight_histograms:
            for name, variable in zip(self.histogram_names, self.variables, strict=True):
                out[name] = np.asarray(keras.ops.convert_to_numpy(variable))
        return out

