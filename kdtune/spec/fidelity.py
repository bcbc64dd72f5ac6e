"""The ``fidelity`` section: how a study's search is cheapened, and what the training the user will run is.

One full training of a real student can take hours, so a study may search at a lower fidelity: a fraction of the
training set, fewer epochs, a narrower student (a width factor) or another student architecture. Full fidelity is
the rest of the spec: ``dataset``, ``student.epochs`` and ``student.arch`` as written. The search and its baselines
run cheap (:data:`kdtune.spec.rules.CHEAP_PHASES`); then the transfer check re-runs the cheap search's best
``transfer_top`` configurations, alpha = 1 and alpha = 0 at full fidelity on paired seeds
(:mod:`kdtune.analysis.transfer`), and confirmation and the locate stage run at full fidelity, so every verdict
holds at the fidelity the user will train at (``docs/multi_fidelity.md``).

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from pydantic import Field

from kdtune.errors import SpecError
from kdtune.spec.sections import SpecModel


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec
    from kdtune.spec.sections import BudgetSpec

#: The fewest seeds the transfer check runs on: a bootstrap over fewer says nothing.
MIN_TRANSFER_SEEDS = 2
DEFAULT_TRANSFER_TOP = 4


class FidelitySpec(SpecModel):
    """How the search is cheapened (unset fields: as at full fidelity) and how its answer is checked."""

    data_fraction: float = Field(1.0, gt=0.0, le=1.0)  # of the training set (the same subset for every run)
    epochs: int | None = Field(None, ge=1)  # the cheap search's epochs (at most student.epochs)
    width_factor: float | None = Field(None, gt=0.0, lt=1.0)  # the student's widths scaled by it (rounded, >= 1)
    student: str | None = None  # another student architecture for the cheap search
    student_kwargs: dict[str, Any] = {}
    transfer_top: int = Field(DEFAULT_TRANSFER_TOP, ge=1, le=32)  # m: cheap configurations re-run at full fidelity
    transfer_repeats: int | None = Field(None, ge=MIN_TRANSFER_SEEDS, le=64)  # their seeds (unset: budget.repeats)

    def repeats(self, budget: BudgetSpec) -> int:
        """The transfer check's seeds per configuration."""
        return self.transfer_repeats or budget.repeats

    def cheap_epochs(self, full: int) -> int:
        """The cheap search's epochs, where a run has ``full`` at full fidelity."""
        return full if self.epochs is None else self.epochs

    def trial(self, full_epochs: int) -> dict[str, Any]:
        """What a cheap trial is told (:class:`kdtune.trial_io.TrialConfig`'s ``fidelity``): the settings a trial
        applies to its configuration and student."""
        return {"data_fraction": self.data_fraction, "epochs": self.cheap_epochs(full_epochs),
                "width_factor": self.width_factor, "student": self.student, "student_kwargs": dict(self.student_kwargs)}

    def words(self, full_epochs: int) -> str:
        """The cheap search in words: "25% of the training data, 5 of 20 epochs, the student at 0.5 of its width"."""
        parts = []
        if self.data_fraction < 1:
            parts.append(f"{self.data_fraction:.0%} of the training data")
        if self.cheap_epochs(full_epochs) != full_epochs:
            parts.append(f"{self.cheap_epochs(full_epochs)} of {full_epochs} epochs")
        if self.width_factor is not None:
            parts.append(f"the student at {self.width_factor:g} of its width")
        if self.student is not None:
            parts.append(f"student {self.student}")
        return ", ".join(parts)


def check_fidelity(spec: StudySpec) -> None:
    """Refuse, one line each, a fidelity section that cannot run: one that cheapens nothing, cheap epochs above
    the full ones or beside searched epochs, an ASHA grace period past the cheap epochs, more configurations to
    re-run than the search can produce, a width factor beside another student, a task that cannot cheapen that
    way (the task checks that its student has a width)."""
    from kdtune.spec.rules import trials_per_condition
    from kdtune.spec.space import baselines

    f = spec.fidelity
    if f is None:
        return
    task = spec.task
    full = task.epochs(spec)
    for name in ("data_fraction", "epochs", "width_factor", "student"):
        value = getattr(f, name)
        if value not in (None, 1.0) and name not in task.fidelity_fields:
            allowed = ", ".join(task.fidelity_fields) or "nothing (it has one closed-form step)"
            raise SpecError(f"fidelity.{name}", value, f"is not something the {task.kind} task can cheapen; "
                            f"it can cheapen: {allowed}")
    if f.epochs is not None and f.epochs > full:
        raise SpecError("fidelity.epochs", f.epochs, f"must be at most student.epochs ({full}): the cheap search "
                        "trains no longer than the full training")
    if f.epochs is not None and "epochs" in spec.search:
        raise SpecError("fidelity.epochs", f.epochs, "cannot be combined with a searched epochs (search.epochs): "
                        "the search would not say which length it cheapens")
    if f.width_factor is not None and f.student is not None:
        raise SpecError("fidelity.width_factor", f.width_factor, "cannot be combined with fidelity.student: "
                        "give the narrower student as its own architecture, or a width factor of student.arch")
    if f.student_kwargs and f.student is None:
        raise SpecError("fidelity.student_kwargs", f.student_kwargs, "needs fidelity.student (the architecture "
                        "they are for)")
    cheapened = (f.data_fraction < 1 or f.cheap_epochs(full) < full or f.width_factor is not None
                 or f.student is not None)
    if not cheapened:
        raise SpecError("fidelity", f.model_dump(exclude_defaults=True), "cheapens nothing: set data_fraction < 1, "
                        f"epochs < student.epochs ({full}), width_factor or student (or remove the section)")
    if spec.scheduler.type == "asha" and task.by_epochs and spec.scheduler.grace_period > f.cheap_epochs(full):
        raise SpecError("scheduler.grace_period", spec.scheduler.grace_period,
                        f"must be at most fidelity.epochs ({f.cheap_epochs(full)}): ASHA stops trials of the cheap search")
    configurations = trials_per_condition(spec) - len(baselines(spec))
    if f.transfer_top > configurations:
        raise SpecError("fidelity.transfer_top", f.transfer_top, f"must be at most {configurations}: the "
                        f"configurations the search proposes besides alpha = 1 and alpha = 0")
    if f.width_factor is not None:
        for arch in dict.fromkeys([spec.student.arch, *(spec.conditions.student_arch or [])]):
            task.check_width(arch, f.width_factor, field="fidelity.width_factor")
    if f.student is not None:
        task.check_arch(f.student, field="fidelity.student")
