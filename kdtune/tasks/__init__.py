"""What each task provides behind one interface (:class:`~kdtune.tasks.base.Task`): its data, models, loss,
metrics, objective and cache codec; and the registry that picks a spec's task.

A new task is one module (e.g. ``kdtune/tasks/language/task.py``, a :class:`Task` subclass) and one entry in
:data:`TASKS`. Importing this package imports no torch: the task modules import their heavy parts inside their
methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kdtune.errors import SpecError
from kdtune.tasks.base import Objective
from kdtune.tasks.base import Task
from kdtune.tasks.image.task import ImageClassification
from kdtune.tasks.language.task import LanguageModelling
from kdtune.tasks.linear.task import LinearRegression


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec


#: Every task by name, in the order they are asked whether a dataset is theirs (:meth:`Task.claims`): image
#: classification, which takes every dataset no other task claims, comes last.
TASKS: dict[str, Task] = {task.name: task for task in (LinearRegression(), LanguageModelling(), ImageClassification())}

__all__ = ["TASKS", "Objective", "Task", "objective_of", "task_for", "task_of"]


def task_for(spec: StudySpec) -> Task:
    """The task of a spec: the one its datasets (``conditions.dataset``, else ``dataset.name``) belong to."""
    return task_of(spec.conditions.dataset or [spec.dataset.name])


def task_of(datasets: Sequence[str]) -> Task:
    """The one task all ``datasets`` belong to; a study compares like with like, so a mix is refused."""
    found = [next(task for task in TASKS.values() if task.claims(d)) for d in datasets]
    mixed = [task for task in TASKS.values() if task in found]
    if len(mixed) > 1:
        raise SpecError("conditions.dataset", list(datasets), f"cannot mix the {mixed[0].kind} task with "
                        + " or ".join(task.kind for task in mixed[1:]))
    return found[0]


def objective_of(spec: StudySpec) -> Objective:
    """What the spec's study selects on: its ``objective``, else its task's default."""
    return task_for(spec).objective(spec.objective)
