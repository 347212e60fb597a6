"""Every status a trial can have: KerasTuner's and kerastune_kit's own, as one enum.

Owns: :class:`TrialStatus` and the groups of statuses readers ask about. Pure: imports nothing.
Does not own: what a status means for ranking (``results.is_ranked``) or how a trial ends
(``tuners``).
"""

from __future__ import annotations

import enum


class TrialStatus(str, enum.Enum):
    """A trial's status. A ``str``: ``TrialStatus.COMPLETED == "COMPLETED"``, and JSON, CSV and
    f-strings show the bare value, so files written with members or with strings are the same.

    KerasTuner's (``keras_tuner.engine.trial.TrialStatus``): ``RUNNING``, ``IDLE``, ``INVALID``,
    ``STOPPED``, ``COMPLETED``, ``FAILED``. Ours: ``PRUNED`` (stopped early by a pruner; keeps
    its best score so far) and ``DIVERGED`` (a non-finite loss; no score of its own).

    Example:
        >>> TrialStatus.PRUNED == "PRUNED", f"{TrialStatus.PRUNED}"
        (True, 'PRUNED')
        >>> TrialStatus("COMPLETED") is TrialStatus.COMPLETED
        True
    """

    RUNNING = "RUNNING"
    IDLE = "IDLE"
    INVALID = "INVALID"
    STOPPED = "STOPPED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    PRUNED = "PRUNED"
    DIVERGED = "DIVERGED"

    # The value, not "TrialStatus.COMPLETED", wherever a member is printed or formatted.
    __str__ = str.__str__
    __format__ = str.__format__


#: Statuses that compete for "best" when the score is finite (``results.is_ranked``).
RANKED_STATUSES = (TrialStatus.COMPLETED, TrialStatus.PRUNED)
#: Statuses of a trial that has not ended (resumable).
UNFINISHED_STATUSES = (TrialStatus.RUNNING, TrialStatus.IDLE)
#: Statuses of a trial that ended without a score of its own.
FAILED_STATUSES = (TrialStatus.FAILED, TrialStatus.INVALID)
