"""Train one classifier from tensors and (optionally) precomputed teacher logits; evaluate it every epoch.

No Ray, no W&B, no files: a student can be trained in a plain Python session, and the Ray trial, the
teacher builder and the tests all call this same code. The teacher never runs here: its logits are an
array computed once up front (the logit cache), indexed with the same permutation as the inputs.

:class:`Trainer` advances one model epoch by epoch, so that a study trial can train the repeat seeds of
one configuration in lockstep and report their mean after every epoch; :func:`train_student` is the plain
loop around it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdtune.data import DataBundle
from kdtune.data import Split
from kdtune.distill import check_alpha
from kdtune.distill import kd_loss
from kdtune.errors import SpecError


# Evaluation batch. On one CPU thread the reference student evaluates 3.4x faster in batches of 256 than of 2,048
# (whose activations no longer fit in cache); the teacher's forward costs the same at both.
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run. alpha is the weight on the true labels (1 = no distillation)."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    alpha: float = 1.0
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SpecError("epochs", self.epochs, "must be a positive integer")
        if self.batch_size < 1:
            raise SpecError("batch_size", self.batch_size, "must be a positive integer")
        if not 0 < self.lr < math.inf:  # also refuses NaN: every comparison with it is false
            raise SpecError("lr", self.lr, "must be > 0 and finite")
        if not 0 < self.temperature < math.inf:
            raise SpecError("temperature", self.temperature, "must be > 0 and finite")
        check_alpha(self.alpha)


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
        """The first epoch with the highest validation accuracy: its test numbers are the ones reported."""
        if not self.epochs:
            raise ValueError("no epoch has been trained yet")
        return max(self.epochs, key=lambda m: (m.val_accuracy, -m.epoch))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    """Trains ``model`` on ``data.train`` with Adam, one epoch per :meth:`step`.

    The seed fixes the batch order (a ``torch.Generator`` of its own: nothing depends on global RNG state);
    the model's initial weights are fixed by whoever built it (``build_model(..., seed=...)``).
    Without ``teacher`` the loss is plain cross-entropy and ``alpha`` must be 1.

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
        device: torch.device | str | None = None,
        threads: int | None = 1,
    ) -> None:
        if data.task != "classification":
            raise SpecError("dataset.name", data.name, "is a regression task: use kdtune.linear for it")
        if teacher is None and config.alpha != 1.0:
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
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0

    def step(self) -> EpochMetrics:
        """Train one epoch, then evaluate on validation, test and the flipped training samples."""
        start = time.perf_counter()
        train_loss = self._train_epoch()
        self.epoch += 1
        metrics = self.evaluate(train_loss=train_loss)
        metrics.seconds = time.perf_counter() - start
        return metrics

    def _train_epoch(self) -> float:
        self.model.train()
        x, y = self.train_split.x, self.train_split.y
        order = torch.randperm(len(y), generator=self.generator).to(self.device)  # (N,)
        total, count = torch.zeros((), device=self.device), 0
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start : start + self.config.batch_size]
            logits = self.model(x[idx])  # (B, K)
            if self.teacher is None:
                loss = F.cross_entropy(logits, y[idx])
            else:
                loss = kd_loss(logits, self.teacher.train[idx], y[idx], alpha=self.config.alpha,
                               temperature=self.config.temperature)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(idx)  # stays on the device: no sync per step
            count += len(idx)
        return float(total) / count

    @torch.no_grad()
    def evaluate(self, *, train_loss: float = float("nan")) -> EpochMetrics:
        val_logits = predict(self.model, self.val_split.x)
        test_logits = predict(self.model, self.test_split.x)
        test_pred = test_logits.argmax(1)
        per_class, macro_f1 = class_metrics(test_pred, self.test_split.clean, self.num_classes)
        correction = memorisation = None
        flipped = self.train_split.flipped
        if bool(flipped.any()):
            flipped_pred = predict(self.model, self.train_split.x[flipped]).argmax(1)
            correction = float((flipped_pred == self.train_split.clean[flipped]).float().mean())
            memorisation = float((flipped_pred == self.train_split.y[flipped]).float().mean())
        agreement = None
        if self.teacher is not None:
            agreement = float((test_pred == self.teacher.test.argmax(1)).float().mean())
        return EpochMetrics(
            epoch=self.epoch,
            train_loss=train_loss,
            val_loss=float(F.cross_entropy(val_logits, self.val_split.y)),
            val_accuracy=float((val_logits.argmax(1) == self.val_split.y).float().mean()),
            test_loss=float(F.cross_entropy(test_logits, self.test_split.clean)),
            test_accuracy=float((test_pred == self.test_split.clean).float().mean()),
            test_macro_f1=macro_f1,
            test_per_class_accuracy=per_class,
            teacher_agreement=agreement,
            correction_rate=correction,
            memorisation_rate=memorisation,
            seconds=0.0,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit after a restart: weights, optimizer, batch-order RNG, epoch."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


def train_student(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    teacher: TeacherLogits | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | str | None = None,
    threads: int | None = 1,
) -> History:
    """Train for ``config.epochs`` epochs, calling ``on_epoch`` after each, and return the history."""
    trainer = Trainer(model, data, config, teacher=teacher, device=device, threads=threads)
    history = History()
    for _ in range(config.epochs):
        metrics = trainer.step()
        history.epochs.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, in batches; returned on ``x``'s device as float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i : i + batch_size].to(device, non_blocking=True)).float() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).to(x.device) if out else torch.empty(0)


def class_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[list[float], float]:
    """Per-class accuracy (recall) and macro-F1 from a confusion matrix; a class absent from ``target`` counts 0."""
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    confusion = confusion.double()
    tp = confusion.diag()
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    return recall.tolist(), float(f1.mean())


def _to_device(split: Split, device: torch.device) -> Split:
    x = split.x.to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return Split(x=x, y=split.y.to(device), clean=split.clean.to(device), flipped=split.flipped.to(device))
