"""Train one classifier from tensors and (optionally) precomputed teacher logits; evaluate it every epoch.

No Ray, no W&B, no files: a student can be trained in a plain Python session, and the Ray trial, the
teacher builder and the tests all call this same code. The teacher never runs here: its logits are an
array computed once up front (the logit cache), indexed with the same permutation as the inputs.

:class:`Trainer` advances one model epoch by epoch, so that a study trial can train the repeat seeds of
one configuration in lockstep and report their mean after every epoch; :func:`train_student` is the plain
loop around it.

The recipe (optimizer, weight decay, learning-rate schedule with warmup, augmentation) is part of
:class:`TrainConfig`, shared by teachers and students. Its defaults (Adam, no decay, constant rate, no
augmentation) are the recipe kdtune always had, so every existing configuration trains exactly as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from kdtune.core.augment import Augment
from kdtune.core.augment import augment_batch
from kdtune.core.augment import check_fits
from kdtune.core.data import DataBundle
from kdtune.core.data import Split
from kdtune.core.distill import check_alpha
from kdtune.core.distill import kd_loss
from kdtune.core.images import DiskImages
from kdtune.core.images import Images
from kdtune.core.images import take
from kdtune.core.limits import MIN_TEMPERATURE
from kdtune.core.limits import TOO_COLD
from kdtune.core.metrics import held_out_metrics
from kdtune.core.selection import first_best
from kdtune.errors import SpecError


# Evaluation batch. On one CPU thread the reference student evaluates 3.4x faster in batches of 256 than of 2,048
# (whose activations no longer fit in cache); the teacher's forward costs the same at both.
EVAL_BATCH_SIZE = 256

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("fp32", "bf16", "fp16")  # how CUDA runs the training steps (gpu_execution); a CPU runs fp32
STEP_MILESTONES = (0.5, 0.75)  # the step schedule: x STEP_GAMMA at half and at three quarters of the epochs
STEP_GAMMA = 0.1
_AUGMENT_SEED_OFFSET = 0x5EED_A06  # augmentation draws come from a generator of their own (batch order unchanged)
_MODEL_RNG_OFFSET = 0x5EED_D0  # dropout's draws: torch's global RNG, set from a state of the trainer's own
_VIEW_SEED_OFFSET = 0x5EED_71E  # which view of each image an epoch uses: a generator of its own too
_SUBSET_SEED = 0x5EED_F1D  # the training subset of data_fraction < 1: one draw, the same for every run


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run. alpha is the weight on the true labels (1 = no distillation)."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    alpha: float = 1.0
    temperature: float = 1.0
    seed: int = 0
    optimizer: Literal["adam", "sgd"] = "adam"  # adam: Adam, AdamW with weight decay; sgd: SGD with momentum
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: int = 0  # linear warm-up from lr / (steps of warm-up) to lr, then the schedule
    augment: Augment | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # CUDA only: autocast dtype of the steps (gpu_execution)
    compile: bool = False  # CUDA only: the training steps through torch.compile
    data_fraction: float = 1.0  # train on this share of the training split (a cheap search: kdtune.spec.fidelity)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SpecError("epochs", self.epochs, "must be a positive integer")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError("optimizer", self.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SpecError("schedule", self.schedule, f"must be one of {', '.join(SCHEDULES)}")
        if not 0 <= self.momentum < 1:
            raise SpecError("momentum", self.momentum, "must be in [0, 1)")
        if not self.weight_decay >= 0:
            raise SpecError("weight_decay", self.weight_decay, "must be >= 0")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise SpecError("warmup_epochs", self.warmup_epochs, f"must be in [0, epochs) = [0, {self.epochs})")
        if self.batch_size < 1:
            raise SpecError("batch_size", self.batch_size, "must be a positive integer")
        if not 0 < self.lr < math.inf:  # also refuses NaN: every comparison with it is false
            raise SpecError("lr", self.lr, "must be > 0 and finite")
        if not MIN_TEMPERATURE <= self.temperature < math.inf:
            raise SpecError("temperature", self.temperature, f"must be at least {MIN_TEMPERATURE} and finite ({TOO_COLD})")
        check_alpha(self.alpha)
        if not 0 < self.data_fraction <= 1:
            raise SpecError("data_fraction", self.data_fraction, "must be in (0, 1]")
        if self.precision not in PRECISIONS:
            raise SpecError("precision", self.precision, f"must be one of {', '.join(PRECISIONS)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, seed: int, recipe: Mapping[str, Any]) -> TrainConfig:
        """A configuration's parameters (``epochs``, ``lr``, ``batch_size``, ``alpha``, ``temperature``, and a cheap
        search's ``data_fraction``) with the student's recipe (:func:`student_recipe`): the one conversion the trial
        and the exported student share."""
        return cls(epochs=int(params["epochs"]), lr=float(params["lr"]), batch_size=int(params["batch_size"]),
                   alpha=float(params["alpha"]), temperature=float(params["temperature"]), seed=seed,
                   data_fraction=float(params.get("data_fraction", 1.0)), **recipe)


@dataclass(frozen=True)
class TeacherLogits:
    """The teacher's logits for every split, row-aligned with the splits of the same :class:`DataBundle`."""

    train: torch.Tensor  # (N_train, K) float32
    val: torch.Tensor  # (N_val, K)
    test: torch.Tensor  # (N_test, K)


