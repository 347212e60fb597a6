"""Coarse to fine (``--refine N``): further stages, each searching a space narrowed around the
top trials of the stage before, for longer.

Owns: the narrowing (:func:`narrow_space`: the previous stage's trial records and search space
in, new overrides out, in the grammar :class:`~kerastune_kit.space.SearchSpace` accepts, so a
stage's space round-trips through its ``config.toml``), the stage plan (:func:`plan_stage`,
:class:`StagePlan`) and the stage driver (:func:`run_stages`: runs stage 1 in the run directory,
then each refine stage in a run directory of its own; :func:`combine_stages`: the leaderboard and
the best over every stage). Does not own: the search of one stage (``tuning``, which calls
:func:`run_stages` and :func:`finish_stages`; ``session``, ``tuners``), where a stage's files
live (:class:`~kerastune_kit.rundir.RunDir`: ``stage_dir``, ``stage_logdir``, ``trial_dir`` of a
``stage-<k>/<id>``) or reading a run back (``runs``, which adds the stages' trials through
:func:`kerastune_kit.results.read_stage_records`). The narrowing is pure (no TensorFlow); the
driver imports TensorFlow only when it runs.

The narrowing (CS231n's "coarse to fine" search; Bergstra & Bengio 2012 for why the ranges, not
a grid, are narrowed):

- **The top trials**: the ranked trials (completed or pruned with a finite score,
  :func:`~kerastune_kit.results.is_ranked`) of the previous stage, best first, one per distinct
  configuration (a promoted Hyperband trial repeats its parent's values); the top 20 % of
  them (:data:`TOP_FRACTION`), at least 2 (:data:`MIN_TOP`). With fewer than 2 ranked
  configurations the space is left as it was, with a note.
- **A knob is narrowed only from the top trials that carry it**, and only when at least 2 do:
  ``units_2`` exists only in trials with 3 or more layers, ``dense_units`` only with dense
  layers, ``clipnorm`` only while ``use_clipnorm`` is on.
- **Numeric ranges** (``IntRange``/``FloatRange``): the span of the top trials' values, on the
  knob's scale (log for log knobs), padded by 10 % of that span on each side (:data:`PAD`)
  and never narrower than 10 % of the previous range (:data:`MIN_WIDTH`), clipped to the
  original range (stage 1's). Integer bounds are rounded to the nearest integer outside the
  top values (they stay integers, ``min <= max``); float bounds are rounded outwards to 3
  significant digits. A range that collapses to one value becomes a fixed value.
- **Choices** (categorical, boolean and listed numbers such as ``batch_size``): fixed to the
  value all top trials agree on; kept as they are when they disagree.
- **Optional knobs** (``clipnorm``, ``l2``, augmentation): off when every top trial had it off
  (``clipnorm = "off"``); when every one had it on, its value range is narrowed (which keeps it
  on); when they disagree, both the switch and the range stay.
- Per-layer overrides of layers the narrowed depth no longer has are dropped, as are
  ``dense_units``/``head_dropout`` when ``dense_layers`` is fixed at 0 and ``weight_decay``
  when ``adamw`` is no longer a choice.
- Each stage trains ``refine_factor`` times longer than the one before
  (``max_epochs x refine_factor``, rounded; stage 3 of a factor-2 search trains 4 times
  stage 1's epochs).

The stages of a run:

- Stage 1 is the run itself (``RUN/``, as without ``--refine``). Stage ``k >= 2`` is a complete
  run directory ``RUN/stages/<k>/`` (its ``config.toml`` holds the narrowed ``[space]`` and the
  longer ``max_epochs``; ``tuner/``, ``leaderboard.csv``, ``best_model.keras``), searched by the
  same tuner with ``max_trials`` per stage, without the popular designs (stage 1 ran them).
- Its event files are in ``RUN/tensorboard/stage-<k>/`` (``RUN/stages/<k>/tensorboard`` links
  there), so ``tensorboard --logdir RUN/tensorboard`` shows every stage; its trials are named
  ``stage-<k>/<id>`` (also their HParams session groups). Each stage's space is a TEXT panel
  ``refine/space`` (run ``search`` for stage 1, ``stage-<k>`` for the others; step = the stage);
  the HParams experiment is the one at ``RUN/tensorboard`` (stage 1's domains contain every
  stage's).
- ``RUN/run.json`` lists the stages (``stages``: number, run directory, epochs, overrides,
  what changed, the top trials, status). ``RUN/leaderboard.csv``, ``best_hyperparameters.json``
  (with ``stage``) and ``best_model.keras`` are over every stage, as are ``inspect RUN``,
  ``export RUN`` and ``load_results(RUN)``.
- ``max_time`` is the whole search's: each stage gets the time left divided by the stages
  left (stage 1 of 3 a third; a stage that ends early leaves its time to the next). A stage
  whose share ran out is closed (its unfinished trial stays unfinished) and the next starts;
  when the last one's runs out, or the search is interrupted, ``--resume`` continues the
  stage that was running, then the remaining ones. A finished stage is never rerun. The stage
  spaces are derived deterministically from the records; a resumed search derives them again
  and uses the stored one (with a warning) if they differ.

Example:
    >>> from kerastune_kit.space import SearchSpace
    >>> space = SearchSpace(family="mlp")
    >>> narrowing = narrow_space(records, space, space, direction="max")
    >>> narrowing.overrides["learning_rate"]
    {'min': 0.000271, 'max': 0.00214, 'log': True}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kerastune_kit._logging import get_logger
from kerastune_kit.errors import ConfigError
from kerastune_kit.plan import read_stages, stage_epochs
from kerastune_kit.results import (
    TrialRecord,
    best_of,
    in_stage,
    is_ranked,
    rank,
    read_trial_records,
    write_leaderboard,
)
from kerastune_kit.rundir import (
    STAGES_DIR,
    TENSORBOARD_DIR,
    RunDir,
    atomic_path,
    stage_trial_id,
)
from kerastune_kit.space import (
    Choices,
    Domain,
    Fixed,
    FloatRange,
    IntRange,
    SearchSpace,
    _domain_values,
    describe_domain,
)

logger = get_logger("refine")

#: The share of the previous stage's ranked configurations a stage narrows around.
TOP_FRACTION = 0.2
#: The fewest top configurations a stage narrows around (and that must carry a knob).
MIN_TOP = 2
#: Padding on each side of the top trials' span, as a share of that span.
PAD = 0.1
#: The narrowest a range gets, as a share of the previous stage's range.
MIN_WIDTH = 0.1
#: Significant digits of a narrowed float range's bounds (rounded outwards).
SIGNIFICANT_DIGITS = 3
#: The TensorBoard TEXT tag of each stage's space.
SPACE_TAG = "refine/space"
#: Stage statuses in ``run.json``.
RUNNING, FINISHED = "running", "finished"
#: The knobs a stage's line names first (then the catalogue's order).
_LINE_ORDER = ("learning_rate", "optimizer", "num_layers", "num_blocks", "batch_size")


# ---------------------------------------------------------------------- the narrowing
@dataclasses.dataclass
class Narrowing:
    """A space narrowed around the top trials of a stage.

    Attributes:
        overrides: The new space as overrides (:class:`~kerastune_kit.space.SearchSpace`'s
            grammar: a value, a list, ``{min, max, log}`` or ``"off"``).
        changes: What changed, knob name to a short description (``3e-4..2e-3 (log)``,
            ``fixed adam``, ``off``), in the catalogue's order.
        top_trials: The ids of the top trials it narrowed around, best first.
        ranked: How many ranked distinct configurations the previous stage had.
        notes: Why something was left as it was (too few trials, a knob the space refused).
    """

    overrides: dict[str, Any]
    changes: dict[str, str]
    top_trials: tuple[str, ...]
    ranked: int
    notes: list[str] = dataclasses.field(default_factory=list)


def top_configurations(records: Iterable[TrialRecord], direction: str, *,
                       fraction: float = TOP_FRACTION) -> tuple[list[TrialRecord], int]:
    """The top ``fraction`` (at least :data:`MIN_TOP`) of the ranked distinct configurations.

    Args:
        records: A stage's trial records.
        direction: ``max`` or ``min``.
        fraction: The share kept.

    Returns:
        ``(top, n_ranked)``: the best trial of each of the top configurations, best first, and
        how many ranked distinct configurations there were.
    """
    distinct = ranked_configurations(records, direction)
    count = max(MIN_TOP, math.ceil(fraction * len(distinct) - 1e-9))
    return distinct[:count], len(distinct)


def ranked_configurations(records: Iterable[TrialRecord], direction: str
                          ) -> list[TrialRecord]:
    """The best trial of each ranked distinct configuration of ``records``, best first."""
    distinct: list[TrialRecord] = []
    seen: set[str] = set()
    for record in rank(records, direction):
        if not is_ranked(record):
            break
        key = json.dumps(record.hyperparameters, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            distinct.append(record)
    return distinct


def narrow_space(records: Iterable[TrialRecord], space: SearchSpace, original: SearchSpace, *,
                 direction: str, fraction: float = TOP_FRACTION) -> Narrowing:
    """Narrow ``space`` around the top trials of ``records`` (the rules: module docstring).

    Args:
        records: The previous stage's trial records (any order; unranked ones are ignored).
        space: The previous stage's space (its overrides are carried over).
        original: Stage 1's space: narrowed ranges never leave its ranges.
        direction: ``max`` or ``min``, the objective's direction.
        fraction: The share of ranked configurations to narrow around.

    Returns:
        The :class:`Narrowing`; its overrides build a valid ``SearchSpace`` of the same family.

    Example:
        >>> narrowing = narrow_space(records, space, space, direction="max")
        >>> narrowing.changes
        {'num_layers': 'fixed 2', 'learning_rate': '2.71e-4..2.14e-3 (log)', ...}
    """
    top, ranked = top_configurations(records, direction, fraction=fraction)
    ids = tuple(r.trial_id for r in top)
    overrides = dict(space.overrides)
    if ranked < MIN_TOP:
        return Narrowing(overrides, {}, ids, ranked, [
            f"{ranked} ranked configuration{'' if ranked == 1 else 's'}, fewer than "
            f"{MIN_TOP}"])
    domains = space.hparam_domains()
    specs: dict[str, Any] = {}
    changes: dict[str, str] = {}
    notes: list[str] = []
    # A knob the stage never varied (a grid's untouched axes, a short random search's
    # constant) says nothing about where the good values are: it keeps its domain.
    explored = ranked_configurations(records, direction)
    unvaried = {name for name, domain in domains.items()
                if not isinstance(domain, Fixed)
                and len({_key(v) for v in _values(explored, name)}) < 2}
    skip: set[str] = {name for name in unvaried}
    if unvaried:
        notes.append(f"not varied in the stage, kept: {', '.join(sorted(unvaried))}")
    for name in domains:  # the on/off switches first: they decide the values
        if not name.startswith("use_") or name[4:] not in space.knobs or name in skip:
            continue
        values = _values(top, name)
        if len(values) >= MIN_TOP and not any(values):
            specs[name[4:]], changes[name[4:]] = "off", "off"
        if len(values) < MIN_TOP or not all(values):
            skip.add(name[4:])  # off, or undecided: its value range stays as it is
    for name, domain in domains.items():
        if name.startswith("use_") or name in skip:
            continue
        values = _values(top, name)
        if len(values) < MIN_TOP:
            continue
        if isinstance(domain, Choices):
            if len(set(map(_key, values))) == 1:
                specs[name], changes[name] = values[0], f"fixed {_text(values[0])}"
        elif isinstance(domain, (IntRange, FloatRange)) and domain.min != domain.max:
            spec = _narrow_range(values, domain, original.domain(name))
            if spec is not None:
                specs[name] = spec
                changes[name] = (f"fixed {_text(spec)}" if not isinstance(spec, dict) else
                                 _range_text(spec["min"], spec["max"])
                                 + (" (log)" if spec["log"] else ""))
    overrides = _consistent({**overrides, **specs}, specs, space)
    changes = {k: v for k, v in changes.items() if k in specs}
    while True:  # a knob the space refuses (ties between knobs not foreseen) keeps its domain
        try:
            SearchSpace(overrides, family=space.family)
            break
        except ConfigError as exc:
            name = str(exc).split(":", 1)[0]
            if name not in specs:
                raise
            del specs[name]
            changes.pop(name, None)
            if name in space.overrides:
                overrides[name] = space.overrides[name]
            else:
                overrides.pop(name, None)
            notes.append(f"{name} kept ({exc})")
    return Narrowing(overrides, changes, ids, ranked, notes)


def _values(top: Sequence[TrialRecord], name: str) -> list[Any]:
    return [r.hyperparameters[name] for r in top
            if name in r.hyperparameters and r.hyperparameters[name] is not None]


def _key(value: Any) -> str:
    return f"{type(value).__name__}:{value!r}"


def _narrow_range(values: Sequence[Any], domain: IntRange | FloatRange,
                  original: Domain) -> Any:
    """The narrowed range of one knob as an override (``{min, max, log}`` or a value), None
    when it would not change."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(
        v, bool) and math.isfinite(v)]
    if len(numbers) < MIN_TOP:
        return None
    log = domain.log
    bounds = original if isinstance(original, (IntRange, FloatRange)) else domain
    scale = (lambda x: math.log(x)) if log else (lambda x: x)
    unscale = (lambda x: math.exp(x)) if log else (lambda x: x)
    low, high = scale(min(numbers)), scale(max(numbers))
    pad = max(PAD * (high - low), MIN_WIDTH / 2 * (scale(domain.max) - scale(domain.min)))
    low = max(low - pad, scale(bounds.min))
    high = min(high + pad, scale(bounds.max))
    if isinstance(domain, IntRange):
        new_min = max(bounds.min, min(int(min(numbers)), _half_up(unscale(low))))
        new_max = min(bounds.max, max(int(max(numbers)), _half_up(unscale(high))))
    else:
        new_min = max(bounds.min, min(min(numbers), _round_out(unscale(low), down=True)))
        new_max = min(bounds.max, max(max(numbers), _round_out(unscale(high), down=False)))
    if new_min == new_max:
        return new_min
    if (new_min, new_max) == (domain.min, domain.max):
        return None
    return {"min": new_min, "max": new_max, "log": log}


