"""The study spec: one YAML file that says what to compare, what to search and how much to spend.

Loaded with ``yaml.safe_load`` (no YAML tag runs code; import paths such as ``teacher.arch:
package.module:factory`` are imported later, when the study is checked: ``docs/security.md``), validated by a
frozen pydantic schema that rejects unknown keys, with defaults in one place (the field declarations below).
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

from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from kdtune.errors import SpecError
from kdtune.errors import raise_all
from kdtune.tasks.image.names import DEFAULT_VIEWS


SPEC_VERSION = 1
#: A spec is a page of YAML; anything bigger is a mistake (or an attack) and is refused before it is parsed.
MAX_SPEC_BYTES = 1_000_000
#: Values a spec may hold once YAML aliases are expanded (a "billion laughs" file is small but expands forever).
MAX_SPEC_VALUES = 100_000


def _as_list(value: Any) -> Any:
    """Let a condition axis be written as a scalar (``noise_type: symmetric``) or a list."""
    return value if isinstance(value, list) or value is None else [value]


def _as_tracking(value: Any) -> Any:
    """``tracking: none`` switches tracking off; otherwise a mapping."""
    return {"wandb": None} if value in ("none", None) else value


class _Model(BaseModel):
    """Every section: unknown keys refused; every float and int finite (``allow_inf_nan``), and never a boolean
    (pydantic would read ``epochs: true`` as 1). Declared here once, so that fields added later are covered."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values) and info.field_name is not None:
            kinds = _leaf_types(cls.model_fields[info.field_name].annotation)
            if kinds & {int, float} and not kinds & {bool, Any}:
                raise PydanticCustomError("bool_number", "must be a number; true and false are not numbers")
        return value


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation is made of: ``list[int] | None`` -> {int, NoneType}."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return {annotation}
    return set().union(*(_leaf_types(a) for a in args))


class LinearTaskSpec(_Model):
    """Sizes of the synthetic linear regression task (``dataset.name: linear``)."""

    dim: int = Field(20, ge=1)
    n_train: int = Field(200, ge=2)
    n_val: int = Field(20000, ge=1)
    n_test: int = Field(20000, ge=1)
    noise_std: float = Field(1.0, ge=0)


def _absolute(path: str) -> str:
    """A local path made absolute (Ray workers may run elsewhere); URIs (``s3://...``) are kept as they are."""
    return path if "://" in path else str(Path(path).expanduser().absolute())


class DatasetSpec(_Model):
    name: str = "digits"
    train_size: int | None = Field(None, ge=10)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    data_root: str | None = None
    download: bool = False
    linear: LinearTaskSpec = LinearTaskSpec()
    # Your own data (docs/byo.md): the training pool, then an optional test set; .npz or Parquet.
    files: Annotated[list[str] | None, BeforeValidator(_as_list)] = None

    @model_validator(mode="before")
    @classmethod
    def _files_label(cls, raw: Any) -> Any:
        """With ``files`` and no ``name``, the dataset is called ``files`` (not the default ``digits``)."""
        if isinstance(raw, dict) and raw.get("files") and "name" not in raw:
            return {**raw, "name": "files"}
        return raw

    @field_validator("files")
    @classmethod
    def _check_files(cls, files: list[str] | None) -> list[str] | None:
        if files is None:
            return None
        if not 1 <= len(files) <= 2:
            raise SpecError("dataset.files", files, "must list one file (the training pool) or two (the training "
                            "pool, then the test set)")
        for i, f in enumerate(files):
            if not f.lower().endswith((".npz", ".parquet")):
                raise SpecError(f"dataset.files[{i}]", f, "must be a .npz or .parquet file")
        return [_absolute(f) for f in files]

    @model_validator(mode="after")
    def _check_files_name(self) -> DatasetSpec:
        from kdtune.tasks.image.names import DATASETS

        if self.files and (self.name in DATASETS or ":" in self.name):
            raise SpecError("dataset.name", self.name, "must be a label of your own (not a built-in dataset or a "
                            "loader) when dataset.files is set")
        return self


class AugmentSpec(_Model):
    """Random per-sample shifts and rotations of the teacher's training images (images only)."""

    shift: int = Field(0, ge=0)  # pixels, each axis, uniform integers in [-shift, shift]
    rotate: float = Field(0.0, ge=0, le=180)  # degrees, uniform in [-rotate, rotate]


def _check_warmup(section: str, warmup_epochs: int, epochs: int) -> None:
    if warmup_epochs >= epochs:
        raise SpecError(f"{section}.warmup_epochs", warmup_epochs,
                        f"must be less than {section}.epochs ({epochs}): the warm-up is part of the epochs")


