"""The sections of a study spec, one pydantic model each: dataset, teacher, student, conditions, search, budget, ...

Each section checks itself (field bounds, its own cross-field rules, one :class:`~kdtune.errors.SpecError` line
per mistake) and holds its defaults in its field declarations. What needs more than one section (the task
implied by the datasets, a warm-up against the conditions' teacher lengths) and reading a spec file belong to
:class:`~kdtune.spec.schema.StudySpec` and :func:`~kdtune.spec.schema.load_spec`: kept apart so that a section
can be read, and grow, without the loading machinery around it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from kdtune.errors import SpecError
from kdtune.spec.rules import MIN_LOCATE_SEEDS
from kdtune.tasks.image.names import DEFAULT_VIEWS


def _as_list(value: Any) -> Any:
    """Let a condition axis be written as a scalar (``noise_type: symmetric``) or a list."""
    return value if isinstance(value, list) or value is None else [value]


def _square(value: Any) -> Any:
    """``image_size: 32`` is 32 x 32 pixels."""
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


def as_tracking(value: Any) -> Any:
    """``tracking: none`` switches tracking off; otherwise a mapping."""
    return {"wandb": None} if value in ("none", None) else value


#: Seeds are 32-bit: numpy's legacy seeding (the data splits) refuses more, and 2**64 reached torch as an overflow.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
#: The most confirmation seeds per configuration (budget.confirm_max_repeats), extensions included.
MAX_CONFIRM_REPEATS = 500
#: The most teacher ensemble members: each is a full teacher trained in turn (1e20 was accepted).
MAX_ENSEMBLE = 64


class SpecModel(BaseModel):
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


class LinearTaskSpec(SpecModel):
    """Sizes of the synthetic linear regression task (``dataset.name: linear``)."""

    dim: int = Field(20, ge=1)
    n_train: int = Field(200, ge=2)
    n_val: int = Field(20000, ge=1)
    n_test: int = Field(20000, ge=1)
    noise_std: float = Field(1.0, ge=0)


def _absolute(path: str) -> str:
    """A local path made absolute (Ray workers may run elsewhere); URIs (``s3://...``) are kept as they are."""
    return path if "://" in path else str(Path(path).expanduser().absolute())


class DatasetSpec(SpecModel):
    name: str = "digits"
    train_size: int | None = Field(None, ge=10)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    seed: Seed = 0
    data_root: str | None = None
    download: bool = False
    linear: LinearTaskSpec = LinearTaskSpec()
    # Your own data (docs/byo.md): the training pool, then an optional test set; .npz or Parquet.
    files: Annotated[list[str] | None, BeforeValidator(_as_list)] = None
    # Language modelling (docs/language_models.md; None: not set, the language task's defaults apply): the text
    # (`name: text`: a .txt, .jsonl or Parquet file, or a folder of .txt files), the key or column holding each
    # document, the tokenizer (byte | hf:<name> | PATH/tokenizer.json), the tokens per block, the share of
    # documents held out for testing, and the training blocks an epoch visits (None: all; else a seeded sample).
    # Images from disk (image_folder: `root` in torchvision's ImageFolder layout, `test_root` the same or 20% of root
    # held out; torchvision:<Class>: on disk under data_root): every image resized to `image_size` (pixels, or
    # [height, width]) when set; decoded into memory when they fit (`in_memory: auto`) or as asked, else read in
    # `workers` loader processes per data loader; `num_classes`, when given, must match the folders.
    root: str | None = None
    test_root: str | None = None
    image_size: Annotated[tuple[int, int] | None, BeforeValidator(_square)] = None
    in_memory: Literal["auto"] | bool = "auto"
    workers: int = Field(2, ge=0)
    num_classes: int | None = Field(None, ge=2)
    corpus: str | None = None
    text_field: str | None = None
    tokenizer: str | None = None
    context: int | None = Field(None, ge=1)
    test_fraction: float | None = Field(None, gt=0, lt=1)
    epoch_blocks: int | None = Field(None, ge=1)

    @field_validator("corpus", "root", "test_root")
    @classmethod
    def _check_corpus(cls, path: str | None) -> str | None:
        return None if path is None else _absolute(path)

    @field_validator("in_memory", mode="before")
    @classmethod
    def _check_in_memory(cls, value: Any) -> Any:
        if value != "auto" and not isinstance(value, bool):  # one line, not one per member of the union
            raise SpecError("dataset.in_memory", value, "must be auto, true or false")
        return value

    @field_validator("image_size")
    @classmethod
    def _check_image_size(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is not None and min(size) < 1:
            raise SpecError("dataset.image_size", list(size), "must be a positive number of pixels, or [height, width]")
        return size

    def images(self) -> dict[str, Any]:
        """The fields of images read from disk, as :class:`~kdtune.tasks.image.folder.ImageOptions` takes them."""
        return {"root": self.root, "test_root": self.test_root, "image_size": self.image_size,
                "in_memory": None if self.in_memory == "auto" else self.in_memory, "workers": self.workers,
                "num_classes": self.num_classes}

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


class AugmentSpec(SpecModel):
    """Random per-sample augmentation of training images (images only; ``kdtune.core.augment.Augment`` checks how
    the fields combine): shifts and rotations, a padded random crop or a random-resized crop, a horizontal flip."""

    shift: int = Field(0, ge=0)  # pixels, each axis, uniform integers in [-shift, shift]
    rotate: float = Field(0.0, ge=0, le=180)  # degrees, uniform in [-rotate, rotate]
    crop: int = Field(0, ge=0)  # side of a random square crop of the image padded by `padding`, resized back
    padding: int = Field(0, ge=0)  # zero pixels around the image before the crop (CIFAR: crop 32, padding 4)
    scale: tuple[float, float] | None = None  # a random-resized crop: the share of the area, [low, high] in (0, 1]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect ratio range (width / height), with scale
    flip: bool = False  # horizontal flip with probability 1/2

    @model_validator(mode="after")
    def _check_combination(self) -> AugmentSpec:
        from kdtune.core.augment import Augment

        Augment(**self.model_dump())  # raises the one-line SpecError of a combination that does not go together
        return self

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.crop or self.scale is not None or self.flip)


def _check_warmup(section: str, warmup_epochs: int, epochs: int) -> None:
    if warmup_epochs >= epochs:
        raise SpecError(f"{section}.warmup_epochs", warmup_epochs,
                        f"must be less than {section}.epochs ({epochs}): the warm-up is part of the epochs")


#: The optimisation recipe shared by the teacher and student sections (declared in each, after its basic fields).
RECIPE_FIELDS = ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs", "precision", "compile")
Optimizer = Literal["adam", "sgd"]  # adam: AdamW when weight_decay > 0; sgd: with momentum and L2 decay
Schedule = Literal["constant", "cosine", "step"]
#: How CUDA runs a model's training steps: fp32, or bf16 / fp16 autocast (fp16 with a gradient scaler); with
#: `compile`, through torch.compile. A CPU ignores both and trains in fp32 (kdtune.core.train.gpu_execution).
Precision = Literal["fp32", "bf16", "fp16"]


class TeacherSection(SpecModel):
    """How the teacher is trained. The recipe defaults are kdtune's original one (constant Adam, no decay, no
    augmentation), so older specs train and cache exactly as before."""

    arch: str = "reference_teacher"
    epochs: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    seed: Seed = 0
    select: Literal["best_val", "best_val_loss", "final"] = "best_val"
    patience: int | None = Field(None, ge=1)
    kwargs: dict[str, Any] = {}  # e.g. {dropout: 0.5, input_dropout: 0.2} for the MLPs
    optimizer: Optimizer = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = "constant"
    warmup_epochs: int = Field(0, ge=0)  # linear warm-up, then the schedule; shorter than the epochs
    precision: Precision = "fp32"  # part of the teacher's cache key where it ran (a CPU runs fp32)
    compile: bool = False
    augment: AugmentSpec = AugmentSpec()  # shift 0, rotate 0: none
    # the teacher is the mean of the logits of this many members (seeds seed, seed + 1, ...)
    ensemble: int = Field(1, le=MAX_ENSEMBLE)
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


class StudentSection(SpecModel):
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
    precision: Precision = "fp32"
    compile: bool = False
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
            raise SpecError("student.views", self.views, "needs student.augment (a shift, rotation, crop or flip): without "
                            "augmentation every view would be the same image")
        return self

    @property
    def augmented(self) -> bool:
        return self.augment.active

    def recipe(self) -> dict[str, Any]:
        """The recipe fields, as :class:`~kdtune.core.train.TrainConfig` takes them."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS}


FloatList = Annotated[list[float], BeforeValidator(_as_list)]
SeedList = Annotated[list[Seed], BeforeValidator(_as_list)]
IntList = Annotated[list[int], BeforeValidator(_as_list)]
StrList = Annotated[list[str], BeforeValidator(_as_list)]


#: A size's name (``conditions.student_size``, ``teacher_size``): part of the condition key, so no ``,`` or ``=``.
SIZE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ConditionsSpec(SpecModel):
    """Axes that are compared; their product is the set of conditions. Omitted axes take the section's value."""

    noise_level: FloatList = [0.0]
    noise_type: Annotated[list[Literal["symmetric", "pairflip"]], BeforeValidator(_as_list)] = ["symmetric"]
    teacher_epochs: IntList | None = None
    teacher_select: Annotated[list[Literal["best_val", "best_val_loss", "final"]], BeforeValidator(_as_list)] | None = None
    teacher_seeds: SeedList | None = None
    teacher_error: FloatList | None = None
    dataset: StrList | None = None
    student_arch: StrList | None = None
    # Model sizes: a name per size, each mapping to kwargs merged over the section's (teacher.kwargs,
    # student.kwargs), e.g. {d32: {d_model: 32}, d64: {d_model: 64, n_layers: 2}}; the condition key holds the name.
    teacher_size: dict[str, dict[str, Any]] | None = None
    student_size: dict[str, dict[str, Any]] | None = None
    # Language task: the k each condition's students read of a cache.top_k cache (one cache serves every k).
    top_k: IntList | None = None

    @field_validator("teacher_size", "student_size", mode="before")
    @classmethod
    def _check_sizes(cls, sizes: Any, info: ValidationInfo) -> Any:
        """Each size a simple name (it is part of the condition key) mapping to a mapping of kwargs."""
        field = f"conditions.{info.field_name}"
        section = str(info.field_name).split("_")[0]
        if sizes is None:
            return None
        if not isinstance(sizes, dict):
            raise SpecError(field, sizes, f"must map each size's name to the {section}.kwargs it overrides, e.g. "
                            "{d64: {d_model: 64}}")
        if not sizes:
            raise SpecError(field, sizes, "must name at least one size (or be omitted)")
        named = {str(name): overrides for name, overrides in sizes.items()}
        for name, overrides in named.items():
            if not SIZE_NAME.fullmatch(name):
                raise SpecError(field, name, "a size's name is part of the condition key: letters, digits, _, . and - "
                                "only")
            if not isinstance(overrides, dict):
                raise SpecError(f"{field}.{name}", overrides, f"must be a mapping of {section}.kwargs to override, "
                                "e.g. {d_model: 64} ({} keeps them as they are)")
        if len({repr(sorted(o.items(), key=str)) for o in named.values()}) != len(named):
            raise SpecError(field, sizes, "must not repeat a size (two names with the same overrides)")
        return named

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
        for i, k in enumerate(self.top_k or []):
            if k < 1:
                raise SpecError(f"conditions.top_k[{i}]", k, "must be a positive integer (the k a run reads of the "
                                "cache.top_k targets)")
        return self


class DistributionSpec(SpecModel):
    """One search parameter in Optuna's abbreviated distribution format; bounds are inclusive."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


class BudgetSpec(SpecModel):
    trials_per_condition: int = Field(12, ge=1)
    repeats: int = Field(2, ge=1)  # seeds per configuration, trained inside one trial (paired across configurations)
    seed: Seed = 0  # first student seed; the repeats use seed, seed + 1, ...
    max_wall_minutes: float | None = Field(None, gt=0)
    # Confirmation (docs/recommendation_schema.md): the recommended configuration (and the next best ones up
    # to confirm_top_k) and alpha = 1 re-run on fresh seeds, confirm_repeats per round, until the verdict is
    # clear or confirm_max_repeats seeds are spent. Verdicts come from these runs only; 0 switches it off.
    confirm_top_k: int = Field(1, ge=0, le=8)
    confirm_repeats: int = Field(16, ge=2, le=100)
    confirm_max_repeats: int = Field(48, ge=2, le=MAX_CONFIRM_REPEATS)  # enough for 5 conditions' verdicts (below)
    # The rarest failure a "distil" or "hurts" verdict guards against, as a share of distilled runs: such a verdict
    # waits for enough paired seeds that a failure this common shows with probability above the condition's
    # confidence (42 pairs at 0.1 for 4 conditions; kdtune.spec.rules.min_directional_pairs). 0: no such wait.
    confirm_failure_rate: float = Field(0.1, ge=0.0, le=0.5)
    # The confirm_max_repeats the study started with, where `kdtune resume --confirm-max-repeats` raised it since:
    # the sequential design's planned looks (kdtune.analysis.sequential). Unset: confirm_max_repeats is the plan.
    confirm_planned_repeats: int | None = Field(None, ge=2, le=MAX_CONFIRM_REPEATS)
    # The locate stage (kdtune.analysis.locate): once a condition's confirmation says "distil", locate_alphas alphas
    # spread over the searched range run at the confirmed configuration's temperature on the first locate_repeats
    # seeds of the confirmation's first round (unset: all confirm_repeats of them), so that the alpha interval says
    # where the optimum lies. 0 switches it off; otherwise at least 3 (a curve through them, the confirmed alpha and
    # alpha = 1 has four parameters). A first round of fewer than 3 seeds locates nothing (kdtune.spec.rules).
    locate_alphas: int = Field(5, ge=0, le=19)
    locate_repeats: int | None = Field(None, ge=MIN_LOCATE_SEEDS, le=100)

    @model_validator(mode="after")
    def _check_confirmation(self) -> BudgetSpec:
        if self.confirm_max_repeats < self.confirm_repeats:
            raise SpecError("budget.confirm_max_repeats", self.confirm_max_repeats,
                            f"must be at least budget.confirm_repeats ({self.confirm_repeats}): it is the most "
                            "confirmation seeds per configuration, added confirm_repeats at a time")
        planned = self.planned_confirm_repeats
        if not self.confirm_repeats <= planned <= self.confirm_max_repeats:
            raise SpecError("budget.confirm_planned_repeats", planned, f"must lie between budget.confirm_repeats "
                            f"({self.confirm_repeats}) and budget.confirm_max_repeats ({self.confirm_max_repeats})")
        if 0 < self.locate_alphas < 3:
            raise SpecError("budget.locate_alphas", self.locate_alphas, "must be 0 (no locate stage) or at least 3: "
                            "a split parabola through them, the confirmed alpha and alpha = 1 has four parameters")
        if self.locate_repeats is not None and self.locate_repeats > self.confirm_repeats:
            raise SpecError("budget.locate_repeats", self.locate_repeats, f"must be at most budget.confirm_repeats "
                            f"({self.confirm_repeats}): the locate stage runs on the confirmation's first round's seeds")
        if (self.confirm_max_repeats - planned) % self.confirm_repeats:
            raise SpecError("budget.confirm_max_repeats", self.confirm_max_repeats,
                            f"must be the planned {planned} plus a whole number of rounds of budget.confirm_repeats "
                            f"({self.confirm_repeats}): {planned + self.confirm_repeats}, "
                            f"{planned + 2 * self.confirm_repeats}, ...")
        return self

    @property
    def locate_seeds(self) -> int:
        """Seeds per alpha of the locate stage (``locate_repeats``, else ``confirm_repeats``)."""
        return self.confirm_repeats if self.locate_repeats is None else self.locate_repeats

    @property
    def planned_confirm_repeats(self) -> int:
        """The confirmation seeds planned when the study started (see ``confirm_planned_repeats``)."""
        return self.confirm_max_repeats if self.confirm_planned_repeats is None else self.confirm_planned_repeats


class RecommendSpec(SpecModel):
    """How verdicts are drawn (``kdtune recommend --margin`` overrides ``margin``)."""

    # Equivalence margin, in the unit of the task's objective (kdtune.tasks.base.Objective.margin_unit: points of
    # test accuracy for images; the default 0.5): "no gain" only when the gain's interval lies inside +-margin.
    # The linear task's test metric (excess MSE) has no unit for it.
    margin: float | None = Field(None, gt=0, le=100)


class CacheSpec(SpecModel):
    """Bounds on the teacher-logit cache: of a study with student views (``student.augment``), or of a language
    study's per-token teacher targets."""

    max_bytes: int = Field(DEFAULT_CACHE_MAX_BYTES, ge=1)  # per condition; checked before anything trains
    # Image task: the teacher's logits stored in float32 or float16 (half the bytes; rounding below 0.01 for logits
    # under 32 in magnitude); part of the logits entry's key, so each is its own entry. Read back as float32.
    logits_dtype: Literal["float32", "float16"] = "float32"
    top_k: int | None = None  # store the top-k logits and the log-sum-exp of the rest (many classes or tokens)
    # Language task: the unbiased sampled variant instead, this many draws per position (forward KL at T = 1).
    samples: int | None = Field(None, ge=1)

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, k: int | None) -> int | None:
        if k is not None and k < 1:
            raise SpecError("cache.top_k", k, "must be a positive integer at most the class count, or omitted (dense)")
        return k


class SchedulerSpec(SpecModel):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(2, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class ResourcesSpec(SpecModel):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    max_concurrent: int | None = Field(None, ge=1)


class WandbSpec(SpecModel):
    mode: Literal["offline", "online"] = "offline"
    project: str = "kdtune"
    entity: str | None = None


class TrackingSpec(SpecModel):
    wandb: WandbSpec | None = WandbSpec()