def _half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _round_out(value: float, *, down: bool) -> float:
    """``value`` rounded to :data:`SIGNIFICANT_DIGITS` digits, down or up."""
    if value == 0 or not math.isfinite(value):
        return value
    step = 10.0 ** (math.floor(math.log10(abs(value))) - (SIGNIFICANT_DIGITS - 1))
    units = value / step
    units = math.floor(units + 1e-9) if down else math.ceil(units - 1e-9)
    return float(f"{units * step:.{SIGNIFICANT_DIGITS + 1}g}")


def _consistent(overrides: dict[str, Any], specs: dict[str, Any],
                space: SearchSpace) -> dict[str, Any]:
    """Drop the overrides the narrowed space no longer has a use for (layers beyond its depth,
    the dense head's knobs without dense layers, ``weight_decay`` without AdamW, the
    ``momentum`` alias of a narrowed ``one_minus_momentum``)."""
    narrowed = SearchSpace({k: v for k, v in overrides.items() if k == space.depth_knob
                            or k == "dense_layers" or k == "optimizer"
                            or k in ("recipe", "momentum")}, family=space.family)
    layers = narrowed.max_layers()
    for name in list(overrides):
        base, _, index = name.rpartition("_")
        if base in space.knobs and space.knobs[base].per_layer and index.isdigit() \
                and int(index) >= layers:
            overrides.pop(name)
            specs.pop(name, None)
    dense = narrowed.domain("dense_layers") if "dense_layers" in space.knobs else None
    if dense is not None and max(_discrete(dense)) == 0:
        for name in ("dense_units", "head_dropout"):
            overrides.pop(name, None)
            specs.pop(name, None)
    if "adamw" not in _discrete(narrowed.domain("optimizer")):
        overrides.pop("weight_decay", None)
        specs.pop("weight_decay", None)
    if "one_minus_momentum" in specs:
        overrides.pop("momentum", None)
    return overrides