#: The optimisation recipe shared by the teacher and student sections (declared in each, after its basic fields).
RECIPE_FIELDS = ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs")
Optimizer = Literal["adam", "sgd"]  # adam: AdamW when weight_decay > 0; sgd: with momentum and L2 decay
Schedule = Literal["constant", "cosine", "step"]


class TeacherSection(_Model):
    """How the teacher is trained. The recipe defaults are kdtune's original one (constant Adam, no decay, no
    augmentation), so older specs train and cache exactly as before."""

    arch: str = "reference_teacher"
    epochs: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    select: Literal["best_val", "best_val_loss", "final"] = "best_val"
    patience: int | None = Field(None, ge=1)
    kwargs: dict[str, Any] = {}  # e.g. {dropout: 0.5, input_dropout: 0.2} for the MLPs
    optimizer: Optimizer = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = "constant"
    warmup_epochs: int = Field(0, ge=0)  # linear warm-up, then the schedule; shorter than the epochs
    augment: AugmentSpec = AugmentSpec()  # shift 0, rotate 0: none
    ensemble: int = 1  # the teacher is the mean of the logits of this many members (seeds seed, seed + 1, ...)
    error: float = Field(0.1, ge=0)  # linear task only: squared norm B of the teacher's weight error
    # Test and flipped-label metrics at every epoch of the teacher's curve (default: for the selected epoch only;
    # selection needs the validation split alone). Not part of the teacher's identity: the teacher is the same.
    full_curve: bool = False
    # A teacher you bring (docs/byo.md): weights to load into `arch` (nothing is trained) ...
    checkpoint: str | None = None
    # ... or logits imported with `kdtune cache import` (no teacher model at all): the entry's key.
    logits: str | None = None

    @field_validator("checkpoint")
    @classmethod
    def _check_checkpoint(cls, path: str | None) -> str | None:
        return None if path is None else _absolute(path)

    @field_validator("logits")
    @classmethod
    def _check_logits(cls, key: str | None) -> str | None:
        import re

        if key is not None and not re.fullmatch(r"[0-9a-f]{32}", key):
            raise SpecError("teacher.logits", key, "must be the 32-hex-digit key that `kdtune cache import` printed")
        return key

    @field_validator("ensemble")
    @classmethod
    def _check_ensemble(cls, n: int) -> int:
        if n < 1:
            raise SpecError("teacher.ensemble", n, "must be a positive integer (the number of teacher seeds averaged)")
        return n

    @model_validator(mode="after")
    def _check_recipe(self) -> TeacherSection:
        _check_warmup("teacher", self.warmup_epochs, self.epochs)
        return self

    def recipe(self) -> dict[str, Any]:
        """The recipe fields, as :class:`~kdtune.cache.teacher.TeacherSpec` takes them."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS}


#: The most bytes the per-view teacher logits of one condition may take (``cache.max_bytes``): 4 GiB. They are
#: held in memory by every trial of the condition (Ray's object store shares one copy per node).
DEFAULT_CACHE_MAX_BYTES = 4 * 2**30


class StudentSection(_Model):
    arch: str = "reference_student"
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    kwargs: dict[str, Any] = {}
    optimizer: Optimizer = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = "constant"
    warmup_epochs: int = Field(0, ge=0)
    # Reproducible augmented views (docs/views.md): the teacher's logits are cached for `views` views of every
    # training image, and each epoch the student trains on one of them, drawn by its seed.
    augment: AugmentSpec = AugmentSpec()  # shift 0, rotate 0: no augmentation, one un-augmented row per image
    views: int = DEFAULT_VIEWS

    @field_validator("views", mode="before")
    @classmethod
    def _check_views(cls, views: Any) -> Any:
        if isinstance(views, int) and not isinstance(views, bool) and views < 1:
            raise SpecError("student.views", views, "must be a positive integer (augmented views per image)")
        return views

    @model_validator(mode="after")
    def _check_recipe(self) -> StudentSection:
        _check_warmup("student", self.warmup_epochs, self.epochs)
        if self.views != DEFAULT_VIEWS and not self.augmented:  # the default: a resolved spec states it
            raise SpecError("student.views", self.views, "needs student.augment (shift > 0 or rotate > 0): without "
                            "augmentation every view would be the same image")
        return self

    @property
    def augmented(self) -> bool:
        return bool(self.augment.shift or self.augment.rotate)

    def recipe(self) -> dict[str, Any]:
        """The recipe fields, as :class:`~kdtune.core.train.TrainConfig` takes them."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS}


FloatList = Annotated[list[float], BeforeValidator(_as_list)]
IntList = Annotated[list[int], BeforeValidator(_as_list)]
StrList = Annotated[list[str], BeforeValidator(_as_list)]