@dataclass
class EpochMetrics:
    """What one epoch measured. Validation is against the (noisy) validation labels, test against clean labels."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    test_macro_f1: float
    test_per_class_accuracy: list[float]
    teacher_agreement: float | None  # share of test images where student and teacher predict the same class
    correction_rate: float | None  # flipped training samples predicted as their clean label (None: no flips)
    memorisation_rate: float | None  # flipped training samples predicted as their noisy label
    seconds: float  # wall time of the epoch's training and evaluation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """Per-epoch metrics of one run, and the epoch that model selection picks (best validation accuracy)."""

    epochs: list[EpochMetrics] = field(default_factory=list)

    @property
    def best(self) -> EpochMetrics:
        """The first epoch with the highest validation accuracy (:func:`~kdtune.core.selection.first_best`): its
        test numbers are the ones reported."""
        best = first_best(self.epochs, lambda m: m.val_accuracy, "max")
        if best is None:
            raise ValueError("no epoch has been trained yet")
        return best


class ViewSource(Protocol):
    """Augmented views and the teacher's logits for them (:mod:`kdtune.tasks.image.views`): cached or computed inline."""

    @property
    def spec(self) -> Any: ...  # a kdtune.tasks.image.views.ViewSpec: .views, .render(x, index, view), .apply(...)

    def teacher_logits(self, index: torch.Tensor, view: torch.Tensor, batch: torch.Tensor, *,
                       temperature: float = 1.0) -> torch.Tensor: ...

    def to(self, device: torch.device) -> ViewSource: ...


def gpu_execution(model: nn.Module, config: TrainConfig, device: torch.device
                  ) -> tuple[torch.dtype | None, torch.amp.GradScaler | None, Callable[[torch.Tensor], torch.Tensor]]:
    """How the training steps run on ``device``: the autocast dtype (None: fp32), the gradient scaler (fp16 only)
    and the forward (the model, or ``torch.compile(model)`` with ``config.compile``).

    On CUDA, ``bf16`` and ``fp16`` run the forward (and so the backward) under ``torch.autocast``, the loss in fp32;
    fp16 also scales the loss with ``torch.amp.GradScaler``, because fp16's 5-bit exponent flushes small gradients
    to zero (bf16 has fp32's range and needs none). Image models and batches are channels_last on every device
    already (``build_model``, the splits), the layout tensor cores want. Evaluation and the teacher's cached logits
    run in fp32 on the eager model (:func:`predict`).

    On a CPU, ``precision`` and ``compile`` are ignored: the run is fp32 and eager, exactly as without them. bf16
    autocast exists on CPUs, but on the 2-core AVX-512 machine kdtune is measured on it made a training step 1.4-1.5x
    slower (resnet8x4 and the reference student, batch 64, one thread), and a spec is often planned or tried on a
    laptop before it runs on a GPU: refusing would make the same spec fail there. A teacher's cache key records
    the precision that ran (:meth:`kdtune.cache.teacher.TeacherSpec.for_device`).
    """
    if device.type != "cuda":
        return None, None, model
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if config.compile else model
    return dtype, scaler, forward


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


RECIPE_FIELDS = ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs", "precision", "compile")