def _discrete(domain: Domain) -> list[Any]:
    """Every value of a discrete domain; none for a float range."""
    return [] if isinstance(domain, FloatRange) else _domain_values(domain)


def _range_text(low: Any, high: Any) -> str:
    """``3e-4..2e-3``, ``0.05..0.3``, ``64..256``: both bounds written alike."""
    small = any(isinstance(v, float) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4)
                for v in (low, high))
    return f"{_text(low, exponent=small)}..{_text(high, exponent=small)}"


def _text(value: Any, *, exponent: bool | None = None) -> str:
    """A short number or value for a stage's line (``3e-4``, ``0.025``, ``128``, ``adam``);
    ``exponent`` forces (or forbids) the ``3e-4`` form of a float."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if exponent is None:
            exponent = value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)
        if exponent and value != 0:
            mantissa, power = f"{value:.{SIGNIFICANT_DIGITS - 1}e}".split("e")
            return f"{mantissa.rstrip('0').removesuffix('.')}e{int(power)}"
        return f"{value:.3g}"
    return str(value)


# ---------------------------------------------------------------------- a stage's plan
@dataclasses.dataclass
class StagePlan:
    """What one coarse-to-fine stage searches.

    Attributes:
        stage: Its number (1 is the run itself).
        stages: How many stages the search has (``refine + 1``).
        max_epochs: Its ``max_epochs``.
        overrides: Its space, as overrides (its ``config.toml``'s ``[space]``).
        changes: What changed from the stage before (:attr:`Narrowing.changes`).
        top_trials: The previous stage's trials it narrowed around (``stage-<k>/<id>``).
        ranked: The previous stage's ranked distinct configurations.
        notes: What was left as it was, and why.
    """

    stage: int
    stages: int
    max_epochs: int
    overrides: dict[str, Any]
    changes: dict[str, str] = dataclasses.field(default_factory=dict)
    top_trials: tuple[str, ...] = ()
    ranked: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``run.json``'s ``stages`` entries hold)."""
        out = dataclasses.asdict(self)
        out["top_trials"] = list(self.top_trials)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StagePlan:
        """Inverse of :meth:`to_json`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["top_trials"] = tuple(values.get("top_trials") or ())
        return cls(**values)

    def line(self, width: int = 100) -> str:
        """One line for the terminal, at most ``width`` columns:
        ``stage 2/3: learning_rate 3e-4..2e-3 (log), optimizer fixed adam, 18 epochs``."""
        head = f"stage {self.stage}/{self.stages}: "
        tail = f"{self.max_epochs} epoch{'' if self.max_epochs == 1 else 's'}"
        if self.stage == 1:
            return _fit(f"{head}the space as configured, {tail}; then {self.stages - 1} "
                        f"refine stage{'s' if self.stages > 2 else ''} around its top "
                        f"{TOP_FRACTION:.0%}", width)
        if not self.changes:
            why = self.notes[0] if self.notes else "the top trials span it"
            return _fit(f"{head}space unchanged ({why}), {tail}", width)
        parts = [f"{name} {text}" for name, text in sorted(
            self.changes.items(), key=lambda item: _order(item[0]))]
        shown: list[str] = []
        for i, part in enumerate(parts):
            rest = len(parts) - i - 1
            more = f", +{rest} more" if rest else ""
            if len(head) + len(", ".join([*shown, part])) + len(more) + len(tail) + 2 > width:
                break
            shown.append(part)
        if len(shown) < len(parts):
            shown.append(f"+{len(parts) - len(shown)} more")
        return _fit(head + ", ".join([*shown, tail]), width)


def _order(name: str) -> tuple[int, str]:
    base = name.rsplit("_", 1)[0] if name[-1:].isdigit() else name
    rank_of = _LINE_ORDER.index(base) if base in _LINE_ORDER else len(_LINE_ORDER)
    return rank_of, name


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def plan_stage(stage: int, stages: int, records: Iterable[TrialRecord], space: SearchSpace,
               original: SearchSpace, *, direction: str, max_epochs: int,
               factor: float) -> StagePlan:
    """The plan of stage ``stage`` (2 or more) from the records of the stage before.

    Args:
        stage: The stage planned.
        stages: All stages of the search.
        records: The previous stage's trial records (their own ids).
        space: The previous stage's space.
        original: Stage 1's space.
        direction: The objective's direction.
        max_epochs: The previous stage's ``max_epochs``.
        factor: ``refine_factor``.
    """
    narrowing = narrow_space(records, space, original, direction=direction)
    return StagePlan(stage=stage, stages=stages, max_epochs=stage_epochs(max_epochs, factor),
                     overrides=narrowing.overrides, changes=narrowing.changes,
                     top_trials=tuple(stage_trial_id(stage - 1, t)
                                      for t in narrowing.top_trials),
                     ranked=narrowing.ranked, notes=narrowing.notes)


def space_markdown(plan: StagePlan, space: SearchSpace,
                   previous: SearchSpace | None = None) -> str:
    """A stage's space as markdown (TensorBoard's TEXT panel :data:`SPACE_TAG`)."""
    epochs = f"{plan.max_epochs} epoch{'' if plan.max_epochs == 1 else 's'}"
    if previous is None:
        lines = [f"**stage 1 of {plan.stages}**: {epochs}, the space as configured", "",
                 "| hyperparameter | domain |", "|---|---|"]
        lines += [f"| {name} | {describe_domain(domain)} |"
                  for name, domain in space.hparam_domains().items()]
        return "\n".join(lines)
    top = ", ".join(plan.top_trials)
    lines = [f"**stage {plan.stage} of {plan.stages}**: {epochs}, narrowed around the top "
             f"{len(plan.top_trials)} of {plan.ranked} ranked configurations of stage "
             f"{plan.stage - 1}" + (f" ({top})" if top else ""), ""]
    lines += [f"_{note}_  " for note in plan.notes]
    lines += ["| hyperparameter | stage before | this stage |", "|---|---|---|"]
    before, now = previous.hparam_domains(), space.hparam_domains()
    for name in dict.fromkeys([*before, *now]):
        old = describe_domain(before[name]) if name in before else "-"
        new = describe_domain(now[name]) if name in now else "-"
        mark = " **(narrowed)**" if old != new else ""
        lines.append(f"| {name} | {old} | {new}{mark} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the stages of a run
def _save_stage(run: RunDir, entry: Mapping[str, Any]) -> None:
    marker = run.read_marker()
    stages = [s for s in marker.get("stages", []) if isinstance(s, dict)
              and s.get("stage") != entry["stage"]]
    marker["stages"] = sorted([*stages, dict(entry)], key=lambda s: int(s["stage"]))
    run.write_json(run.marker, marker)


def _write_text(logdir: Path, text: str, step: int) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.text(SPACE_TAG, text, step=int(step))
    writer.flush()
    writer.close()


def _share(deadline: float | None, stages_left: int) -> float | None:
    """The deadline of the next stage: an equal share of the time left."""
    if deadline is None:
        return None
    now = time.time()
    return now + max(0.0, deadline - now) / max(1, stages_left)


def _ended(reason: str, deadline: float | None) -> bool:
    """Whether a stage that stopped for ``reason`` is over and the next one may start: it
    finished, or its share of the time ran out well before the search's ``deadline``."""
    if reason == "finished":
        return True
    return reason == "time budget" and deadline is not None and time.time() < deadline - 1.0