class ConditionsSpec(_Model):
    """Axes that are compared; their product is the set of conditions. Omitted axes take the section's value."""

    noise_level: FloatList = [0.0]
    noise_type: Annotated[list[Literal["symmetric", "pairflip"]], BeforeValidator(_as_list)] = ["symmetric"]
    teacher_epochs: IntList | None = None
    teacher_select: Annotated[list[Literal["best_val", "best_val_loss", "final"]], BeforeValidator(_as_list)] | None = None
    teacher_seeds: IntList | None = None
    teacher_error: FloatList | None = None
    dataset: StrList | None = None
    student_arch: StrList | None = None

    @model_validator(mode="after")
    def _check_values(self) -> ConditionsSpec:
        for i, level in enumerate(self.noise_level):
            if not 0 <= level < 1:
                raise SpecError(f"conditions.noise_level[{i}]", level, "must be in [0, 1) (share of labels flipped)")
        for name in type(self).model_fields:
            values = getattr(self, name)
            if values is not None and len(values) == 0:
                raise SpecError(f"conditions.{name}", values, "must list at least one value (or be omitted)")
            if values is not None and len(set(map(str, values))) != len(values):
                raise SpecError(f"conditions.{name}", values, "must not repeat a value")
        for i, epochs in enumerate(self.teacher_epochs or []):
            if epochs < 1:
                raise SpecError(f"conditions.teacher_epochs[{i}]", epochs, "must be a positive integer")
        return self


