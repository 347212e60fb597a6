"""What healthy gradient-health figures look like, per optimizer family (the README's table).

Trains the default MLP (2 x 128, ReLU, batch 64) on the bundled digits for 10 epochs per
optimizer and learning rate, with and without ``clipnorm=1``, and prints the median update
ratio over the kernels in the first, fifth and last epoch, the share of clipped steps in the
first and last epoch, the first epoch's mean global gradient norm and the best validation
accuracy. CPU only, about a minute.

Run: ``python benchmarks/gradient_health.py``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from kerastune_kit.data import load_dataset  # noqa: E402
from kerastune_kit.hypermodels import MLPHyperModel  # noqa: E402
from kerastune_kit.space import SearchSpace  # noqa: E402

GRID = (("adam", (1e-4, 1e-3, 1e-2)), ("rmsprop", (1e-4, 1e-3, 1e-2)),
        ("sgd", (1e-3, 1e-2, 1e-1, 1.0)))
EPOCHS = 10


def main() -> None:
    import keras_tuner as kt

    data = load_dataset("digits")
    print(f"{'optimizer':9} {'lr':>7} {'clip':>4} {'val_acc':>7} {'ratio e1':>9} "
          f"{'ratio e5':>9} {'ratio e10':>9} {'clipped e1/e10':>14} {'grad norm e1':>12}")
    for optimizer, rates in GRID:
        for rate in rates:
            for clip in ("off", 1.0):
                space = SearchSpace({"optimizer": optimizer, "learning_rate": rate,
                                     "clipnorm": clip}, family="mlp")
                hypermodel = MLPHyperModel(space, input_shape=data.input_shape,
                                           task="multiclass", n_classes=10)
                hp = kt.HyperParameters()
                model = hypermodel.build(hp)
                history = hypermodel.fit(hp, model, data.x_train, data.y_train, epochs=EPOCHS,
                                         validation_data=(data.x_val, data.y_val))
                health = history.diagnostics

                def ratio(epoch: int, health: dict = health) -> float:
                    values = [v for k, v in health[epoch].items()
                              if k.startswith("update_ratio/")]
                    return float(np.median(values))

                clipped = [health[e].get("gradients/clipped_fraction", 0.0)
                           for e in (0, EPOCHS - 1)]
                print(f"{optimizer:9} {rate:7g} {clip!s:>4} "
                      f"{max(history.history['val_accuracy']):7.3f} {ratio(0):9.1e} "
                      f"{ratio(4):9.1e} {ratio(EPOCHS - 1):9.1e} "
                      f"{clipped[0]:6.2f}/{clipped[1]:<7.2f} "
                      f"{health[0]['gradients/global_norm_mean']:12.2f}", flush=True)


if __name__ == "__main__":
    main()
