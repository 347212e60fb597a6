"""Read TensorBoard event files back with TensorBoard's own readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import metadata
from tensorboard.util import tensor_util


def _accumulator(path: Path) -> Any:
    acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return acc


def session_hparams(run: Path) -> dict[str, Any]:
    """The hparams of the HParams session written in ``run`` ({} when there is none)."""
    content = _accumulator(run).PluginTagToContent(metadata.PLUGIN_NAME)
    raw = content.get(metadata.SESSION_START_INFO_TAG)
    if raw is None:
        return {}
    info = metadata.parse_session_start_info_plugin_data(raw)
    out: dict[str, Any] = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


def session_status(run: Path) -> int | None:
    """The session end status enum written in ``run``."""
    content = _accumulator(run).PluginTagToContent(metadata.PLUGIN_NAME)
    raw = content.get(metadata.SESSION_END_INFO_TAG)
    if raw is None:
        return None
    return metadata.parse_session_end_info_plugin_data(raw).status


def experiment_hparam_names(root: Path) -> set[str]:
    """Names of the hparams declared by the experiment config at ``root``."""
    content = _accumulator(root).PluginTagToContent(metadata.PLUGIN_NAME)
    info = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    return {h.name for h in info.hparam_infos}


def _tags_of_plugin(acc: Any, plugin: str) -> list[str]:
    return [tag for tag in acc.Tags()["tensors"]
            if acc.SummaryMetadata(tag).plugin_data.plugin_name == plugin]


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in ``run`` as (step, value) pairs (other summaries are left out)."""
    acc = _accumulator(run)
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                  for e in acc.Tensors(tag)]
            for tag in _tags_of_plugin(acc, "scalars")}


def texts(run: Path) -> dict[str, list[tuple[int, str]]]:
    """Every text summary in ``run`` as (step, text) pairs."""
    acc = _accumulator(run)
    return {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode())
                  for e in acc.Tensors(tag)]
            for tag in _tags_of_plugin(acc, "text")}


def images(run: Path) -> dict[str, list[int]]:
    """Every image summary tag in ``run`` with the steps it was written at."""
    acc = _accumulator(run)
    return {tag: [e.step for e in acc.Tensors(tag)] for tag in _tags_of_plugin(acc, "images")}


def experiment(root: Path) -> Any:
    """The HParams experiment config written at ``root`` (an ``Experiment`` proto)."""
    content = _accumulator(root).PluginTagToContent(metadata.PLUGIN_NAME)
    return metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])


def histograms(run: Path) -> dict[str, list[int]]:
    """Every histogram tag in ``run`` with the steps it was written at."""
    acc = _accumulator(run)
    out: dict[str, list[int]] = {}
    for tag in _tags_of_plugin(acc, "histograms"):
        events = acc.Tensors(tag)
        shapes = [tensor_util.make_ndarray(e.tensor_proto).shape for e in events]
        if all(len(shape) == 2 and shape[1] == 3 for shape in shapes):  # (bucket, [l, r, n])
            out[tag] = [e.step for e in events]
    return out
