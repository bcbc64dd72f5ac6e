"""The linear regression case behind the task boundary (:mod:`kdtune.tasks.base`): synthetic data
(``dataset.name: linear``), a teacher built from its weight error B, least-squares students solved in closed form
(one step per run: no epochs, no early stopping, no temperature), validation MSE minimised.

Delegates to :mod:`kdtune.tasks.linear.closed_form` (numpy), imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import SpecError
from kdtune.tasks.base import Objective
from kdtune.tasks.base import Task
from kdtune.tasks.base import refuse_text_fields


if TYPE_CHECKING:
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks.base import SeedRuns


#: The test metric is the MSE against the noise-free targets: the excess risk that α* minimises. It has no unit
#: an equivalence margin could be given in; verdicts use a relative tolerance on the objective instead.
MSE = Objective("val_mse", "val_loss", "min", "test_excess_mse", label="validation MSE", test_label="test excess MSE")


class LinearRegression(Task):
    name = "linear"
    kind = "linear regression"
    objectives = (MSE,)
    # lr, batch_size and epochs are recorded with every run as for the other tasks; the closed form ignores them
    # (epochs is always 1).
    search_params = ("alpha", "lr", "batch_size", "epochs")
    metrics = ("val_loss", "test_loss", "test_excess_mse", "weight_error")
    by_epochs = False
    cache_codec = None  # the teacher is w* + Δ, drawn per condition in microseconds: nothing to cache

    def claims(self, dataset: str) -> bool:
        return dataset == "linear"

    def check_spec(self, spec: StudySpec) -> None:
        alpha = spec.search["alpha"]
        low = min(alpha.choices or [0]) if alpha.type == "categorical" else alpha.low
        if isinstance(low, (int, float)) and low < 0 and not spec.allow_negative_alpha:
            raise SpecError("search.alpha.low", low, "must be >= 0 (alpha < 0 weights the teacher above 1: set "
                            "allow_negative_alpha: true)")
        if spec.recommend.margin is not None:
            raise SpecError("recommend.margin", spec.recommend.margin, "is in points of test accuracy; the linear "
                            "task's test metric (excess MSE) has no such unit: omit it")
        t = spec.teacher
        given = [name for name in ("checkpoint", "logits") if getattr(t, name) is not None]
        if given:
            raise SpecError(f"teacher.{given[-1]}", getattr(t, given[0]), "is for classification; the linear task "
                            "builds its teacher from teacher.error")
        if spec.student.augmented:
            raise SpecError("student.augment", spec.student.augment.model_dump(), "needs an image dataset; the linear "
                            "task has feature vectors (remove student.augment)")
        if t.augment.shift or t.augment.rotate:
            raise SpecError("teacher.augment", t.augment.model_dump(), "needs an image dataset; the linear task has "
                            "feature vectors (remove teacher.augment)")
        refuse_text_fields(spec, "linear regression")
        for axis in ("teacher_size", "student_size"):
            if getattr(spec.conditions, axis) is not None:
                raise SpecError(f"conditions.{axis}", getattr(spec.conditions, axis), "the linear task's teacher (w* + "
                                "its error) and least-squares student have no model size (remove it)")

    def check_arch(self, arch: str, *, field: str) -> None:
        """The least-squares student and the teacher's weights have no architecture: nothing to check."""

    def prepare(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None,
                on_epoch: Callable[[int], None]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The teacher's weights w* + Δ (‖Δ‖² = the condition's teacher error) and the closed form's B, V and α*."""
        from kdtune.tasks.bundle import pack_payload
        from kdtune.tasks.linear.closed_form import closed_form
        from kdtune.tasks.linear.closed_form import make_teacher_weights

        data = self.load_data(spec, condition)
        assert data.linear_truth is not None
        weights = make_teacher_weights(data.linear_truth, condition.teacher_error, condition.teacher_seed)
        info = {"cache_key": None, "selected_epoch": None, "linear": closed_form(data, condition.teacher_error)}
        return info, pack_payload(data, None, weights)

    def train_seeds(self, payload: dict[str, Any], params: dict[str, Any], seeds: list[int], *,
                    student: dict[str, Any], arch: str, threads: int) -> SeedRuns:
        from kdtune.tasks.bundle import unpack_payload

        data, _ = unpack_payload(payload)
        return _LeastSquares(data, payload["teacher_weights"], float(params["alpha"]), seeds)


class _LeastSquares:
    """Each seed's least-squares student, solved in one step (:class:`~kdtune.tasks.base.SeedRuns`)."""

    def __init__(self, data: Any, teacher_weights: Any, alpha: float, seeds: list[int]) -> None:
        self.data, self.teacher_weights, self.alpha, self.seeds = data, teacher_weights, alpha, seeds
        self.epoch = 0

    def step(self) -> list[dict[str, Any]]:
        from kdtune.tasks.linear.closed_form import fit_student

        self.epoch = 1
        return [{"epoch": 1, **fit_student(self.data, self.teacher_weights, self.alpha, seed)} for seed in self.seeds]

    def state(self) -> list[dict[str, Any]] | None:
        return None  # one step is the whole run

    def load_state(self, states: list[dict[str, Any]]) -> None:
        """Never called: a run with no state to continue is never checkpointed."""
