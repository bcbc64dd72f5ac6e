"""The task boundary: what a task provides to the study, search, scoring, verdicts and report, which know no task.

A *task* (image classification, the linear regression case, and next language modelling) says: which datasets
are its own (:meth:`Task.claims`), its spec checks, its data (a condition's splits and what a trial receives
of them), its models, how a trial's seeds train (its loss and the metrics a run records per epoch), the
objective a study selects on and its direction, which search parameters apply, whether it trains epoch by
epoch (and may be stopped early by ASHA), and how the teacher-logit cache stores its teacher's outputs.
:func:`kdtune.tasks.task_for` picks a spec's task. Everything outside ``kdtune/tasks`` asks the task; none
branches on a task's name (``tests/test_tasks.py`` checks it).

This module imports neither torch nor numpy: the spec and the read-only commands (``status``, ``recommend``,
``report``) ask a task for its objective and its checks. Implementations import torch inside their methods.
"""

from __future__ import annotations

import math
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import Protocol

from kdtune.core.selection import better


if TYPE_CHECKING:
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec


@dataclass(frozen=True)
class Objective:
    """What a study selects on (a validation column of the results) and what it reports (a test column), both
    better in the direction of ``mode``. A run is scored at its best validation epoch, the earliest on ties
    (:mod:`kdtune.analysis.scoring`); its test metric is the one of that epoch, never the best test epoch."""

    name: str  # the spec's ``objective``
    column: str  # the validation metric selected on
    mode: Literal["max", "min"]  # for both columns
    test_column: str  # the test metric reported at the best validation epoch
    label: str  # words for the validation metric ("validation accuracy")
    test_label: str  # words for the test metric ("test accuracy")
    # A gain over no distillation and the equivalence margin are read in this unit ("points of test accuracy");
    # None: the test metric has none, and no margin applies (a relative tolerance on the objective does).
    margin_unit: str | None = None
    margin_scale: float = 1.0  # one margin unit in the test metric's own units (a point of accuracy: 0.01)
    default_margin: float | None = None  # in margin units, when the spec gives none

    @property
    def sign(self) -> float:
        """+1 when larger is better."""
        return 1.0 if self.mode == "max" else -1.0

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The direction in Optuna's words."""
        return "maximize" if self.mode == "max" else "minimize"

    @property
    def worst(self) -> float:
        """A value every finite value improves on: where a running best starts."""
        return -math.inf if self.mode == "max" else math.inf

    def better(self, value: float, than: float) -> bool:
        """Strictly better: a running best keeps its earliest epoch on ties (:func:`kdtune.core.selection.better`)."""
        return better(value, than, self.mode)

    def margin(self, given: float | None) -> float | None:
        """The equivalence margin in the test metric's units, from one given in :attr:`margin_unit` (or the
        default); None where the test metric has no unit for it."""
        if self.margin_unit is None:
            return None
        points = self.default_margin if given is None else given
        return None if points is None else points * self.margin_scale


class SeedRuns(Protocol):
    """One trial's students, one per seed, trained in lockstep. The trial (:mod:`kdtune.study.trial`) drives
    them epoch by epoch, keeps each seed's running best, reports to Tune and checkpoints; the task trains."""

    @property
    def epoch(self) -> int:
        """Epochs every seed has trained (0 before the first step, or as restored); the trial only reads it."""
        ...

    def step(self) -> list[dict[str, Any]]:
        """Train every seed one more epoch and evaluate it: one results row per seed, in seed order, with
        ``epoch``, the task's metrics (:attr:`Task.metrics`) and ``train_loss`` where there is one."""
        ...

    def state(self) -> list[dict[str, Any]] | None:
        """What a checkpoint holds to continue after this epoch (None: nothing to continue, one step is all)."""
        ...

    def load_state(self, states: list[dict[str, Any]]) -> None:
        """Continue from :meth:`state`'s value."""
        ...