def student_recipe(section: dict[str, Any]) -> dict[str, Any]:
    """The recipe fields of a spec's ``student`` section as a dict (``StudentSection.model_dump()``); a study
    folder written before recipes existed has none, and gets the original recipe."""
    return {name: section[name] for name in RECIPE_FIELDS if name in section}


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a share of ``config.lr``.

    Warm-up rises linearly over ``warmup_epochs`` (step i of W gets (i + 1) / W), then ``constant`` stays at 1,
    ``cosine`` falls from 1 towards 0 over the remaining steps, ``step`` multiplies by :data:`STEP_GAMMA` at
    each of :data:`STEP_MILESTONES` of the epochs.
    """
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch - warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / total))
    if config.schedule == "step":
        epoch = step / steps_per_epoch
        return STEP_GAMMA ** sum(epoch >= m * config.epochs for m in STEP_MILESTONES)
    return 1.0


def make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """``adam`` with weight decay is AdamW (the decay decoupled from the adaptive step, so it shrinks weights by
    lr x weight_decay per step whatever the gradients' scale); ``sgd`` uses ``momentum`` and classic L2 decay.

    Adam and AdamW run fused (one kernel for all parameters) on CPU and CUDA: the same update, in 17% less time
    per epoch for the quickstart's student on digits and for Hinton's MNIST student on one CPU thread (2% for the
    reference student on MNIST), where the default per-parameter loop is a good part of a small model's step
    (``benchmarks/fused_adam.py``).
    """
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) or None
    if config.weight_decay > 0:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=config.lr, fused=fused)


class Trainer:
    """Trains ``model`` on ``data.train`` with the config's recipe, one epoch per :meth:`step`.

    The seed fixes the batch order (a ``torch.Generator`` of its own: nothing depends on global RNG state);
    augmentation draws from a second generator seeded from the same seed, so a recipe with augmentation keeps
    the batch order of the one without, and two configurations with the same seed see the same batches and the
    same shifted images (the paired seeds of a study);
    the model's initial weights are fixed by whoever built it (``build_model(..., seed=...)``).
    Without ``teacher`` the loss is plain cross-entropy and ``alpha`` must be 1.

    With ``views`` (:mod:`kdtune.tasks.image.views`) the student trains on reproducible augmented views: each epoch every
    image gets one of its V views, drawn from a third generator seeded from the seed (so configurations with
    the same seed see the same views), rendered by :func:`kdtune.tasks.image.views.render`, and the distillation term reads
    the teacher's logits for that view from ``views`` (``teacher`` still gives validation and test logits).
    ``views`` replaces ``config.augment``; the two cannot be combined.

    On a CPU the process is limited to ``threads`` torch threads (one by default: several single-threaded
    trials per machine give far more throughput than one multi-threaded one); ``None`` leaves it unchanged.
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataBundle,
        config: TrainConfig,
        *,
        teacher: TeacherLogits | None = None,
        views: ViewSource | None = None,
        device: torch.device | str | None = None,
        threads: int | None = 1,
    ) -> None:
        if data.task != "classification":
            raise SpecError("dataset.name", data.name, "is a regression task: use kdtune.tasks.linear.closed_form for it")
        if teacher is None and views is None and config.alpha != 1.0:
            raise SpecError("alpha", config.alpha, "needs teacher logits unless it is 1 (no distillation)")
        self.device = torch.device(device) if device is not None else default_device()
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.config = config
        self.model = model.to(self.device)
        self.num_classes = data.num_classes
        self.train_split = _to_device(data.train, self.device)
        self.val_split = _to_device(data.val, self.device)
        self.test_split = _to_device(data.test, self.device)
        self.teacher = None if teacher is None else TeacherLogits(
            *(t.to(self.device) for t in (teacher.train, teacher.val, teacher.test)))
        augment = config.augment
        if augment is not None and augment.active and data.train.x.dim() != 4:
            raise SpecError("augment", augment.to_dict(), "needs image inputs (C, H, W); "
                            f"dataset {data.name!r} has inputs of shape {tuple(data.input_shape)}")
        self.augment = augment if augment is not None and augment.active else None
        if self.augment is not None:
            check_fits(self.augment, data.input_shape[1], data.input_shape[2], field="augment")
        if views is not None and self.augment is not None:
            raise SpecError("augment", augment.to_dict(),  # type: ignore[union-attr]
                            "cannot be combined with student views (they carry their own augmentation)")
        if views is not None and data.train.x.dim() != 4:
            raise SpecError("student.augment", views.spec.augment, "needs image inputs (C, H, W); dataset "
                            f"{data.name!r} has inputs of shape {tuple(data.input_shape)}")
        self.views = None if views is None else views.to(self.device)
        self.view_generator = torch.Generator().manual_seed(config.seed + _VIEW_SEED_OFFSET)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.autocast_dtype, self.scaler, self.forward = gpu_execution(self.model, config, self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.augment_generator = torch.Generator().manual_seed(config.seed + _AUGMENT_SEED_OFFSET)
        self.positions = training_subset(len(self.train_split), config.data_fraction)  # None: every position
        trained = len(self.train_split) if self.positions is None else len(self.positions)
        self.steps_per_epoch = math.ceil(trained / config.batch_size)
        self.model_rng = _seeded_rng_state(config.seed + _MODEL_RNG_OFFSET, self.device)
        self.epoch = 0

    def step(self, *, val_only: bool = False) -> EpochMetrics:
        """Train one epoch, then evaluate on validation, test and the flipped training samples (``val_only``: on
        validation alone, for a caller that selects an epoch and measures the rest once, for the one it keeps)."""
        start = time.perf_counter()
        train_loss = self._train_epoch()
        self.epoch += 1
        metrics = self.evaluate(train_loss=train_loss, val_only=val_only)
        metrics.seconds = time.perf_counter() - start
        return metrics

    def _train_epoch(self) -> float:
        """One epoch with torch's global RNG (which dropout draws from) set to this run's own state, and restored
        afterwards: a model with dropout trains the same whatever else ran in the process before it."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.model_rng["cpu"])
            if devices:
                torch.cuda.set_rng_state(self.model_rng["cuda"], self.device)
            loss = self._train_batches()
            self.model_rng = _rng_state(self.device)
        return loss

    def _train_batches(self) -> float:
        self.model.train()
        y = self.train_split.y
        if self.positions is None:
            order = torch.randperm(len(y), generator=self.generator).to(self.device)  # (N,)
        else:  # a share of the split: its positions in this epoch's order (views and logits join by position)
            order = self.positions[torch.randperm(len(self.positions), generator=self.generator)].to(self.device)
        view = None
        if self.views is not None:  # this epoch's view of every image
            view = torch.randint(self.views.spec.views, (len(y),), generator=self.view_generator).to(self.device)
        total, count = torch.zeros((), device=self.device), 0
        for i, (idx, batch) in enumerate(self._batches(order, view)):
            factor = lr_factor(self.config, self.epoch * self.steps_per_epoch + i, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr * factor
            if self.augment is not None:
                batch = augment_batch(batch, self.augment, self.augment_generator)
            logits = self._logits(batch)  # (B, K) float32
            if self.views is not None and view is not None and self.config.alpha < 1:  # alpha = 1 needs no teacher
                target = self.views.teacher_logits(idx, view[idx], batch, temperature=self.config.temperature)
                loss = kd_loss(logits, target, y[idx],
                               alpha=self.config.alpha, temperature=self.config.temperature)
            elif self.teacher is None or self.views is not None:
                loss = F.cross_entropy(logits, y[idx])
            else:
                loss = kd_loss(logits, self.teacher.train[idx], y[idx], alpha=self.config.alpha,
                               temperature=self.config.temperature)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:  # fp16: the loss scaled up so small gradients survive; the step unscales (and skips an inf)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            total += loss.detach() * len(idx)  # stays on the device: no sync per step
            count += len(idx)
        return float(total) / count

    def _batches(self, order: torch.Tensor, view: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(positions, pixels) of each training batch in ``order``, with this epoch's ``view`` of each image rendered:
        sliced from the pre-loaded tensors, or decoded and rendered in loader workers for images on disk (the same
        batches either way)."""
        x, size = self.train_split.x, self.config.batch_size
        if isinstance(x, DiskImages):
            render = None if self.views is None else self.views.spec.apply
            for idx, batch in x.batches(order, size, views=None if view is None else view[order], render=render):
                yield idx.to(self.device), _on_device(batch, self.device)
            return
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            yield idx, x[idx] if self.views is None or view is None else self.views.spec.render(x, idx, view[idx])

    @torch.no_grad()
    def evaluate(self, *, train_loss: float = float("nan"), val_only: bool = False) -> EpochMetrics:
        """The metrics of the model as it is now; with ``val_only`` the test and training-split ones are NaN (or
        None, or empty) and cost nothing: a teacher selects its epoch on validation alone
        (:func:`kdtune.cache.teacher.train_teacher`)."""
        val_logits = predict(self.model, self.val_split.x)
        val_loss = float(F.cross_entropy(val_logits, self.val_split.y))
        val_accuracy = float((val_logits.argmax(1) == self.val_split.y).float().mean())
        if val_only:
            nan = float("nan")
            return EpochMetrics(epoch=self.epoch, train_loss=train_loss, val_loss=val_loss, val_accuracy=val_accuracy,
                                test_loss=nan, test_accuracy=nan, test_macro_f1=nan, test_per_class_accuracy=[],
                                teacher_agreement=None, correction_rate=None, memorisation_rate=None, seconds=0.0)
        test_logits = predict(self.model, self.test_split.x)
        flipped = self.train_split.flipped
        flipped_pred = predict(self.model, take(self.train_split.x, flipped)).argmax(1) if bool(flipped.any()) else None
        agreement = None
        if self.teacher is not None:
            agreement = float((test_logits.argmax(1) == self.teacher.test.argmax(1)).float().mean())
        return EpochMetrics(epoch=self.epoch, train_loss=train_loss, val_loss=val_loss, val_accuracy=val_accuracy,
                            teacher_agreement=agreement, seconds=0.0,
                            **held_out_metrics(test_logits, flipped_pred, self.test_split, self.train_split,
                                               self.num_classes))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit after a restart: weights, optimizer, batch-order RNG, epoch."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
            "view_generator": self.view_generator.get_state(),
            "model_rng": self.model_rng,
            "epoch": self.epoch,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if "augment_generator" in state:  # checkpoints written before augmentation existed have none (and need none)
            self.augment_generator.set_state(state["augment_generator"])
        if "view_generator" in state:
            self.view_generator.set_state(state["view_generator"])
        if "model_rng" in state:
            self.model_rng = state["model_rng"]
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The training forward: the model as it is on a CPU; on CUDA under autocast and maybe compiled, its
        logits cast to float32 for the loss (:func:`gpu_execution`)."""
        if self.autocast_dtype is None:
            return self.forward(batch)
        with torch.autocast("cuda", dtype=self.autocast_dtype):
            logits = self.forward(batch)
        return logits.float()


def train_student(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    teacher: TeacherLogits | None = None,
    views: ViewSource | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | str | None = None,
    threads: int | None = 1,
) -> History:
    """Train for ``config.epochs`` epochs, calling ``on_epoch`` after each, and return the history."""
    trainer = Trainer(model, data, config, teacher=teacher, views=views, device=device, threads=threads)
    history = History()
    for _ in range(config.epochs):
        metrics = trainer.step()
        history.epochs.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    return history


def training_subset(size: int, fraction: float) -> torch.Tensor | None:
    """The positions of the training split a run with ``data_fraction`` < 1 trains on: ``ceil(fraction * size)`` of
    them, drawn once from a fixed seed and sorted, so every run of a study (every seed and configuration) trains on
    the same subset and stays paired. None for the whole split."""
    if fraction >= 1:
        return None
    count = max(1, math.ceil(fraction * size))
    chosen = torch.randperm(size, generator=torch.Generator().manual_seed(_SUBSET_SEED))[:count]
    return chosen.sort().values


@torch.no_grad()
def predict(model: nn.Module, x: Images, *, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, in batches; returned on ``x``'s device (the CPU for images on
    disk, decoded in loader workers) as float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if isinstance(x, DiskImages):
        out = [model(_on_device(batch, device)).float().cpu() for _, batch in x.batches(torch.arange(len(x)), batch_size)]
    else:
        out = [model(x[i : i + batch_size].to(device, non_blocking=True)).float() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    home = torch.device("cpu") if isinstance(x, DiskImages) else x.device
    return torch.cat(out).to(home) if out else torch.empty(0)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _seeded_rng_state(seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states (CPU, and the device's when CUDA) that ``torch.manual_seed(seed)`` gives, leaving the
    process's own states untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _rng_state(device)


def _to_device(split: Split, device: torch.device) -> Split:
    """The split's tensors on ``device`` (images channels_last); images on disk stay there, read batch by batch."""
    x = split.x if isinstance(split.x, DiskImages) else _on_device(split.x, device)
    return Split(x=x, y=split.y.to(device), clean=split.clean.to(device), flipped=split.flipped.to(device))


def _on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
