"""Your own CNN on a folder of PNG images through ``keras.utils.image_dataset_from_directory``,
tuned by ``kk.Hyperband``: a ``tf.data`` pipeline trains in kerastune_kit's compiled loop.

The example first writes a small image folder (one sub-folder per class, as the Keras
utility expects) from scikit-learn's bundled 8x8 digits, upscaled to 24x24 grayscale PNGs; point
``--images`` at your own folder instead.

Usage:
    python examples/tf_data_images.py [--smoke] [--images DIR] [--directory DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_digits

import kerastune_kit as kk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true",
                    default=os.environ.get("KERASTUNE_KIT_SMOKE") == "1",
                    help="3 classes, Hyperband with max_epochs=2")
parser.add_argument("--images", default="digit_images", help="the image folder")
parser.add_argument("--directory", default="runs", help="where the run directory goes")
args = parser.parse_args()


def write_images(folder: Path, classes: int) -> None:
    """One PNG per digit, 24x24 grayscale, in ``folder/<digit>/``."""
    images, labels = load_digits(return_X_y=True)
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        if label >= classes:
            continue
        image = np.kron(pixels.reshape(8, 8) * (255 / 16), np.ones((3, 3)))[..., None]
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        keras.utils.save_img(folder / str(label) / f"{index:04d}.png", image.astype("uint8"),
                             scale=False)


folder = Path(args.images)
if not folder.exists():
    write_images(folder, classes=3 if args.smoke else 10)
train, val = keras.utils.image_dataset_from_directory(
    folder, validation_split=0.2, subset="both", seed=1, image_size=(24, 24),
    color_mode="grayscale", batch_size=32)
classes = len(train.class_names)


def build_model(hp):
    inputs = keras.Input((24, 24, 1))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    for block in range(hp.Int("blocks", 1, 2)):
        h = keras.layers.Conv2D(hp.Choice(f"filters_{block}", [16, 32, 64]), 3,
                                padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5))(h)
    outputs = keras.layers.Dense(classes, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2,
                                                           sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


tuner = kk.Hyperband(build_model, objective="val_accuracy",
                     max_epochs=2 if args.smoke else 9, factor=3, seed=1, overwrite=True,
                     directory=args.directory, project_name="digit-images")
tuner.search(train, validation_data=val, verbose=0)

results = kk.load_results(tuner.kit_run_dir)
best = results.best
print(f"{len(results)} trials on {classes} classes; best trial {best.trial_id}: "
      f"val_accuracy={best.score:.4f} after {best.epochs} epochs (training: {best.training})")
print(f"  tensorboard --logdir {tuner.kit_run_dir / 'tensorboard'}")
