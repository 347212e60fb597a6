"""A trial's seed, its record's text, and the worst-score policy for diverged trials.

Owns: :func:`trial_seed`, :func:`rescore_diverged` (the stand-in score that ranks a diverged
trial below every finished one, for the oracle too). Imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastune_kit.results import TrialRecord, is_ranked


def trial_seed(seed: int, trial_id: str) -> int:
    """The seed of one trial: stable for a search seed and a trial id."""
    digits = "".join(ch for ch in str(trial_id) if ch.isdigit()) or "0"
    return (int(seed) * 1_000_003 + int(digits)) % (2**31 - 1)


_BELOW = " (ranked below every completed and pruned trial)"


def rescore_diverged(oracle: Any, records: Sequence[TrialRecord]) -> list[str]:
    """Give every DIVERGED trial the oracle knows a stand-in score just worse than the worst
    ranked (completed or pruned) trial, revised whenever called.

    The oracle needs a finite score for a diverged trial (NaN would read as a perfect score to
    KerasTuner's Bayesian oracle, and Hyperband sorts by score), but the worst score *so far*
    goes stale: a later, worse trial would rank below a diverged one, and a Gaussian process
    or a Hyperband promotion would prefer the diverged configuration. Called before each new
    trial (and by the chief before each ``CreateTrial``), so promotions and proposals always
    see diverged trials last. The stand-in is the worst score moved by 0.1% of its size
    (at least 1e-6) in the losing direction.

    Args:
        oracle: A KerasTuner oracle (not a worker's client).
        records: The search's trial records (their statuses say which trials diverged).

    Returns:
        The ids of the trials whose score changed (their ``trial.json`` is rewritten).
    """
    diverged = [r.trial_id for r in records if r.outcome == "diverged"]
    oracle.kit_diverged = set(diverged)  # Hyperband never promotes these (KitHyperbandOracle)
    scores = [r.score for r in records if is_ranked(r)]
    if not diverged or not scores:
        return []
    maximize = oracle.objective.direction == "max"
    worst = min(scores) if maximize else max(scores)
    margin = max(abs(worst) * 1e-3, 1e-6)
    stand_in = worst - margin if maximize else worst + margin
    changed = []
    for trial_id in diverged:
        trial = oracle.trials.get(trial_id)
        if trial is None or trial.score is None or trial.score == stand_in:
            continue
        trial.score = stand_in
        oracle._save_trial(trial)
        changed.append(trial_id)
    if changed:
        oracle.save()
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else message
