"""Every condition's data and teacher, prepared in parallel Ray tasks before any trial starts.

Per condition, a Ray task loads the data, gets the teacher and its outputs (for images, from the teacher-logit
cache, training the teacher only on a miss) and returns the arrays, which stay in Ray's object store: every trial
on a node reads them from there without a copy. Each task reserves an equal share of the cluster's cores
(:func:`kdtune.spec.rules.preparation_cpus`) and, on one node, takes over epoch by epoch those that finished
preparations leave free (:func:`teacher_threads`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdtune.spec.conditions import Condition
from kdtune.spec.rules import preparation_cpus
from kdtune.spec.schema import StudySpec


def prepare_conditions(spec: StudySpec, conditions: list[Condition], cache_dir: str | None,
                       say: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prepare every condition's data and teacher in parallel Ray tasks; return object refs and teacher info.

    ``say``, if given, is handed a line as each teacher starts and as it is ready (with its validation metric:
    :mod:`kdtune.records.progress_lines`). A kdtune error inside a task (a model with the wrong output shape,
    malformed user data, imported logits that do not fit) is raised here as the same one-line error, not as Ray's
    wrapped traceback; the other conditions' tasks are cancelled.
    """
    import ray
    from ray.exceptions import RayTaskError

    from kdtune.errors import KdtuneError

    resources = ray.cluster_resources()
    gpu = 1 if resources.get("GPU", 0) >= 1 else 0
    node_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    cpus = preparation_cpus(resources.get("CPU", 1), node_cpus, len(conditions))
    task = ray.remote(num_returns=2, num_gpus=gpu, num_cpus=cpus)(prepare_condition)
    refs = {c.key: task.remote(spec.to_dict(), c.as_dict(), cache_dir, cpus) for c in conditions}
    at_once = max(1, int(resources.get("CPU", 1) // cpus))
    if gpu:
        at_once = min(at_once, int(resources.get("GPU", 1)))
    try:
        teachers = _await_teachers(spec, refs, at_once, say or (lambda line: None))
    except RayTaskError as exc:
        for info, _ in refs.values():
            try:
                ray.cancel(info)
            except Exception:  # already finished, or failed: nothing to cancel
                pass
        _consume([ref for pair in refs.values() for ref in pair])
        cause = getattr(exc, "cause", None)
        if isinstance(cause, KdtuneError):
            raise cause from None
        raise
    payloads = {key: payload for key, (_, payload) in refs.items()}
    return payloads, teachers


def _await_teachers(spec: StudySpec, refs: dict[str, Any], at_once: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Each condition's teacher info as its task ends, said as it starts and ends. ``at_once`` tasks run at a time
    (the cores each reserves), the others start, in order, as earlier ones end."""
    import time

    import ray

    from kdtune.records.progress_lines import teacher_ready_line
    from kdtune.records.progress_lines import teacher_started_line
    from kdtune.records.progress_lines import teachers_waiting_line
    from kdtune.tasks import task_for

    column = task_for(spec).objective(spec.objective).column
    start = time.monotonic()
    waiting = list(refs)
    for key in waiting[:at_once]:
        say(teacher_started_line(key))
    waiting = waiting[at_once:]
    if waiting:
        say(teachers_waiting_line(len(waiting), at_once))
    pending = {info: key for key, (info, _) in refs.items()}
    teachers: dict[str, Any] = {}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready)
        teachers[key] = ray.get(ready)
        say(teacher_ready_line(key, teachers[key], column, time.monotonic() - start))
        if waiting:
            say(teacher_started_line(waiting.pop(0)))
    return {key: teachers[key] for key in refs}


def teacher_threads(reserved: int) -> int:
    """Torch threads for a teacher now: the cores its task reserved, plus, on a one-node Ray, the cores that no
    running task or actor holds (the preparations run before any trial, so these are the cores that finished
    preparations left free). Asked again after every teacher epoch, so the last teacher of a study trains on every
    core. On a cluster of several nodes the free cores may be on another node: the task keeps its share there."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) != 1:
        return reserved
    node_cpus = int(nodes[0].get("Resources", {}).get("CPU", reserved))
    free = int(ray.available_resources().get("CPU", 0))
    return max(reserved, min(node_cpus, reserved + free))


def _consume(refs: list[Any], timeout_s: float = 10.0) -> None:
    """Fetch the outcome of failed and cancelled tasks: Ray prints a traceback for every errored object nobody
    fetched, which would follow kdtune's one-line error."""
    import ray

    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            ray.get(ref)
        except Exception:  # the error already reported, or a cancellation
            pass


def prepare_condition(spec_dict: dict[str, Any], condition: dict[str, Any], cache_dir: str | None, cpus: int = 1
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs in a Ray task: the condition's data and teacher, packed as arrays (the study's task prepares them:
    :meth:`kdtune.tasks.base.Task.prepare`; for images the teacher comes from the cache, trained on a miss).

    The teacher trains on ``cpus`` threads (the task's reservation), and on more after any epoch at which other
    preparations have ended (:func:`teacher_threads`); its logits pass runs on as many.
    """
    import torch

    from kdtune.tasks import task_for

    spec = StudySpec.model_validate(spec_dict)
    torch.set_num_threads(teacher_threads(cpus))
    return task_for(spec).prepare(spec, Condition(**condition), cache_dir=cache_dir,
                                  on_epoch=lambda _: torch.set_num_threads(teacher_threads(cpus)))
