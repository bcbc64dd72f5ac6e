"""Expand a study spec into its conditions (pure: no I/O, no Ray).

A condition is one point of the product of the spec's ``conditions`` axes. Each has a stable, readable key
(``noise_level=0.1,teacher_select=final``) built from the axes that vary in this study, used for the Optuna
study name, the W&B job type and the results rows.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """Plain words for verdicts and plot titles, e.g. ``digits, 10% label noise, teacher best_val``."""
        from kdtune.tasks import task_of

        noise = f", {self.noise_level:.0%} {self.noise_type} label noise" if task_of([self.dataset]).label_noise else ""
        return f"{self.dataset}{noise}, teacher {self.teacher_select} ({self.teacher_epochs} epochs, seed " \
               f"{self.teacher_seed}), student {self.student_arch}"

    def load_data(self, spec: StudySpec) -> DataBundle:
        from kdtune.tasks.datasets import load_dataset

        d = spec.dataset
        return load_dataset(self.dataset, data_root=d.data_root, download=d.download, train_size=d.train_size,
                            val_fraction=d.val_fraction, noise_level=self.noise_level, noise_type=self.noise_type,
                            seed=d.seed, linear=d.linear.model_dump(), files=self.files(spec))

    def files(self, spec: StudySpec) -> list[str] | None:
        """``dataset.files`` when this condition's dataset is the spec's (``conditions.dataset`` may add others)."""
        return spec.dataset.files if self.dataset == spec.dataset.name else None

    def teacher_spec(self, spec: StudySpec) -> TeacherSpec:
        from kdtune.cache.teacher import TeacherSpec
        from kdtune.core.train import Augment

        t = spec.teacher
        return TeacherSpec(arch=t.arch, epochs=self.teacher_epochs, lr=t.lr, batch_size=t.batch_size,
                           seed=self.teacher_seed, select=self.teacher_select, patience=t.patience,
                           kwargs=dict(t.kwargs), checkpoint=t.checkpoint, logits=t.logits,
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
    }
    varying = [name for name, values in axes.items() if len(values) > 1]
    conditions = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        key = ",".join(f"{name}={point[name]}" for name in varying) or "all"
        conditions.append(Condition(key=key, **point))
    return conditions