RunTrials = Callable[..., str]


def run_stages(config: Any, hypermodel: Any, objective: str, run_trials: RunTrials, *,
               init_run_dir: Callable[..., Any], deadline: float | None = None,
               on_trial: Callable[[TrialRecord], None] | None = None,
               on_start: Callable[[str], None] | None = None,
               on_epoch: Callable[[Any], None] | None = None) -> str:
    """Run a ``--refine`` search: stage 1 in the run directory, then each refine stage.

    Called by :func:`kerastune_kit.tuning.run_search` under the run directory's lock, after it
    was initialised. A stage finished before (``--resume``) is skipped.

    Args:
        config: The search's ``SearchConfig`` (``refine`` >= 1).
        hypermodel: Stage 1's hypermodel.
        objective: The objective's name.
        run_trials: ``run_trials(config, hypermodel, objective, deadline=, on_trial=)`` runs
            the trials of one stage's search (in this process, in workers) and returns why it
            ended (``finished``, ``time budget``, ``interrupted by SIGINT``, ...).
        init_run_dir: ``init_run_dir(config, dataset, space, objective)`` writes a run
            directory's ``config.toml`` and ``run.json`` (``tuning``'s, for each stage's).
        deadline: ``time.time()`` at which ``max_time`` ends (None: no time budget).
        on_trial: Called with each finished trial's record (refine stages' trials named
            ``stage-<k>/<id>``).
        on_start: Called with one line per stage before it starts (:meth:`StagePlan.line`).
        on_epoch: Called with each trial's :class:`~kerastune_kit.progress.EpochProgress`,
            refine stages' trials named ``stage-<k>/<id>`` as their records (passed to
            ``run_trials`` as ``on_epoch=``; None: ``run_trials``'s own).

    Returns:
        Why the search ended: ``finished``, or why the running stage stopped.
    """
    from kerastune_kit.results import direction_of

    run = RunDir(config.effective_run_dir())
    total = config.refine + 1
    saved = {int(s["stage"]): s for s in read_stages(run)} if config.resume else {}
    direction = direction_of(objective)
    original = SearchSpace(config.overrides, family=hypermodel.family)
    first = StagePlan(stage=1, stages=total, max_epochs=config.max_epochs,
                      overrides=dict(config.overrides))
    if saved.get(1, {}).get("status") != FINISHED:
        if 1 not in saved:
            _write_text(run.search_logdir, space_markdown(first, original), step=1)
        _save_stage(run, {**first.to_json(), "run_dir": ".", "status": RUNNING})
        if on_start is not None:
            on_start(first.line())
        stage_deadline = _share(deadline, total)
        reason = run_trials(config, hypermodel, objective, deadline=stage_deadline,
                            on_trial=on_trial)
        if not _ended(reason, deadline):
            return reason
        _save_stage(run, {**first.to_json(), "run_dir": ".", "status": FINISHED,
                          "stopped": None if reason == "finished" else reason})
    previous, space, records = first, original, read_trial_records(run.tuner_dir)
    for stage in range(2, total + 1):
        plan = plan_stage(stage, total, records, space, original, direction=direction,
                          max_epochs=previous.max_epochs, factor=config.refine_factor)
        if stage in saved:
            stored = StagePlan.from_json(saved[stage])
            if (stored.overrides, stored.max_epochs) != (plan.overrides, plan.max_epochs):
                logger.warning("stage %d: the space derived again differs from the one it "
                               "started with; continuing with the stored one", stage)
                plan = stored
        stage_space = SearchSpace(plan.overrides, family=hypermodel.family)
        stage_dir = run.stage_dir(stage)
        stage_config = stage_search_config(config, plan, objective)
        if saved.get(stage, {}).get("status") != FINISHED:
            entry = {**plan.to_json(), "run_dir": f"{STAGES_DIR}/{stage}"}
            _save_stage(run, {**entry, "status": RUNNING})
            if on_start is not None:
                on_start(plan.line())
            stage_deadline = _share(deadline, total - stage + 1)
            reason = _run_stage(stage_config, plan, space_markdown(plan, stage_space, space),
                                _epochs_named(run_trials, stage, on_epoch), init_run_dir,
                                deadline=stage_deadline, on_trial=on_trial)
            if not _ended(reason, deadline):
                return reason
            _save_stage(run, {**entry, "status": FINISHED,
                              "stopped": None if reason == "finished" else reason})
        previous, space = plan, stage_space
        records = read_trial_records(RunDir(stage_dir).tuner_dir)
    return "finished"


