"""The running-best rule, once: a value is better only when it is strictly better in the objective's direction,
so a run's best validation epoch is the earliest one on ties.

Every place that picks a best epoch uses it: the trainer's :class:`~kdtune.core.train.History`, the trial's
running best and the W&B summary (through :meth:`kdtune.tasks.base.Objective.better`), the exported student, and
the scoring every later step reads (:func:`kdtune.analysis.scoring.score_runs`). It lives in the core, the lowest
layer that needs it, and imports nothing heavy (the read-only commands score runs without torch).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Literal
from typing import TypeVar


Mode = Literal["max", "min"]
T = TypeVar("T")


def better(value: float, than: float, mode: Mode) -> bool:
    """``value`` strictly better than ``than``: larger for ``max`` (accuracy), smaller for ``min`` (a loss)."""
    return value > than if mode == "max" else value < than


def first_best(items: Iterable[T], value: Callable[[T], float], mode: Mode) -> T | None:
    """The earliest of ``items`` (in epoch order) that no later item strictly beats; None when there are none.

    Values must be comparable: callers leave out NaN (a NaN first item would never be beaten).
    """
    best: T | None = None
    best_value = 0.0
    for item in items:
        v = value(item)
        if best is None or better(v, best_value, mode):
            best, best_value = item, v
    return best
