"""One teacher, one student distilled from it and the same student without distillation: no study, no Ray.

alpha is the weight on the true labels: alpha = 1 means no distillation. Both students share their seed (same
initial weights, same batch order), so the comparison is paired; each is reported at its best validation epoch.
The teacher and its logits (and, with augmented students, its logits per view) come from the teacher-logit
cache, so a second run with the same teacher and data trains no teacher. ``kdtune distill`` is the command: it
turns flags into the arguments here, shows :class:`Progress` and prints :class:`PairedResult`.

Two steps, so that a mistake is refused before any progress is shown or anything trains: building a
:class:`PairedDistillation` checks the student (one batch) and the views, :meth:`PairedDistillation.run` trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from kdtune.cache import LogitCache
from kdtune.cache.teacher import TeacherSpec
from kdtune.cache.teacher import build_checked
from kdtune.core.train import TrainConfig
from kdtune.core.train import train_student
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.views import check_views


if TYPE_CHECKING:
    from kdtune.core.data import DataBundle
    from kdtune.core.train import EpochMetrics
    from kdtune.tasks.image.views import ViewSpec

#: The teacher's diagnostics that a row of the comparison shows.
ROW_METRICS = ("test_accuracy", "val_accuracy", "correction_rate", "memorisation_rate")


class Progress(Protocol):
    """What the caller shows while the teacher and the students train."""

    def tracker(self, name: str, epochs: int, *, lazy: bool = False) -> Callable[[EpochMetrics], None]:
        """A per-epoch callback for one model; ``lazy``: show it only once an epoch runs (a cached teacher has none)."""

    def note(self, text: str) -> None:
        """One line about where the teacher or its logits came from."""


@dataclass(frozen=True)
class PairedResult:
    rows: list[dict[str, Any]]  # the teacher, the distilled student, the student without distillation
    diagnostics: dict[str, Any]  # the teacher's (calibration, soft-target entropy, accuracies)
    cache: dict[str, Any]  # teacher_key, logits_key, hit, views_key


class PairedDistillation:
    """A teacher and two students of one architecture and seed: ``config`` (distilled) and alpha = 1."""

    def __init__(self, data: DataBundle, cache: LogitCache, teacher: TeacherSpec, student: str,
                 student_kwargs: dict[str, Any], config: TrainConfig, *, views: ViewSpec | None,
                 top_k: int | None, max_bytes: int) -> None:
        # The student's output shape on one batch, before the teacher trains (the teacher is checked in the cache).
        build_checked(student, data, kwargs=student_kwargs, field="--student", seed=config.seed)
        if views is not None:  # image inputs, top-k and size, before the teacher trains
            check_views(views, tuple(data.train.x.shape), data.num_classes, top_k=top_k, max_bytes=max_bytes)
        self.data, self.cache, self.teacher, self.student = data, cache, teacher, student
        self.views, self.top_k, self.max_bytes = views, top_k, max_bytes
        self.students = {name: (c, build_model(student, input_shape=data.input_shape, num_classes=data.num_classes,
                                               kwargs=student_kwargs, field="--student", seed=config.seed))
                         for name, c in (("student, distilled", config),
                                         ("student, no distillation", dataclasses.replace(config, alpha=1.0)))}

    def run(self, progress: Progress, *, threads: int) -> PairedResult:
        """Prepare the teacher (trained, loaded or from the cache), then train both students on its logits."""
        spec, data = self.teacher, self.data
        prepared = self.cache.prepare(spec, data, threads=threads,
                                      on_epoch=progress.tracker("teacher", spec.epochs, lazy=True))
        state = "cached" if prepared.hit else "computed now"
        if spec.checkpoint:
            progress.note(f"teacher from checkpoint {spec.checkpoint} (logits {prepared.key}, {state})")
        elif not prepared.trained:
            progress.note(f"teacher from the cache: {prepared.teacher_key} (logits {prepared.key}, {state})")
        teacher, diagnostics = prepared.teacher, prepared.diagnostics
        views = None
        if self.views is not None:
            views = self.cache.prepare_views(prepared, data, self.views, top_k=self.top_k, max_bytes=self.max_bytes)
            progress.note(f"teacher logits for {self.views.views} views of every training image: {views.key}")
        assert teacher is not None  # a trained or loaded teacher, never imported logits
        rows: list[dict[str, Any]] = [{"model": f"teacher ({spec.arch})", "alpha": None, "temperature": None,
                                       "epoch": teacher.selected_epoch, **{k: diagnostics[k] for k in ROW_METRICS}}]
        for name, (config, model) in self.students.items():
            history = train_student(model, data, config, teacher=prepared.logits, views=views,
                                    on_epoch=progress.tracker(name, config.epochs), threads=threads)
            best = history.best
            rows.append({"model": f"{name} ({self.student})", "alpha": config.alpha, "temperature": config.temperature,
                         "epoch": best.epoch, **{k: getattr(best, k) for k in ROW_METRICS}})
        cache = {"teacher_key": prepared.teacher_key, "logits_key": prepared.key, "hit": prepared.hit,
                 "views_key": None if views is None else views.key}
        return PairedResult(rows=rows, diagnostics=diagnostics, cache=cache)