def _epochs_named(run_trials: RunTrials, stage: int,
                  on_epoch: Callable[[Any], None] | None) -> RunTrials:
    """``run_trials`` whose epoch events name trials as stage ``stage``'s records are named
    (``stage-<k>/<id>``)."""
    if on_epoch is None:
        return run_trials

    def renamed(event: Any) -> None:
        on_epoch(event._replace(trial_id=stage_trial_id(stage, event.trial_id)))

    return functools.partial(run_trials, on_epoch=renamed)


def stage_search_config(config: Any, plan: StagePlan, objective: str) -> Any:
    """The ``SearchConfig`` of refine stage ``plan.stage`` of the search ``config``: its run
    directory ``RUN/stages/<k>``, its space and epochs; no further stages, no refit, no
    preflight, no popular designs; resumed when it was started before."""
    stage_dir = RunDir(config.effective_run_dir()).stage_dir(plan.stage)
    return dataclasses.replace(
        config, run_dir=str(stage_dir), overrides=dict(plan.overrides),
        max_epochs=plan.max_epochs, objective=objective, refine=0, refit=False,
        preflight=False, baselines=False, overwrite=False, resume=RunDir(stage_dir).is_run())


def _run_stage(config: Any, plan: StagePlan, markdown: str, run_trials: RunTrials,
               init_run_dir: Callable[..., Any], *, deadline: float | None,
               on_trial: Callable[[TrialRecord], None] | None) -> str:
    """One refine stage in its own run directory: initialise it, search, write its results."""
    from kerastune_kit.rundir import RunDirLock
    from kerastune_kit.session import prepare
    from kerastune_kit.tuners import build_tuner

    dataset, space, hypermodel, objective = prepare(config, check_run_dir=False)
    stage_dir = Path(config.run_dir)
    top = RunDir(stage_dir.parent.parent)
    logdir = top.stage_logdir(plan.stage)
    with RunDirLock(stage_dir, action="search"):
        logdir.mkdir(parents=True, exist_ok=True)
        link = stage_dir / TENSORBOARD_DIR
        if not link.is_symlink() and not link.exists():
            link.symlink_to(os.path.relpath(logdir, stage_dir), target_is_directory=True)
        if not any(logdir.glob("events.out.tfevents.*")):
            # First: the stage then writes no HParams experiment of its own (the run's, at
            # RUN/tensorboard, has stage 1's domains, which contain this stage's).
            _write_text(logdir, markdown, step=plan.stage)
        init_run_dir(config, dataset, space, objective)
        run = RunDir(stage_dir)
        run.write_json(run.marker, {**run.read_marker(), "stage": plan.stage,
                                    "stages": plan.stages, "parent_run_dir": "../.."})

        def named(record: TrialRecord) -> None:
            if on_trial is not None:
                on_trial(in_stage(record, plan.stage))

        reason = run_trials(config, hypermodel, objective, deadline=deadline, on_trial=named)
        build_tuner(config, hypermodel, objective=objective).kit_write_results()
    return reason


