"""Building blocks: the normalization factory, residual blocks and image augmentation.

Owns: turning a normalization name (none/batch/layer/group/instance) into a Keras layer,
dense and conv blocks with optional skip connections, and the random image-augmentation block.
Does not own: anything about tuning.
"""

from __future__ import annotations

from typing import Any

from kerastune_kit._backend import keras as _keras

NORMALIZATIONS: tuple[str, ...] = ("none", "batch", "layer", "group", "instance")
#: The name of the image-augmentation sub-block (:func:`augmentation_block`), which the
#: exported model leaves out.
AUGMENTATION_BLOCK = "augmentation"


def group_count(channels: int, preferred: int = 8) -> int:
    """The largest group count <= ``preferred`` that divides ``channels``."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def normalization(kind: str, channels: int, *, name: str | None = None) -> Any | None:
    """Return a normalization layer for ``channels`` features, or None for ``"none"``.

    ``group`` picks a group count that divides ``channels``; ``instance`` is group
    normalization with one group per channel (meaningful on feature maps only).

    Raises:
        ValueError: ``kind`` is not one of :data:`NORMALIZATIONS`.
    """
    keras = _keras()
    if kind == "none":
        return None
    if kind == "batch":
        return keras.layers.BatchNormalization(name=name)
    if kind == "layer":
        return keras.layers.LayerNormalization(name=name)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=group_count(channels), name=name)
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=channels, name=name)
    raise ValueError(
        f"normalization: expected one of {', '.join(NORMALIZATIONS)}, received {kind!r}"
    )


def augmentation_block(*, translation: float | None = None, rotation: float | None = None,
                       zoom: float | None = None, horizontal_flip: bool = False,
                       seed: int = 0) -> Any | None:
    """Random image augmentation as one ``keras.Sequential`` named :data:`AUGMENTATION_BLOCK`,
    or None when every magnitude is off.

    Keras's own preprocessing layers, in this order: ``RandomFlip("horizontal")``,
    ``RandomTranslation(translation, translation)`` (a fraction of height and width),
    ``RandomRotation(rotation)`` (a fraction of a full turn: 0.05 is up to +-18 degrees),
    ``RandomZoom(zoom)`` (in or out by up to that fraction). Pixels moved in from outside
    the image are 0 (``fill_mode="constant"``: the background of digit-like images, the mean
    of standardized ones). They transform only when called with ``training=True``; at
    inference they pass images through unchanged (and the exported model leaves the block
    out). Input and output ``(batch, H, W, C)``. Each layer is seeded from ``seed``.
    """
    keras = _keras()
    layers: list[Any] = []
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
    if translation:
        layers.append(keras.layers.RandomTranslation(
            translation, translation, fill_mode="constant", seed=seed + 1,
            name="random_translation"))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="constant",
                                                  seed=seed + 2, name="random_rotation"))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 3,
                                              name="random_zoom"))
    if not layers:
        return None
    return keras.Sequential(layers, name=AUGMENTATION_BLOCK)


def resolve_initializer(name: str, activation: str) -> str:
    """``auto`` means He for ReLU-like activations and Glorot for tanh (and sigmoid)."""
    if name != "auto":
        return name
    return "glorot_uniform" if activation in ("tanh", "sigmoid") else "he_normal"


def _block(x: Any, width: int, layer: Any, projection: Any, *, activation: str,
           normalization_kind: str, dropout: float, residual: bool, index: int) -> Any:
    """``layer`` -> normalization -> activation, the optional skip, then dropout.

    Without normalization the activation is ``layer``'s own (it was built with it): the same
    computation with one layer fewer to build and trace, and the same weights.
    """
    keras = _keras()
    h = layer(x)
    norm = normalization(normalization_kind, width, name=f"norm_{index}")
    if norm is not None:
        h = norm(h)
        h = keras.layers.Activation(activation, name=f"act_{index}")(h)
    if residual:
        shortcut = projection(x) if int(x.shape[-1]) != width else x
        h = keras.layers.Add(name=f"skip_{index}")([h, shortcut])
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"dropout_{index}")(h)
    return h


def dense_block(
    x: Any,
    units: int,
    *,
    activation: str,
    normalization_kind: str,
    dropout: float,
    kernel_initializer: str,
    l2: float | None,
    residual: bool,
    index: int,
) -> Any:
    """Dense -> normalization -> activation -> dropout, with an optional skip connection.

    The skip connection adds the block input; a linear projection matches widths when they
    differ (He et al., "Deep Residual Learning"). The dense layer has no bias when a
    normalization layer follows (its offset would be cancelled), and applies the activation
    itself when none follows (an ``act_{index}`` layer follows the normalization otherwise).
    """
    keras = _keras()
    regularizer = keras.regularizers.L2(l2) if l2 else None
    plain = normalization_kind == "none"
    layer = keras.layers.Dense(
        units, activation=activation if plain else None, kernel_initializer=kernel_initializer,
        kernel_regularizer=regularizer, use_bias=plain, name=f"dense_{index}",
    )
    projection = keras.layers.Dense(
        units, use_bias=False, kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizer, name=f"projection_{index}",
    )
    return _block(x, units, layer, projection, activation=activation,
                  normalization_kind=normalization_kind, dropout=dropout, residual=residual,
                  index=index)


def conv_block(
    x: Any,
    filters: int,
    *,
    kernel_size: int,
    activation: str,
    normalization_kind: str,
    dropout: float,
    kernel_initializer: str,
    l2: float | None,
    residual: bool,
    index: int,
    convs: int = 1,
) -> Any:
    """``convs`` x [Conv2D (same padding) -> normalization -> activation], optional skip,
    then dropout: a VGG-style block (Simonyan & Zisserman, 2015) when ``convs`` > 1.

    Input ``(batch, H, W, C)``, output ``(batch, H, W, filters)``. The skip connection adds
    the block input to the last activation; a 1x1 convolution projects it when the channel
    counts differ. Group normalization uses a group count that divides ``filters``; instance
    normalization normalizes each channel of each sample on its own. The first convolution
    of block ``i`` is named ``conv_{i}``, the next ``conv_{i}_1``, ``conv_{i}_2``.
    """
    keras = _keras()
    regularizer = keras.regularizers.L2(l2) if l2 else None
    h = x
    for k in range(convs):
        suffix = f"{index}" if k == 0 else f"{index}_{k}"
        h = keras.layers.Conv2D(
            filters, kernel_size, padding="same", kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer, use_bias=normalization_kind == "none",
            name=f"conv_{suffix}",
        )(h)
        norm = normalization(normalization_kind, filters, name=f"norm_{suffix}")
        if norm is not None:
            h = norm(h)
        h = keras.layers.Activation(activation, name=f"act_{suffix}")(h)
    if residual:
        shortcut = x
        if int(x.shape[-1]) != filters:
            shortcut = keras.layers.Conv2D(
                filters, 1, use_bias=False, kernel_initializer="glorot_uniform",
                kernel_regularizer=regularizer, name=f"projection_{index}",
            )(x)
        h = keras.layers.Add(name=f"skip_{index}")([h, shortcut])
    if dropout > 0:
        h = keras.layers.Dropout(dropout, name=f"dropout_{index}")(h)
    return h
