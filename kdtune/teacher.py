"""Train a teacher, pick its checkpoint, describe its quality, and save or load it safely.

The teacher is trained on the *noisy* training labels, like any model a user would train. Its checkpoint is
chosen on the noisy validation split by default (``select="best_val"``): measured on MNIST with 5% flipped
labels, the reference teacher peaks after ~4 epochs and then memorises the flips, and a last-epoch teacher
makes distillation look harmful for the wrong reason. The selection policy is part of the teacher's identity
(and so of every cache key built on it).

Checkpoints are safetensors (no pickle, nothing executes on load) with a JSON sidecar.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdtune.data import DataBundle
from kdtune.errors import SpecError
from kdtune.models import build_model
from kdtune.models import check_arch
from kdtune.train import EpochMetrics
from kdtune.train import TeacherLogits
from kdtune.train import TrainConfig
from kdtune.train import Trainer
from kdtune.train import predict


TEACHER_SELECT = ("best_val", "final")
DIAGNOSTIC_TEMPERATURES = (1.0, 4.0, 10.0, 20.0)
ECE_BINS = 15


@dataclass(frozen=True)
class TeacherSpec:
    """How a teacher is trained. Every field is part of its identity (and of the cache key)."""

    arch: str = "reference_teacher"
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    select: str = "best_val"
    patience: int | None = None  # stop after this many epochs without a better validation accuracy
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_arch(self.arch, field="teacher.arch")
        if self.select not in TEACHER_SELECT:
            raise SpecError("teacher.select", self.select, f"must be one of {', '.join(TEACHER_SELECT)}")
        if self.patience is not None and self.patience < 1:
            raise SpecError("teacher.patience", self.patience, "must be a positive integer or omitted")
        TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)  # validates the shared fields

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Teacher:
    """A trained (or loaded) teacher with the record of how its checkpoint was chosen."""

    model: nn.Module
    spec: TeacherSpec
    selected_epoch: int
    curve: list[dict[str, float]]  # per epoch: epoch, train_loss, val_loss, val_accuracy, test_accuracy, ...
    data_fingerprint: str

    @property
    def fingerprint(self) -> str:
        return weights_fingerprint(self.model)

    @property
    def selected(self) -> dict[str, float]:
        return self.curve[self.selected_epoch - 1]

    def logits(self, data: DataBundle) -> TeacherLogits:
        """One forward pass over every split: the only place a teacher runs on data."""
        return TeacherLogits(*(predict(self.model, s.x).cpu() for s in (data.train, data.val, data.test)))

    def sidecar(self) -> dict[str, Any]:
        from kdtune import __version__

        return {
            "spec": self.spec.to_dict(),
            "selected_epoch": self.selected_epoch,
            "val_accuracy": self.selected["val_accuracy"],
            "test_accuracy": self.selected["test_accuracy"],
            "curve": self.curve,
            "weights_fingerprint": self.fingerprint,
            "data_fingerprint": self.data_fingerprint,
            "kdtune_version": __version__,
        }


def train_teacher(
    spec: TeacherSpec,
    data: DataBundle,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | str | None = None,
    threads: int | None = 1,
) -> Teacher:
    """Train a teacher with cross-entropy on the noisy labels and keep the checkpoint ``spec.select`` asks for."""
    model = build_model(spec.arch, input_shape=data.input_shape, num_classes=data.num_classes,
                        kwargs=spec.kwargs, field="teacher.arch", seed=spec.seed)
    config = TrainConfig(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size, seed=spec.seed, alpha=1.0)
    trainer = Trainer(model, data, config, device=device, threads=threads)
    curve: list[dict[str, float]] = []
    best_state, best_epoch, best_val = None, 0, -math.inf
    for _ in range(spec.epochs):
        metrics = trainer.step()
        curve.append({k: v for k, v in metrics.as_dict().items() if isinstance(v, (int, float))})
        if on_epoch is not None:
            on_epoch(metrics)
        if metrics.val_accuracy > best_val:
            best_val, best_epoch = metrics.val_accuracy, metrics.epoch
            best_state = copy.deepcopy(model.state_dict()) if spec.select == "best_val" else None
        elif spec.patience is not None and metrics.epoch - best_epoch >= spec.patience:
            break
    if spec.select == "best_val":
        assert best_state is not None  # at least one epoch ran, and val accuracy is never -inf
        model.load_state_dict(best_state)
        selected = best_epoch
    else:
        selected = len(curve)
    return Teacher(model=model.cpu(), spec=spec, selected_epoch=selected, curve=curve,
                   data_fingerprint=data.fingerprint())


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of the weights (names, shapes, dtypes, values): equal fingerprints, equal logits."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def teacher_to_bytes(teacher: Teacher) -> tuple[bytes, bytes]:
    """The checkpoint as (safetensors bytes, JSON sidecar bytes)."""
    from safetensors.torch import save

    weights = save({k: v.detach().cpu().contiguous() for k, v in teacher.model.state_dict().items()})
    return weights, json.dumps(teacher.sidecar(), indent=2, sort_keys=True).encode()


def teacher_from_bytes(weights: bytes, sidecar: bytes, data: DataBundle) -> Teacher:
    """Rebuild a teacher from its checkpoint for ``data`` (which fixes the input shape and class count)."""
    from safetensors.torch import load

    meta = json.loads(sidecar)
    spec = TeacherSpec(**meta["spec"])
    model = build_model(spec.arch, input_shape=data.input_shape, num_classes=data.num_classes,
                        kwargs=spec.kwargs, field="teacher.arch")
    model.load_state_dict(load(weights))
    teacher = Teacher(model=model, spec=spec, selected_epoch=meta["selected_epoch"], curve=meta["curve"],
                      data_fingerprint=meta["data_fingerprint"])
    if teacher.fingerprint != meta["weights_fingerprint"]:
        raise ValueError("teacher weights do not match the fingerprint recorded in their sidecar")
    return teacher


def save_teacher(teacher: Teacher, path: str | Path) -> None:
    """Write ``path`` (safetensors) and ``path`` with suffix ``.json`` (sidecar)."""
    weights, sidecar = teacher_to_bytes(teacher)
    path = Path(path)
    path.write_bytes(weights)
    path.with_suffix(".json").write_bytes(sidecar)


def load_teacher(path: str | Path, data: DataBundle) -> Teacher:
    path = Path(path)
    return teacher_from_bytes(path.read_bytes(), path.with_suffix(".json").read_bytes(), data)


def teacher_diagnostics(
    logits: TeacherLogits, data: DataBundle, *, temperatures: tuple[float, ...] = DIAGNOSTIC_TEMPERATURES
) -> dict[str, Any]:
    """How good and how safe a teacher is to distil from, computed once from its logits.

    * ``test_accuracy`` (clean labels), ``val_accuracy`` (noisy labels, what selection saw);
    * ``correction_rate`` / ``memorisation_rate``: on the training samples whose labels were flipped, the
      share it predicts as the clean / the noisy label (None without flips);
    * ``ece``: expected calibration error on test (15 equal-width confidence bins);
    * ``entropy``: mean entropy of softmax(logits / T) on test, as a share of log K, per temperature
      (near 1 the soft targets are almost uniform and carry little information).
    """
    test_prob = torch.softmax(logits.test, dim=1)
    confidence, test_pred = test_prob.max(1)
    correct = (test_pred == data.test.clean).double()
    ece = 0.0
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += float(in_bin.double().mean() * (confidence[in_bin].double().mean() - correct[in_bin].mean()).abs())
    flipped = data.train.flipped
    correction = memorisation = None
    if bool(flipped.any()):
        flipped_pred = logits.train[flipped].argmax(1)
        correction = float((flipped_pred == data.train.clean[flipped]).double().mean())
        memorisation = float((flipped_pred == data.train.y[flipped]).double().mean())
    log_k = math.log(data.num_classes)
    entropy = {}
    for t in temperatures:
        log_p = torch.log_softmax(logits.test / t, dim=1)
        entropy[str(t)] = float(-(log_p.exp() * log_p).sum(1).mean() / log_k)
    return {
        "test_accuracy": float(correct.mean()),
        "val_accuracy": float((logits.val.argmax(1) == data.val.y).double().mean()),
        "correction_rate": correction,
        "memorisation_rate": memorisation,
        "ece": ece,
        "entropy": entropy,
    }