def combine_stages(run_dir: str | Path, records: Sequence[TrialRecord], *, direction: str,
                   hp_names: Sequence[str], objective: str
                   ) -> tuple[list[TrialRecord], TrialRecord | None]:
    """The whole run's results over every stage: ``RUN/leaderboard.csv`` (refine stages'
    trials named ``stage-<k>/<id>``), ``best_hyperparameters.json`` (with ``stage``) and
    ``best_model.keras`` (copied from the stage the best trial ran in), and the TensorBoard
    leaderboard panel at ``RUN/tensorboard``.

    Args:
        run_dir: The run directory.
        records: Stage 1's records (its results files are written already).
        direction: The objective's direction.
        hp_names: Stage 1's hyperparameter names (the leaderboard's columns).
        objective: The objective's name.

    Returns:
        Every stage's records, best first, and the best (None when no trial ranked).
    """
    import shutil

    from kerastune_kit.runs import load_results

    run = RunDir(run_dir)
    combined = list(records)
    names = list(hp_names)
    for stage, path in run.stage_dirs():
        if not (RunDir(path).leaderboard.is_file() or RunDir(path).trial_records()):
            continue
        results = load_results(path)
        combined += [in_stage(record, stage) for record in results.trials]
        names += [n for n in results.hp_names if n not in names]
    combined = rank(combined, direction)
    write_leaderboard(run.leaderboard, combined, names)
    best = best_of(combined, direction)
    if best is not None:
        from kerastune_kit.rundir import split_stage_trial_id

        stage, local = split_stage_trial_id(best.trial_id)
        source = RunDir(run.stage_dir(stage)) if stage else run
        saved = source.read_best_hyperparameters()
        if saved.get("trial_id") != local or not source.best_model.is_file():
            logger.warning("the best trial %s has no best model in %s; %s and %s are stage "
                           "1's", best.trial_id, source, run.best_model.name,
                           run.best_hyperparameters.name)
        else:
            if stage:
                with atomic_path(run.best_model) as tmp:
                    shutil.copyfile(source.best_model, tmp)
            run.write_json(run.best_hyperparameters, {
                **saved, "trial_id": best.trial_id, "stage": stage or 1,
                "stage_run_dir": f"{STAGES_DIR}/{stage}" if stage else "."})
    from kerastune_kit.tensorboard import SearchSummaryWriter

    summary = SearchSummaryWriter(run.tensorboard_dir)
    try:
        summary.write_leaderboard(combined, names, objective=objective, direction=direction,
                                  step=sum(r.outcome != "running" for r in combined))
    finally:
        summary.close()
    return combined, best


