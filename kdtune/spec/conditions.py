"""Expand a study spec into its conditions (pure: no I/O, no Ray).

A condition is one point of the product of the spec's ``conditions`` axes. Each has a stable, readable key
(``noise_level=0.1,teacher_select=final``) built from the axes that vary in this study, used for the Optuna
study name, the W&B job type and the results rows.

A model size (``conditions.student_size``, ``teacher_size``) is a name; the condition resolves it to the kwargs
its models are built with (:meth:`Condition.student_kwargs`, :meth:`Condition.teacher_kwargs`: the size's
overrides merged over the section's kwargs), so everything that builds a condition's model asks the condition.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal


if TYPE_CHECKING:
    from kdtune.cache.teacher import TeacherSpec
    from kdtune.core.data import DataBundle
    from kdtune.spec.schema import StudySpec


@dataclass(frozen=True)
class Condition:
    key: str
    dataset: str
    noise_level: float
    noise_type: str
    teacher_epochs: int
    teacher_select: str
    teacher_seed: int
    teacher_error: float  # linear task only
    student_arch: str
    # Added later, with defaults: study folders written before them still read (``Condition(**recorded)``).
    teacher_size: str | None = None  # a name of conditions.teacher_size; None: teacher.kwargs as they are
    student_size: str | None = None  # a name of conditions.student_size; None: student.kwargs as they are
    top_k: int | None = None  # language task: the k its students read of the cache.top_k targets (None: all)

    def as_dict(self) -> dict[str, Any]:
        """The axes, as study.json, the results rows and W&B record them. The later axes (sizes, k) appear only
        when set, so a study without them records its conditions as before and pools with older folders."""
        return {name: value for name, value in asdict(self).items() if value is not None or name not in LATER_AXES}

    def describe(self) -> str:
        """Plain words for verdicts and plot titles, e.g. ``digits, 10% label noise, teacher best_val``; model sizes
        and the teacher's top-k are named where the study sets them."""
        from kdtune.tasks import task_of

        noise = f", {self.noise_level:.0%} {self.noise_type} label noise" if task_of([self.dataset]).label_noise else ""
        teacher_size = f", size {self.teacher_size}" if self.teacher_size is not None else ""
        student_size = f" (size {self.student_size})" if self.student_size is not None else ""
        top_k = f", top-{self.top_k} teacher targets" if self.top_k is not None else ""
        return f"{self.dataset}{noise}, teacher {self.teacher_select} ({self.teacher_epochs} epochs, seed " \
               f"{self.teacher_seed}{teacher_size}), student {self.student_arch}{student_size}{top_k}"

    def student_kwargs(self, spec: StudySpec) -> dict[str, Any]:
        """The kwargs this condition's students are built with: ``student.kwargs``, its size's merged over them."""
        return _sized(spec.student.kwargs, spec.conditions.student_size, self.student_size)

    def teacher_kwargs(self, spec: StudySpec) -> dict[str, Any]:
        """The kwargs this condition's teacher is built with (part of its cache key): ``teacher.kwargs``, its
        size's merged over them."""
        return _sized(spec.teacher.kwargs, spec.conditions.teacher_size, self.teacher_size)

    def model_field(self, role: Literal["teacher", "student"]) -> str:
        """The spec field a model that fails to build is named by: its size (``conditions.student_size.d64``),
        which changed the kwargs, or else the section's ``student.arch`` / ``teacher.arch``."""
        size = self.teacher_size if role == "teacher" else self.student_size
        return f"{role}.arch" if size is None else f"conditions.{role}_size.{size}"

    def load_data(self, spec: StudySpec) -> DataBundle:
        from kdtune.tasks.datasets import load_dataset

        d = spec.dataset
        return load_dataset(self.dataset, data_root=d.data_root, download=d.download, train_size=d.train_size,
                            val_fraction=d.val_fraction, noise_level=self.noise_level, noise_type=self.noise_type,
                            seed=d.seed, linear=d.linear.model_dump(), files=self.files(spec), images=d.images())

    def files(self, spec: StudySpec) -> list[str] | None:
        """``dataset.files`` when this condition's dataset is the spec's (``conditions.dataset`` may add others)."""
        return spec.dataset.files if self.dataset == spec.dataset.name else None

    def teacher_spec(self, spec: StudySpec) -> TeacherSpec:
        from kdtune.cache.teacher import TeacherSpec
        from kdtune.core.train import Augment

        t = spec.teacher
        return TeacherSpec(arch=t.arch, epochs=self.teacher_epochs, lr=t.lr, batch_size=t.batch_size,
                           seed=self.teacher_seed, select=self.teacher_select, patience=t.patience,
                           kwargs=self.teacher_kwargs(spec), checkpoint=t.checkpoint, logits=t.logits,
                           augment=Augment(**t.augment.model_dump()), ensemble=t.ensemble, **t.recipe())


def expand(spec: StudySpec) -> list[Condition]:
    """All conditions of the study, in a deterministic order."""
    c = spec.conditions
    axes: dict[str, list[Any]] = {
        "dataset": c.dataset or [spec.dataset.name],
        "noise_level": list(c.noise_level),
        "noise_type": list(c.noise_type),
        "teacher_epochs": c.teacher_epochs or [spec.teacher.epochs],
        "teacher_select": c.teacher_select or [spec.teacher.select],
        "teacher_seed": c.teacher_seeds or [spec.teacher.seed],
        "teacher_error": c.teacher_error or [spec.teacher.error],
        "student_arch": c.student_arch or [spec.student.arch],
        "teacher_size": list(c.teacher_size or [None]),
        "student_size": list(c.student_size or [None]),
        "top_k": c.top_k or [None],
    }
    varying = [name for name, values in axes.items() if len(values) > 1]
    conditions = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        key = ",".join(f"{name}={point[name]}" for name in varying) or "all"
        conditions.append(Condition(key=key, **point))
    return conditions


#: Axes added after study folders were first written: recorded only when set (:meth:`Condition.as_dict`).
LATER_AXES = ("teacher_size", "student_size", "top_k")


def _sized(kwargs: dict[str, Any], sizes: dict[str, dict[str, Any]] | None, size: str | None) -> dict[str, Any]:
    """``kwargs`` with the overrides of size ``size`` (a key of ``sizes``) merged over them."""
    return {**kwargs, **(sizes or {})[size]} if size is not None else dict(kwargs)