class Task(ABC):
    """What a task provides. Properties plus a few methods; see the module docstring."""

    #: The registry's key (``kdtune.tasks.TASKS``), recorded in each trial's context.
    name: str
    #: What the task predicts, in words for reports and messages ("classification", "regression").
    kind: str
    #: What a study of this task may select on; the first is the default (the spec's ``objective`` omitted).
    objectives: tuple[Objective, ...]
    #: The search parameters that apply (of :data:`kdtune.trial_io.SEARCH_PARAMS`), alpha always among them.
    search_params: tuple[str, ...]
    #: The results columns a run records per epoch (the loss's own, ``train_loss``, is among them where a
    #: loss is minimised by steps).
    metrics: tuple[str, ...]
    #: True: students train epoch by epoch, and ASHA may stop a trial early. False: one closed-form step.
    by_epochs: bool
    #: How the teacher-logit cache stores this task's teacher outputs (``kdtune.cache``); None: nothing is
    #: cached (the teacher is built in closed form for each condition).
    cache_codec: str | None
    #: What a ``fidelity`` section may cheapen in this task's search (:mod:`kdtune.spec.fidelity`): of
    #: ``data_fraction``, ``epochs``, ``width_factor`` and ``student`` (another architecture).
    fidelity_fields: tuple[str, ...] = ()
    #: Whether the task's labels can be flipped (``conditions.noise_level``); language models have none to flip,
    #: so their conditions are described without a noise level.
    label_noise: bool = True

    @abstractmethod
    def claims(self, dataset: str) -> bool:
        """Whether ``dataset`` (a spec's ``dataset.name`` or one of ``conditions.dataset``) is this task's."""

    @abstractmethod
    def check_spec(self, spec: StudySpec) -> None:
        """Refuse, with one :class:`~kdtune.errors.SpecError`, what the spec asks that this task cannot do."""

    @abstractmethod
    def check_arch(self, arch: str, *, field: str) -> None:
        """Refuse an architecture name this task cannot build (without building it)."""

    def check_width(self, arch: str, factor: float, *, field: str) -> None:
        """Refuse ``fidelity.width_factor`` for a student architecture without a width (without building it)."""
        from kdtune.errors import SpecError

        raise SpecError(field, factor, f"the {self.kind} task's student {arch} has no width to scale")

    def narrower(self, arch: str, kwargs: dict[str, Any], factor: float) -> dict[str, Any]:
        """The kwargs of ``arch`` at ``factor`` of its width (:meth:`check_width` passed)."""
        raise NotImplementedError(f"the {self.kind} task has no width to scale")

    def load_data(self, spec: StudySpec, condition: Condition) -> Any:
        """A condition's data: its train, validation and test splits (a ``kdtune.core.data.DataBundle``, loaded
        as the spec's ``dataset`` section says)."""
        return condition.load_data(spec)

    @abstractmethod
    def prepare(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None,
                on_epoch: Callable[[int], None]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A condition's teacher, built once before any trial: (what ``teachers.json`` records, the payload
        every trial of the condition reads: plain numpy arrays that Ray's object store shares zero-copy).
        ``on_epoch`` is called after each teacher epoch trained (the driver adjusts the threads there)."""

    @abstractmethod
    def train_seeds(self, payload: dict[str, Any], params: dict[str, Any], seeds: list[int], *,
                    student: dict[str, Any], arch: str, threads: int) -> SeedRuns:
        """The students of one trial: configuration ``params`` (:meth:`run_params`), one per seed, built from
        the condition's payload (:meth:`prepare`), the spec's student section and the condition's ``arch``."""

    def check_inputs(self, spec: StudySpec, conditions: list[Condition]) -> bool:
        """The task's own checks of its inputs before anything runs (files, tokenizers, models, sizes; nothing
        trained or written), raising one line per mistake; True when it has checked them. False (the default):
        the shared checks of ``kdtune.study.preflight`` apply (datasets by name, data roots, models on a batch)."""
        return False

    def plan_condition(self, spec: StudySpec, condition: Condition, *, cache_dir: str | None, epochs: int,
                       batch_size: int, threads: int, teacher_threads: int) -> dict[str, Any] | None:
        """What ``kdtune plan`` says of one condition when the task plans it itself: ``samples``, ``teacher``
        (``source``, ``action``, ``teacher_key``, ``logits_key``), ``data_load_s``, ``teacher_s``, ``run_s`` (one
        run of ``epochs`` epochs of ``batch_size``, on ``threads``) and anything more it shows. None (the
        default): the shared plan (teachers in the logit cache, calibrated training steps)."""
        return None

    def run_params(self, spec: StudySpec, searched: dict[str, Any], condition: Condition | None = None) -> dict[str, Any]:
        """A run's full configuration: the searched values over the spec's defaults, only parameters that apply
        (the results' columns), ``epochs`` the number of steps a run trains. ``condition``: the run's, for a task
        whose conditions set a parameter (the language task's ``conditions.top_k``)."""
        defaults = {"temperature": spec.default_temperature, "lr": spec.student.lr,
                    "batch_size": spec.student.batch_size, "epochs": spec.student.epochs}
        params = {name: value for name, value in {**defaults, **searched}.items() if name in self.search_params}
        if not self.by_epochs:
            params["epochs"] = 1
        return params

    def epochs(self, spec: StudySpec) -> int:
        """The most epochs a run trains (what a trial that ran to the end has done)."""
        return spec.student.epochs if self.by_epochs else 1

    def objective(self, name: str | None) -> Objective:
        """The objective called ``name`` (the spec's ``objective``), or the task's default."""
        if name is None:
            return self.objectives[0]
        return next(o for o in self.objectives if o.name == name)


#: The dataset fields only the language task reads (``docs/language_models.md``).
TEXT_FIELDS = ("corpus", "text_field", "tokenizer", "context", "test_fraction", "epoch_blocks")


def refuse_text_fields(spec: StudySpec, kind: str) -> None:
    """A task without text refuses the language task's dataset fields, its sampled targets and the k of its top-k
    targets as a condition, naming itself."""
    from kdtune.errors import SpecError

    for name in TEXT_FIELDS:
        if getattr(spec.dataset, name) is not None:
            raise SpecError(f"dataset.{name}", getattr(spec.dataset, name), "is for the language task "
                            f"(dataset.name: python_docs or text); the {kind} task has no text (remove it)")
    if spec.cache.samples is not None:
        raise SpecError("cache.samples", spec.cache.samples, "is for the language task's token targets (remove it)")
    if spec.conditions.top_k is not None:
        raise SpecError("conditions.top_k", spec.conditions.top_k, "is for the language task's top-k token targets; "
                        f"the {kind} task has none to compare (remove it)")


class TrainerSeeds:
    """One trainer per seed, stepped in lockstep (:class:`SeedRuns`): the epoch, the state and its restore are
    the same for every task whose trainers have ``epoch``, ``state_dict`` and ``load_state_dict``; a task says
    what a step returns."""

    def __init__(self, trainers: list[Any]) -> None:
        self.trainers = trainers

    @property
    def epoch(self) -> int:
        return int(self.trainers[0].epoch)

    def state(self) -> list[dict[str, Any]] | None:
        return [trainer.state_dict() for trainer in self.trainers]

    def load_state(self, states: list[dict[str, Any]]) -> None:
        for trainer, state in zip(self.trainers, states):
            trainer.load_state_dict(state)