def finish_stages(config: Any, tuner: Any, records: Sequence[TrialRecord], objective: str
                  ) -> tuple[list[TrialRecord], TrialRecord | None, Any, TrialRecord | None]:
    """The results over every stage (:func:`combine_stages`), and where the best trial ran.

    Args:
        config: The search's ``SearchConfig``.
        tuner: Stage 1's tuner (its results files are written).
        records: Stage 1's records.
        objective: The objective's name.

    Returns:
        ``(records, best, best_tuner, best_own)``: every stage's records best first, the best
        (named ``stage-<k>/<id>`` when a refine stage's), the tuner of the stage it ran in and
        its record there (with its own id: what a final evaluation loads the model with).
    """
    from kerastune_kit.rundir import split_stage_trial_id

    direction = tuner.oracle.objective.direction
    combined, best = combine_stages(config.effective_run_dir(), records, direction=direction,
                                    hp_names=tuner.kit_hp_names(), objective=objective)
    stage = split_stage_trial_id(best.trial_id)[0] if best is not None else None
    entry = next((s for s in read_stages(config.effective_run_dir())
                  if s.get("stage") == stage), None)
    if best is None or stage is None or entry is None:
        return combined, best, tuner, best
    from kerastune_kit.session import prepare
    from kerastune_kit.tuners import build_tuner

    stage_config = stage_search_config(config, StagePlan.from_json(entry), objective)
    _, _, hypermodel, _ = prepare(stage_config, check_run_dir=False)
    stage_tuner = build_tuner(stage_config, hypermodel, objective=objective)
    own = dataclasses.replace(best, trial_id=split_stage_trial_id(best.trial_id)[1],
                              parent_trial_id=split_stage_trial_id(
                                  best.parent_trial_id or "")[1] or None)
    return combined, best, stage_tuner, own


def summary_line(run_dir: str | Path, records: Sequence[TrialRecord], *,
                 objective: str, width: int = 100) -> str | None:
    """One line of each stage's best score for the end of a search (None without stages):
    ``stages (best val_accuracy): 1: 0.9333 of 4 trials, 2: 0.9667 of 4 trials``."""
    from kerastune_kit.results import direction_of
    from kerastune_kit.rundir import split_stage_trial_id

    stages = read_stages(run_dir)
    if not stages:
        return None
    pick = max if direction_of(objective) == "max" else min
    parts = []
    for entry in stages:
        stage = int(entry["stage"])
        mine = [r for r in records if (split_stage_trial_id(r.trial_id)[0] or 1) == stage]
        scores = [r.score for r in mine if is_ranked(r)]
        best = pick(scores) if scores else None
        score = "-" if best is None else f"{best:.4f}"
        parts.append(f"{stage}: {score} of {len(mine)} trial{'' if len(mine) == 1 else 's'}")
    return _fit(f"stages (best {objective}): " + ", ".join(parts), width)