class DistributionSpec(_Model):
    """One search parameter in Optuna's abbreviated distribution format; bounds are inclusive."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


class BudgetSpec(_Model):
    trials_per_condition: int = Field(12, ge=1)
    repeats: int = Field(2, ge=1)  # seeds per configuration, trained inside one trial (paired across configurations)
    seed: int = 0  # first student seed; the repeats use seed, seed + 1, ...
    max_wall_minutes: float | None = Field(None, gt=0)
    # Confirmation (docs/recommendation_schema.md): the recommended configuration (and the next best ones up
    # to confirm_top_k) and alpha = 1 re-run on fresh seeds, confirm_repeats per round, until the verdict is
    # clear or confirm_max_repeats seeds are spent. Verdicts come from these runs only; 0 switches it off.
    confirm_top_k: int = Field(1, ge=0, le=8)
    confirm_repeats: int = Field(4, ge=2, le=100)
    confirm_max_repeats: int = Field(16, ge=2, le=500)

    @model_validator(mode="after")
    def _check_confirmation(self) -> BudgetSpec:
        if self.confirm_max_repeats < self.confirm_repeats:
            raise SpecError("budget.confirm_max_repeats", self.confirm_max_repeats,
                            f"must be at least budget.confirm_repeats ({self.confirm_repeats}): it is the most "
                            "confirmation seeds per configuration, added confirm_repeats at a time")
        return self


class RecommendSpec(_Model):
    """How verdicts are drawn (``kdtune recommend --margin`` overrides ``margin``)."""

    # Equivalence margin, in points of test accuracy: "no gain" only when the gain's interval lies inside
    # +-margin. Classification only: the linear task's test metric (excess MSE) has no points.
    margin: float | None = Field(None, gt=0, le=100)


#: The default equivalence margin for classification: 0.5 points of test accuracy.
DEFAULT_MARGIN_POINTS = 0.5


class CacheSpec(_Model):
    """Bounds on the teacher-logit cache of a study with student views (``student.augment``)."""

    max_bytes: int = Field(DEFAULT_CACHE_MAX_BYTES, ge=1)  # per condition; checked before anything trains
    top_k: int | None = None  # store each view's top-k logits and the log-sum-exp of the rest (many classes)

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, k: int | None) -> int | None:
        if k is not None and k < 1:
            raise SpecError("cache.top_k", k, "must be a positive integer at most the class count, or omitted (dense)")
        return k


class SchedulerSpec(_Model):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(2, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class ResourcesSpec(_Model):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    max_concurrent: int | None = Field(None, ge=1)


class WandbSpec(_Model):
    mode: Literal["offline", "online"] = "offline"
    project: str = "kdtune"
    entity: str | None = None


class TrackingSpec(_Model):
    wandb: WandbSpec | None = WandbSpec()


class StudySpec(_Model):
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
    default_temperature: float = Field(4.0, gt=0)  # temperature of the alpha = 1 / alpha = 0 baselines
    allow_negative_alpha: bool = False
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    budget: BudgetSpec = BudgetSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    objective: Literal["val_accuracy", "val_mse"] | None = None  # None: val_accuracy, or val_mse for regression
    tracking: Annotated[TrackingSpec, BeforeValidator(_as_tracking)] = TrackingSpec()
    recommend: RecommendSpec = RecommendSpec()
    cache: CacheSpec = CacheSpec()

    @model_validator(mode="after")
    def _check_study(self) -> StudySpec:
        from kdtune.spec.space import check_search_space

        check_search_space(self)
        datasets = self.conditions.dataset or [self.dataset.name]
        regression = [d == "linear" for d in datasets]
        if any(regression) and not all(regression):
            raise SpecError("conditions.dataset", datasets, "cannot mix the linear regression task with classification")
        if all(regression) and self.objective == "val_accuracy":
            raise SpecError("objective", self.objective, "must be val_mse for the linear regression task")
        if not all(regression) and self.objective == "val_mse":
            raise SpecError("objective", self.objective, "val_mse is only for the linear regression task")
        if all(regression) and self.recommend.margin is not None:
            raise SpecError("recommend.margin", self.recommend.margin, "is in points of test accuracy; the linear "
                            "task's test metric (excess MSE) has no such unit: omit it")
        # Only ASHA reads grace_period (fifo, and the epoch-less linear task, never stop early).
        asha = self.scheduler.type == "asha" and not all(regression)
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
        if self.task == "regression":
            raise SpecError(field, getattr(t, given[0]), "is for classification; the linear task builds its "
                            "teacher from teacher.error")
        for axis in ("teacher_epochs", "teacher_select", "teacher_seeds"):
            value = getattr(self.conditions, axis)
            if value is not None:
                raise SpecError(f"conditions.{axis}", value, f"has no effect with {field} (the teacher is given, "
                                "not trained); remove it")
        return self

    @model_validator(mode="after")
    def _check_teacher_recipe(self) -> StudySpec:
        """Augmentation needs images (the linear task has vectors; user files are checked on loading), and each
        teacher length of the conditions must outlast the warm-up."""
        t = self.teacher
        if self.student.augmented and self.task == "regression":
            raise SpecError("student.augment", self.student.augment.model_dump(), "needs an image dataset; the linear "
                            "task has feature vectors (remove student.augment)")
        if self.cache.top_k is not None and not self.student.augmented:
            raise SpecError("cache.top_k", self.cache.top_k, "applies to the per-view logits of student.augment; "
                            "set student.augment or remove cache.top_k")
        if self.student.augmented and t.logits is not None:
            raise SpecError("student.augment", self.student.augment.model_dump(), "needs a teacher model to run on "
                            "each view; teacher.logits (imported logits) has none")
        if (t.augment.shift or t.augment.rotate) and self.task == "regression":
            raise SpecError("teacher.augment", t.augment.model_dump(), "needs an image dataset; the linear task has "
                            "feature vectors (remove teacher.augment)")
        for i, epochs in enumerate(self.conditions.teacher_epochs or []):
            if t.warmup_epochs >= epochs:
                raise SpecError(f"conditions.teacher_epochs[{i}]", epochs,
                                f"must be more than teacher.warmup_epochs ({t.warmup_epochs})")
        epochs = self.search.get("epochs")
        if epochs is not None and self.student.warmup_epochs > 0:
            shortest = min(epochs.choices or [0]) if epochs.type == "categorical" else epochs.low
            if shortest is not None and shortest <= self.student.warmup_epochs:
                raise SpecError("search.epochs", epochs.model_dump(exclude_none=True),
                                f"must stay above student.warmup_epochs ({self.student.warmup_epochs})")
        return self

    @property
    def task(self) -> Literal["classification", "regression"]:
        datasets = self.conditions.dataset or [self.dataset.name]
        return "regression" if datasets[0] == "linear" else "classification"

    @property
    def objective_name(self) -> str:
        return self.objective or ("val_mse" if self.task == "regression" else "val_accuracy")

    @property
    def margin(self) -> float | None:
        """The equivalence margin as a fraction of test accuracy (None for the linear task: no margin)."""
        if self.task == "regression":
            return None
        points = self.recommend.margin if self.recommend.margin is not None else DEFAULT_MARGIN_POINTS
        return points / 100

    @property
    def mode(self) -> Literal["max", "min"]:
        return "min" if self.objective_name == "val_mse" else "max"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_spec(path: str | Path, *, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read a YAML spec, apply ``key.path=value`` overrides (values parsed as YAML), validate.

    A folder, a file over :data:`MAX_SPEC_BYTES`, a binary file or YAML that expands beyond
    :data:`MAX_SPEC_VALUES` values is refused with one line before (or instead of) parsing it.
    """
    path = Path(path)
    raw = yaml_value(_read_spec_text(path), "spec", str(path))
    if not isinstance(raw, dict):
        raise SpecError("spec", str(path), "must be a YAML mapping with at least `name`")
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

