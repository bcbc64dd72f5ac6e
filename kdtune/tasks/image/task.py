"""Image classification behind the task boundary (:mod:`kdtune.tasks.base`): built-in and user datasets, models by
name, students trained epoch by epoch from the teacher's cached logits, validation accuracy maximised.

Delegates to the modules that do the work (``kdtune.core.train``, ``kdtune.tasks.image.models`` and ``views``,
the teacher-logit cache), imported inside the methods: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import SpecError
from kdtune.tasks.base import Objective
from kdtune.tasks.base import Task
from kdtune.tasks.base import TrainerSeeds
from kdtune.tasks.base import refuse_text_fields


if TYPE_CHECKING:
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks.base import SeedRuns


#: The default equivalence margin: 0.5 points of test accuracy.
DEFAULT_MARGIN_POINTS = 0.5
ACCURACY = Objective("val_accuracy", "val_accuracy", "max", "test_accuracy", label="validation accuracy",
                     test_label="test accuracy", margin_unit="points of test accuracy", margin_scale=0.01,
                     default_margin=DEFAULT_MARGIN_POINTS)


class ImageClassification(Task):
    name = "image"
    kind = "classification"
    objectives = (ACCURACY,)
    search_params = ("alpha", "temperature", "lr", "batch_size", "epochs")
    metrics = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "test_macro_f1",
               "test_per_class_accuracy", "teacher_agreement", "correction_rate", "memorisation_rate", "seconds")
    by_epochs = True
    cache_codec = "class-logits"  # per sample, K float32 logits; per view dense or top-k (kdtune.cache.parquet)
    fidelity_fields = ("data_fraction", "epochs", "width_factor", "student")

    def claims(self, dataset: str) -> bool:
        """Every dataset no other task claims: the built-in images, ``dataset.files``, ``package.module:loader``."""
        return True

    def check_spec(self, spec: StudySpec) -> None:
        if spec.allow_negative_alpha:
            raise SpecError("allow_negative_alpha", True, "is only for the linear regression task: in classification "
                            "the mixed target alpha*y + (1 - alpha)*softmax(t/T) has a negative entry when alpha < 0 "
                            "and the loss is unbounded below")
        alpha = spec.search["alpha"]
        low = min(alpha.choices or [0]) if alpha.type == "categorical" else alpha.low
        if isinstance(low, (int, float)) and low < 0:
            raise SpecError("search.alpha.low", low, "must be >= 0 (alpha < 0 is only for the linear regression task)")
        refuse_text_fields(spec, "image")

    def check_arch(self, arch: str, *, field: str) -> None:
        from kdtune.tasks.image.models import check_arch

        check_arch(arch, field=field)

    def check_width(self, arch: str, factor: float, *, field: str) -> None:
        from kdtune.tasks.image.widths import check_width

        check_width(arch, factor, field=field)

    def narrower(self, arch: str, kwargs: dict[str, Any], factor: float) -> dict[str, Any]:
        from kdtune.tasks.image.models import narrower

        return narrower(arch, kwargs, factor)

    def prepare(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None,
                on_epoch: Callable[[int], None]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The condition's student checked on one batch of the real data before any teacher trains (a trained or
        checkpoint teacher is checked the same way inside the cache), then the teacher's logits from the cache
        (trained on a miss), and the per-view logits of ``student.augment``."""
        import torch

        from kdtune.cache import LogitCache
        from kdtune.cache.teacher import build_checked
        from kdtune.tasks.bundle import pack_payload
        from kdtune.tasks.image.models import count_parameters
        from kdtune.tasks.image.views import check_views
        from kdtune.tasks.image.views import student_views

        data = self.load_data(spec, condition)
        student_kwargs = condition.student_kwargs(spec)
        student = build_checked(condition.student_arch, data, kwargs=student_kwargs,
                                field=condition.model_field("student"))
        view_spec = student_views(spec.student.model_dump(), spec.dataset.seed)
        if view_spec is not None:  # before the teacher trains (preflight checked it too)
            check_views(view_spec, tuple(data.train.x.shape), data.num_classes, top_k=spec.cache.top_k,
                        max_bytes=spec.cache.max_bytes)
        teacher_spec = condition.teacher_spec(spec)
        cache = LogitCache(cache_dir)
        prepared = cache.prepare(teacher_spec, data, dtype=spec.cache.logits_dtype, threads=None,
                                 full_curve=spec.teacher.full_curve,
                                 on_epoch=lambda metrics: on_epoch(metrics.epoch))
        views = None if view_spec is None else cache.prepare_views(prepared, data, view_spec, top_k=spec.cache.top_k,
                                                                   max_bytes=spec.cache.max_bytes)
        teacher = prepared.teacher
        info = {"cache_key": prepared.key, "teacher_key": prepared.teacher_key, "source": teacher_spec.source,
                "selected_epoch": teacher.selected_epoch if teacher else None,
                "diagnostics": prepared.diagnostics, "cache_hit": prepared.hit, "trained": prepared.trained,
                "threads": torch.get_num_threads() if prepared.trained else None,  # at its last epoch
                "spec": teacher_spec.to_dict(),
                "curve": teacher.curve if teacher is not None and teacher_spec.source == "trained" else [],
                "fingerprint": teacher.fingerprint if teacher else None,
                "views_key": None if views is None else views.key,
                "models": {"student": {"arch": condition.student_arch, "kwargs": student_kwargs,
                                       "parameters": count_parameters(student)}}}
        payload = pack_payload(data, prepared.logits, None)
        payload["views"] = None if views is None else views.pack()
        return info, payload

    def train_seeds(self, payload: dict[str, Any], params: dict[str, Any], seeds: list[int], *,
                    student: dict[str, Any], arch: str, threads: int) -> SeedRuns:
        from kdtune.core.train import TrainConfig
        from kdtune.core.train import Trainer
        from kdtune.core.train import student_recipe
        from kdtune.tasks.bundle import unpack_payload
        from kdtune.tasks.image.models import build_model
        from kdtune.tasks.image.views import unpack_views

        data, logits = unpack_payload(payload)
        views = unpack_views(payload.get("views"))  # the teacher's logits per augmented view, or None
        trainers = []
        for seed in seeds:
            model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes,
                                kwargs=student["kwargs"], field="student.arch", seed=seed)
            config = TrainConfig.from_params(params, seed=seed, recipe=student_recipe(student))
            trainers.append(Trainer(model, data, config, teacher=logits, views=views, threads=threads))
        return _Students(trainers)


class _Students(TrainerSeeds):
    """One :class:`~kdtune.core.train.Trainer` per seed (:class:`~kdtune.tasks.base.SeedRuns`)."""

    def step(self) -> list[dict[str, Any]]:
        return [trainer.step().as_dict() for trainer in self.trainers]

