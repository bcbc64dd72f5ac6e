"""The study spec: one YAML file that says what to compare, what to search and how much to spend.

Loaded with ``yaml.safe_load`` (no YAML tag runs code; import paths such as ``teacher.arch:
package.module:factory`` are imported later, when the study is checked: ``docs/security.md``), validated by a
frozen pydantic schema that rejects unknown keys, with defaults in one place (the field declarations of the
sections, :mod:`kdtune.spec.sections`; this module holds the whole :class:`StudySpec` and its loading).
Every number must be finite (NaN and infinity slip through comparisons such as ``gt=0``) and a boolean is
never read as a number. Each mistake becomes one :class:`~kdtune.errors.SpecError` line naming the field
path, the value (cut short) and what is allowed; a spec with several mistakes reports each
(:class:`~kdtune.errors.SpecErrors`). A spec file is at most :data:`MAX_SPEC_BYTES`.
``search_spaces/README.md`` documents every field.

Words (``docs/architecture.md``): a *condition* (noise level, teacher quality, dataset, student) is compared, never
optimised; the *search* parameters (alpha, temperature, ...) are optimised inside each condition.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import Final
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import Field
from pydantic import ValidationError
from pydantic import model_validator

from kdtune.core.limits import MIN_TEMPERATURE
from kdtune.errors import SpecError
from kdtune.errors import raise_all
from kdtune.spec.fidelity import FidelitySpec
from kdtune.spec.sections import BudgetSpec
from kdtune.spec.sections import CacheSpec
from kdtune.spec.sections import ConditionsSpec
from kdtune.spec.sections import DatasetSpec
from kdtune.spec.sections import DistributionSpec
from kdtune.spec.sections import RecommendSpec
from kdtune.spec.sections import ResourcesSpec
from kdtune.spec.sections import SchedulerSpec
from kdtune.spec.sections import SpecModel
from kdtune.spec.sections import StudentSection
from kdtune.spec.sections import TeacherSection
from kdtune.spec.sections import TrackingSpec
from kdtune.spec.sections import as_tracking


if TYPE_CHECKING:
    from kdtune.tasks.base import Task

SPEC_VERSION: Final = 1
#: A spec is a page of YAML; anything bigger is a mistake (or an attack) and is refused before it is parsed.
MAX_SPEC_BYTES = 1_000_000
#: Values a spec may hold once YAML aliases are expanded (a "billion laughs" file is small but expands forever).
MAX_SPEC_VALUES = 100_000


class StudySpec(SpecModel):
    """A whole study. Build it with :func:`load_spec` or :func:`parse_spec`, not directly."""

    version: Literal[1] = SPEC_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    dataset: DatasetSpec = DatasetSpec()
    teacher: TeacherSection = TeacherSection()
    student: StudentSection = StudentSection()
    conditions: ConditionsSpec = ConditionsSpec()
    search: dict[str, DistributionSpec] = {
        "alpha": DistributionSpec(type="float", low=0.0, high=1.0),
        "temperature": DistributionSpec(type="float", low=1.0, high=20.0, log=True),
    }
    default_temperature: float = Field(4.0, ge=MIN_TEMPERATURE)  # temperature of the alpha = 1 / alpha = 0 baselines
    allow_negative_alpha: bool = False
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    budget: BudgetSpec = BudgetSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    objective: Literal["val_accuracy", "val_mse", "val_loss"] | None = None  # None: the task's default (kdtune.tasks)
    tracking: Annotated[TrackingSpec, BeforeValidator(as_tracking)] = TrackingSpec()
    recommend: RecommendSpec = RecommendSpec()
    cache: CacheSpec = CacheSpec()
    # How the search is cheapened, checked at full fidelity before any verdict (kdtune.spec.fidelity); None: the
    # search runs at full fidelity.
    fidelity: FidelitySpec | None = None

    @model_validator(mode="after")
    def _check_study(self) -> StudySpec:
        from kdtune.spec.fidelity import check_fidelity
        from kdtune.spec.space import check_search_space
        from kdtune.tasks import TASKS

        task = self.task  # refuses a study that mixes tasks
        check_search_space(self)
        if self.objective is not None and self.objective not in (o.name for o in task.objectives):
            owner = next(t for t in TASKS.values() if self.objective in (o.name for o in t.objectives))
            raise SpecError("objective", self.objective, f"{self.objective} is only for the {owner.kind} task")
        task.check_spec(self)
        # Only ASHA reads grace_period (fifo, and a task solved in one step, never stop early).
        asha = self.scheduler.type == "asha" and task.by_epochs
        check_fidelity(self)
        if asha and self.scheduler.grace_period > self.student.epochs:
            raise SpecError("scheduler.grace_period", self.scheduler.grace_period,
                            f"must be at most student.epochs ({self.student.epochs})")
        return self

    @model_validator(mode="after")
    def _check_given_teacher(self) -> StudySpec:
        """``teacher.checkpoint`` and ``teacher.logits`` give the teacher: nothing about training it applies."""
        t = self.teacher
        given = [name for name in ("checkpoint", "logits") if getattr(t, name) is not None]
        if not given:
            return self
        field = f"teacher.{given[-1]}"
        if len(given) == 2:
            raise SpecError("teacher.logits", t.logits, "cannot be combined with teacher.checkpoint (imported "
                            "logits need no teacher model); set one of them")
        for axis in ("teacher_epochs", "teacher_select", "teacher_seeds", "teacher_size"):
            value = getattr(self.conditions, axis)
            if value is not None:
                raise SpecError(f"conditions.{axis}", value, f"has no effect with {field} (the teacher is given, "
                                "not trained); remove it")
        return self

    @model_validator(mode="after")
    def _check_teacher_recipe(self) -> StudySpec:
        """Student views need a teacher model and a cache of their logits (whether the task's inputs can be
        augmented at all is the task's check), and each teacher length of the conditions must outlast the warm-up."""
        t = self.teacher
        if self.cache.top_k is not None and not self.student.augmented and self.task.cache_codec == "class-logits":
            raise SpecError("cache.top_k", self.cache.top_k, "applies to the per-view logits of student.augment; "
                            "set student.augment or remove cache.top_k")
        if self.student.augmented and t.logits is not None:
            raise SpecError("student.augment", self.student.augment.model_dump(), "needs a teacher model to run on "
                            "each view; teacher.logits (imported logits) has none")
        for i, epochs in enumerate(self.conditions.teacher_epochs or []):
            if t.warmup_epochs >= epochs:
                raise SpecError(f"conditions.teacher_epochs[{i}]", epochs,
                                f"must be more than teacher.warmup_epochs ({t.warmup_epochs})")
        searched = self.search.get("epochs")
        if searched is not None and self.student.warmup_epochs > 0:
            shortest = min(searched.choices or [0]) if searched.type == "categorical" else searched.low
            if shortest is not None and shortest <= self.student.warmup_epochs:
                raise SpecError("search.epochs", searched.model_dump(exclude_none=True),
                                f"must stay above student.warmup_epochs ({self.student.warmup_epochs})")
        return self

    @property
    def task(self) -> Task:
        """What the study distils (:func:`kdtune.tasks.task_for`): its objective, checks, data and training."""
        from kdtune.tasks import task_for

        return task_for(self)

    @property
    def objective_name(self) -> str:
        return self.task.objective(self.objective).name

    @property
    def margin(self) -> float | None:
        """The equivalence margin in the test metric's units (``recommend.margin`` or the task's default, in the
        objective's margin unit); None where the test metric has no unit for one (the linear task)."""
        return self.task.objective(self.objective).margin(self.recommend.margin)

    @property
    def mode(self) -> Literal["max", "min"]:
        return self.task.objective(self.objective).mode

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_spec(path: str | os.PathLike[str], *, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read a YAML spec, apply ``key.path=value`` overrides (values parsed as YAML), validate.

    A folder, a file over :data:`MAX_SPEC_BYTES`, a binary file or YAML that expands beyond
    :data:`MAX_SPEC_VALUES` values is refused with one line before (or instead of) parsing it.
    """
    file = Path(path)
    raw = yaml_value(_read_spec_text(file), "spec", str(file))
    if not isinstance(raw, dict):
        raise SpecError("spec", str(file), "must be a YAML mapping with at least `name`")
    return parse_spec(apply_overrides(raw, overrides))


def _read_spec_text(path: Path) -> str:
    if path.is_dir():
        raise SpecError("spec", str(path), "is a folder; give the spec's YAML file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)  # never more, whatever the file claims (a pipe, /dev/zero)
    except FileNotFoundError:
        raise SpecError("spec", str(path), "file not found") from None
    except OSError as exc:
        raise SpecError("spec", str(path), f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("spec", str(path), f"is larger than {MAX_SPEC_BYTES:,} bytes; a spec is a page of YAML")
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("spec", str(path), "is a binary file, not YAML text") from None


def yaml_value(text: str, field: str, shown: str) -> Any:
    """``yaml.safe_load(text)``, refusing malformed YAML, nesting too deep and alias bombs in one line each."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(field, shown, f"is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise SpecError(field, shown, "nests too deeply to be a spec") from None
    if _count_values(value, MAX_SPEC_VALUES) > MAX_SPEC_VALUES:
        raise SpecError(field, shown, f"expands to more than {MAX_SPEC_VALUES:,} values (YAML aliases?)")
    return value


def _count_values(value: Any, budget: int) -> int:
    """Values in ``value`` counted as pydantic will see them (an alias counts every time it is used); stops
    counting past ``budget`` so that an alias bomb costs no more than the budget."""
    count, stack = 0, [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set (the value parsed as YAML: ``0.5``, ``[1, 2]``)."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError("--set", item, "must look like key.path=value, e.g. budget.repeats=3")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError("--set", item, f"{part} is not a mapping in the spec")
            node = child
        node[parts[-1]] = yaml_value(text, "--set", item)
    return raw


def parse_spec(raw: dict[str, Any]) -> StudySpec:
    """Validate a spec given as a mapping; pydantic's errors become :class:`SpecError` lines, one per mistake."""
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, SpecError] = {}
        for error in exc.errors(include_url=False):
            spec_error = _spec_error(error)
            errors.setdefault(spec_error.field, spec_error)  # a union reports one field more than once
        raise_all(list(errors.values()))
        raise AssertionError("a ValidationError without errors") from None  # pragma: no cover


def _spec_error(error: Any) -> SpecError:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "list[", "union["))]
    # a list index reads as conditions.noise_level[1], as in the messages of the validators
    field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "spec"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):  # raised by one of our validators: already names its field
        return cause
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return SpecError(field, error["input"], f"unknown key; allowed here: {', '.join(allowed)}")
    if error["type"] == "missing":
        return SpecError(field, None, "is required")
    if error["type"] == "finite_number":
        return SpecError(field, error.get("input"), "must be a finite number (NaN and infinity are not allowed)")
    message = error["msg"]
    if error["type"] == "literal_error":
        message = message.replace("Input should be", "must be")
    return SpecError(field, error.get("input"), message[0].lower() + message[1:])


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = StudySpec
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part in fields:
            model = fields[part].annotation
        # dict values and Optional wrappers: look inside for a model class
        for arg in getattr(model, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []

