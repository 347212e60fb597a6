"""KerasTuner 1.4.8 fixes applied before any tuner is built: gRPC messages and atomic state files.

Owns: :func:`patch_keras_tuner_protos` and :func:`patch_keras_tuner_writes` (idempotent).
"""

from __future__ import annotations

import json
from typing import Any

from kerastune_kit.results import write_text_atomic


def patch_keras_tuner_protos() -> None:
    """Fix two bugs of KerasTuner 1.4.8's gRPC messages, which the chief/worker engine uses.

    - ``conditions.Parent.to_proto`` prints its first value: every call that carries the search
      space printed lines like ``2`` and ``True``. The replacement builds the same message.
    - ``HyperParameters.from_proto`` registers the space before setting the values, so a
      conditional value whose parent's *default* satisfies the condition survives although the
      trial's real value does not (``units_1`` on a one-layer trial). The replacement drops
      inactive values and fills missing active ones, as KerasTuner does everywhere else.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.engine import conditions
    from keras_tuner.src.engine.hyperparameters import HyperParameters

    if getattr(conditions.Parent.to_proto, "_kerastune_kit", False):
        return
    original_from_proto = HyperParameters.from_proto.__func__

    @classmethod  # type: ignore[misc]
    def from_proto(cls: Any, proto: Any) -> Any:
        hps = original_from_proto(cls, proto)
        hps.ensure_active_values()
        return hps

    HyperParameters.from_proto = from_proto

    def to_proto(self: Any) -> Any:
        proto = protos.get_proto()
        first = self.values[0]
        if isinstance(first, str):
            values = [proto.Value(string_value=v) for v in self.values]
        elif isinstance(first, bool):
            values = [proto.Value(boolean_value=v) for v in self.values]
        elif isinstance(first, int):
            values = [proto.Value(int_value=v) for v in self.values]
        else:
            values = [proto.Value(float_value=v) for v in self.values]
        return proto.Condition(parent=proto.Condition.Parent(name=self.name, values=values))

    to_proto._kerastune_kit = True  # type: ignore[attr-defined]
    conditions.Parent.to_proto = to_proto


def patch_keras_tuner_writes() -> None:
    """Make KerasTuner's own state files (``oracle.json``, ``trial.json``, ``tuner0.json``)
    atomic: written to a temporary file, then renamed.

    ``keras_tuner.src.utils.save_json`` writes in place, so a full disk left them empty or cut
    short, and ``--resume`` then failed to parse them even after space was freed. Remote paths
    (``gs://``) keep KerasTuner's writer.
    """
    from keras_tuner.src import utils

    if getattr(utils.save_json, "_kerastune_kit", False):
        return
    original = utils.save_json

    def save_json(path: Any, obj: Any) -> str:
        if "://" in str(path):
            return original(path, obj)
        text = json.dumps(obj)
        write_text_atomic(path, text)
        return text

    save_json._kerastune_kit = True  # type: ignore[attr-defined]
    utils.save_json = save_json
