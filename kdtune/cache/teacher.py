"""Train a teacher, pick its checkpoint, and save or load it safely (its quality: :mod:`kdtune.core.metrics`).

The teacher is trained on the *noisy* training labels, like any model a user would train. Its checkpoint is
chosen on the noisy validation split by default (``select="best_val"``): measured on MNIST with 5% flipped
labels, the reference teacher peaks after ~4 epochs and then memorises the flips, and a last-epoch teacher
makes distillation look harmful for the wrong reason. ``select="best_val_loss"`` keeps the epoch of the lowest
validation cross-entropy instead: on 1,000 validation images accuracy moves in steps of 0.1% (the top epochs
often tie or differ by one or two images), while the loss moves with every image's confidence. The selection
policy is part of the teacher's identity (and so of every cache key built on it).

A teacher *recipe* (optimizer, weight decay, learning-rate schedule with warm-up, augmentation; dropout is a
model kwarg) is part of the spec and of the key too; fields left at their defaults are left out of
:meth:`TeacherSpec.to_dict`, so the keys of teachers cached before recipes existed do not change.

An *ensemble* teacher (``ensemble = N``) is N members trained alike with seeds ``seed``, ``seed + 1``, ...; its
logits are the mean of the members' logits. Averaging logits, not probabilities, keeps one teacher at every
temperature: softmax(mean z / T) is the normalised geometric mean of the members' softmax(z / T), whereas the
log of the mean probability, divided by T, is not the mean of the members' softened targets at any T but 1. The
ensemble is one cache entry (one weights file holding every member) with each member's record.

Checkpoints are safetensors (no pickle, nothing executes on load) with a JSON sidecar.

A teacher can also be *given* (``docs/byo.md``): ``TeacherSpec.checkpoint`` loads a user's weights into
``arch`` (safetensors, or a state dict read with ``torch.load(weights_only=True)``; never an arbitrary pickle)
and trains nothing; ``TeacherSpec.logits`` names logits imported into the cache, with no teacher model at all.
Every model a user brings is run on one batch before anything trains (:func:`build_checked`), so a wrong output
shape is one clear line instead of a failure deep inside a study.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Literal

import torch
from torch import nn

from kdtune.core.augment import Augment
from kdtune.core.data import DataBundle
from kdtune.core.images import head
from kdtune.core.metrics import held_out_metrics
from kdtune.core.train import EpochMetrics
from kdtune.core.train import TeacherLogits
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.core.train import predict
from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.image.files import read_bytes
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.models import check_arch


TEACHER_SELECT = ("best_val", "best_val_loss", "final")
#: Recipe fields of TeacherSpec, left out of its identity while they hold these defaults (keys stay as they were).
RECIPE_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant",
                                   "warmup_epochs": 0, "augment": None, "ensemble": 1, "precision": "fp32"}
CHECK_BATCH = 4  # samples in the one batch every model is checked on before training


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
    checkpoint: str | None = None  # a user's weights for ``arch`` (local path or URI): nothing is trained
    logits: str | None = None  # a logits entry imported with ``kdtune cache import``: no teacher model
    optimizer: Literal["adam", "sgd"] = "adam"  # checked by TrainConfig (config(), called on construction)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: int = 0
    augment: Augment | None = None  # also accepted as a mapping {shift, rotate}
    ensemble: int = 1  # members, seeds seed .. seed + ensemble - 1; the teacher is the mean of their logits
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # CUDA autocast (a CPU trains in fp32: for_device)
    compile: bool = False  # torch.compile on CUDA: how the steps run, not what they compute; not part of the key

    def __post_init__(self) -> None:
        check_arch(self.arch, field="teacher.arch")
        if self.select not in TEACHER_SELECT:
            raise SpecError("teacher.select", self.select, f"must be one of {', '.join(TEACHER_SELECT)}")
        if self.patience is not None and self.patience < 1:
            raise SpecError("teacher.patience", self.patience, "must be a positive integer or omitted")
        for name in ("lr", "momentum", "weight_decay"):  # 1 and 1.0 are one teacher (and one cache key)
            if isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool):
                object.__setattr__(self, name, float(getattr(self, name)))
        if self.ensemble < 1:
            raise SpecError("teacher.ensemble", self.ensemble, "must be a positive integer (the number of members)")
        try:
            if isinstance(self.augment, dict):
                unknown = sorted(set(self.augment) - {f.name for f in fields(Augment)})
                if unknown:
                    raise SpecError("augment", self.augment, "takes shift, rotate, crop, padding, scale, ratio and "
                                    "flip only")
                object.__setattr__(self, "augment", Augment(**self.augment))
            if self.augment is not None and not self.augment.active:
                object.__setattr__(self, "augment", None)  # a no-op augmentation is no augmentation (same key)
            self.config()  # validates the shared fields
        except SpecError as exc:
            raise SpecError(f"teacher.{exc.field}", exc.value, exc.allowed) from None

    def config(self, seed: int | None = None) -> TrainConfig:
        """The training config of the member with ``seed`` (default: the spec's seed)."""
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                           seed=self.seed if seed is None else seed, alpha=1.0, optimizer=self.optimizer,
                           momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                           warmup_epochs=self.warmup_epochs, augment=self.augment, precision=self.precision,
                           compile=self.compile)

    def for_device(self, device: torch.device | str | None) -> TeacherSpec:
        """This spec as ``device`` (default: CUDA when available) trains it: a CPU trains in fp32 whatever
        ``precision`` says (:func:`kdtune.core.train.gpu_execution`), so the cache key names the precision that ran
        and a GPU study never reuses a CPU-trained teacher as a bf16 one."""
        from kdtune.core.train import default_device

        where = torch.device(device) if device is not None else default_device()
        return self if where.type == "cuda" or self.precision == "fp32" else replace(self, precision="fp32")

    @property
    def source(self) -> str:
        """``trained`` (by kdtune), ``checkpoint`` (the user's weights) or ``imported`` (the user's logits)."""
        return "imported" if self.logits else "checkpoint" if self.checkpoint else "trained"

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``checkpoint`` and ``logits`` only when set, so keys of trained teachers never change."""
        d = asdict(self)
        if self.augment is not None:  # shift and rotate, and crops and flips only where set: older keys stay
            d["augment"] = self.augment.to_dict()
        del d["compile"]
        for name in ("checkpoint", "logits"):
            if d[name] is None:
                del d[name]
        drop = [name for name, default in RECIPE_DEFAULTS.items() if d[name] == default]
        if d["optimizer"] != "sgd":
            drop.append("momentum")  # momentum means nothing to adam
        for name in set(drop):
            del d[name]
        return d


@dataclass
class Teacher:
    """A trained (or loaded) teacher with the record of how its checkpoint was chosen."""

    model: nn.Module
    spec: TeacherSpec
    selected_epoch: int
    curve: list[dict[str, float]]  # per epoch: epoch, train_loss, val_loss, val_accuracy, test_accuracy, ...
    data_fingerprint: str
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's members: seed, selected_epoch, curve
    # The selected checkpoint's logits on its training data, where training computed them (measuring the kept epoch):
    # logits() returns them instead of running the teacher over every split a second time.
    computed_logits: TeacherLogits | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        return weights_fingerprint(self.model)

    @property
    def selected(self) -> dict[str, float]:
        """The curve's row of the selected epoch (a given teacher's single row has epoch 0)."""
        for row in self.curve:
            if row.get("epoch") == self.selected_epoch:
                return row
        return self.curve[self.selected_epoch - 1]

    def logits(self, data: DataBundle) -> TeacherLogits:
        """One forward pass over every split: the only place a teacher runs on data (none when training computed
        them for this very data)."""
        if self.computed_logits is not None and data.fingerprint() == self.data_fingerprint:
            return self.computed_logits
        return teacher_logits(self.model, data)

    def sidecar(self) -> dict[str, Any]:
        from kdtune._version import __version__

        return {
            "spec": self.spec.to_dict(),
            "selected_epoch": self.selected_epoch,
            "val_accuracy": self.selected["val_accuracy"],
            "test_accuracy": self.selected["test_accuracy"],
            "curve": self.curve,
            "weights_fingerprint": self.fingerprint,
            "data_fingerprint": self.data_fingerprint,
            "kdtune_version": __version__,
            **({"members": self.members} if self.members else {}),
        }


def teacher_logits(model: nn.Module, data: DataBundle) -> TeacherLogits:
    """``model``'s logits on every split of ``data`` (CPU float32)."""
    return TeacherLogits(*(predict(model, s.x).cpu() for s in (data.train, data.val, data.test)))


class EnsembleModel(nn.Module):
    """The mean of its members' logits (see the module docstring for why logits and not probabilities)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def train_teacher(
    spec: TeacherSpec,
    data: DataBundle,
    *,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    device: torch.device | str | None = None,
    threads: int | None = 1,
    full_curve: bool = False,
) -> Teacher:
    """Train a teacher with cross-entropy on the noisy labels and keep the checkpoint ``spec.select`` asks for.

    Selection needs the validation split alone, so each epoch is evaluated on it alone, and the metrics that
    need the test split or the flipped training samples are measured once, for the selected checkpoint, from its
    logits on every split (its curve row has them; the other rows have epoch, losses, validation accuracy and
    seconds); :meth:`Teacher.logits` hands those logits on, so the cache runs no second pass. ``full_curve``
    measures them at every epoch instead (what ``on_epoch`` sees then has them too). On 10k MNIST images the test
    split's forward pass is about a third of a training epoch's arithmetic (one pass over 10,000 test images
    against forward and backward passes over 9,000 training images). Either way the teacher is the same.

    The model's output shape is checked on one batch before training starts (:func:`build_checked`). An
    ensemble trains its members one after the other (``on_epoch`` sees every member's epochs); its curve is one
    row (epoch 0) with the ensemble's validation and test accuracy, and ``members`` keeps each member's.
    """
    if spec.source != "trained":
        raise SpecError("teacher", spec.source, "is given (checkpoint or imported logits): it is not trained")
    if spec.augment is not None and data.train.x.dim() != 4:
        raise SpecError("teacher.augment", asdict(spec.augment), f"needs image inputs (C, H, W); dataset {data.name!r} "
                        f"has inputs of shape {tuple(data.input_shape)}")
    seeds = [spec.seed + i for i in range(spec.ensemble)]
    models = [build_checked(spec.arch, data, kwargs=spec.kwargs, field="teacher.arch", seed=seed) for seed in seeds]
    trained = [_train_member(spec, model, data, seed, on_epoch=on_epoch, device=device, threads=threads,
                             full_curve=full_curve) for seed, model in zip(seeds, models)]
    if spec.ensemble == 1:
        selected, curve, logits = trained[0]
        return Teacher(model=models[0].cpu(), spec=spec, selected_epoch=selected, curve=curve,
                       data_fingerprint=data.fingerprint(), computed_logits=logits)
    ensemble = EnsembleModel([model.cpu() for model in models])
    val, test = predict(ensemble, data.val.x), predict(ensemble, data.test.x)
    row = {"epoch": 0, "val_accuracy": float((val.argmax(1) == data.val.y).float().mean()),
           "val_loss": float(torch.nn.functional.cross_entropy(val, data.val.y)),
           "test_accuracy": float((test.argmax(1) == data.test.clean).float().mean())}
    members = [{"seed": seed, "selected_epoch": selected, "curve": curve}
               for seed, (selected, curve, _) in zip(seeds, trained)]
    return Teacher(model=ensemble, spec=spec, selected_epoch=0, curve=[row], data_fingerprint=data.fingerprint(),
                   members=members)


def _train_member(spec: TeacherSpec, model: nn.Module, data: DataBundle, seed: int, *,
                  on_epoch: Callable[[EpochMetrics], None] | None, device: torch.device | str | None,
                  threads: int | None, full_curve: bool
                  ) -> tuple[int, list[dict[str, float]], TeacherLogits | None]:
    """Train one model in place with ``spec``'s recipe and ``seed``; leave it at the selected epoch.

    Returns the selected epoch, the curve (see :func:`train_teacher` for what its rows hold) and, without
    ``full_curve``, the selected checkpoint's logits on every split of ``data`` (from which its row's test and
    flipped-label numbers are measured: one forward pass, which the cache then reuses). Selection (and
    ``patience``) follow ``spec.select``: the highest validation accuracy (first such epoch) or the lowest
    validation loss; ``final`` keeps the last epoch.
    """
    trainer = Trainer(model, data, spec.config(seed), device=device, threads=threads)
    curve: list[dict[str, float]] = []
    best_state, best_epoch, best_score = None, 0, -math.inf
    for _ in range(spec.epochs):
        metrics = trainer.step(val_only=not full_curve)
        curve.append(_curve_row(metrics, VAL_ONLY_FIELDS if not full_curve else None))
        if on_epoch is not None:
            on_epoch(metrics)
        score = -metrics.val_loss if spec.select == "best_val_loss" else metrics.val_accuracy
        if best_epoch == 0 or score > best_score:  # the first epoch always counts (its loss may be NaN)
            best_score, best_epoch = score, metrics.epoch
            best_state = copy.deepcopy(model.state_dict()) if spec.select != "final" else None
        elif spec.patience is not None and metrics.epoch - best_epoch >= spec.patience:
            break
    if spec.select != "final":
        assert best_state is not None  # at least one epoch ran
        model.load_state_dict(best_state)
    else:
        best_epoch = len(curve)
    if full_curve:
        return best_epoch, curve, None
    logits = teacher_logits(model, data)  # the rest of the selected epoch's row, measured once
    flipped = data.train.flipped
    flipped_pred = logits.train[flipped].argmax(1) if bool(flipped.any()) else None
    measured = held_out_metrics(logits.test, flipped_pred, data.test, data.train, data.num_classes)
    curve[best_epoch - 1].update({k: v for k, v in measured.items() if isinstance(v, (int, float))})
    return best_epoch, curve, logits


#: What a teacher's curve row holds at the epochs that were evaluated on the validation split alone.
VAL_ONLY_FIELDS = ("epoch", "train_loss", "val_loss", "val_accuracy", "seconds")


def _curve_row(metrics: EpochMetrics, fields: tuple[str, ...] | None = None) -> dict[str, float]:
    """The numbers of ``metrics`` (``fields`` only, when given) as a curve row."""
    return {k: v for k, v in metrics.as_dict().items()
            if isinstance(v, (int, float)) and (fields is None or k in fields)}


def build_checked(arch: str, data: DataBundle, *, kwargs: dict[str, Any] | None = None, field: str = "arch",
                  seed: int | None = 0) -> nn.Module:
    """Build ``arch`` for ``data`` and run it on one batch; one-line :class:`SpecError` if anything is off.

    Refused: an import path that does not import or is not callable, a factory call that fails or returns no
    ``nn.Module``, a forward pass that fails, and outputs that are not float logits of shape
    (batch, num_classes). Returns the model (its weights are untouched by the check).
    """
    from kdtune.tasks.image.models import resolve_factory

    resolve_factory(arch, field=field)  # import errors first, with their own message
    try:
        model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes, kwargs=kwargs,
                            field=field, seed=seed)
    except SpecError:
        raise
    except (Exception, SystemExit) as exc:  # the user's factory (sys.exit in it included)
        call = f"factory({tuple(data.input_shape)}, {data.num_classes}{_kwargs_text(kwargs)})"
        raise SpecError(field, arch, f"failed when called as {call}: {type(exc).__name__}: {one_line(exc)}") from None
    check_output(model, data, arch=arch, field=field)
    return model


def check_output(model: nn.Module, data: DataBundle, *, arch: str, field: str) -> None:
    """Run ``model`` on the first :data:`CHECK_BATCH` training samples (eval mode, no gradient) and check the
    output is a float tensor of shape (batch, num_classes)."""
    x = head(data.train.x, CHECK_BATCH)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except Exception as exc:  # the user's forward
        raise SpecError(field, arch, f"failed on a batch of shape {tuple(x.shape)}: {type(exc).__name__}: "
                        f"{one_line(exc)}") from None
    finally:
        model.train(was_training)
    expected = (len(x), data.num_classes)
    if not isinstance(out, torch.Tensor):
        raise SpecError(field, arch, f"returned {type(out).__name__} from forward; expected a tensor of shape "
                        f"{expected} (logits for {data.num_classes} classes)")
    if tuple(out.shape) != expected:
        raise SpecError(field, arch, f"returned outputs of shape {tuple(out.shape)}; expected {expected} logits for "
                        f"{data.num_classes} classes")
    if not out.is_floating_point():
        raise SpecError(field, arch, f"returned {out.dtype} outputs; expected float logits")


def load_checkpoint_teacher(spec: TeacherSpec, data: DataBundle, *, check: bool = True) -> Teacher:
    """The teacher of ``spec.checkpoint``: ``spec.arch`` (+ ``kwargs``) built for ``data`` with those weights.

    The file is safetensors, or a state dict (optionally under a ``state_dict`` key) that
    ``torch.load(..., weights_only=True)`` reads: arbitrary pickles are refused. Nothing is trained; the curve
    is empty until the cache fills in the accuracies it measures (epoch 0). With ``check`` the output shape is
    checked on one batch (the cache skips that on a hit, where the logits exist already).
    """
    assert spec.checkpoint is not None
    state = _state_dict(read_bytes(spec.checkpoint, field="teacher.checkpoint"), spec.checkpoint)
    model = build_model(spec.arch, input_shape=data.input_shape, num_classes=data.num_classes, kwargs=spec.kwargs,
                        field="teacher.arch", seed=0)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SpecError("teacher.checkpoint", spec.checkpoint, f"does not fit teacher.arch = {spec.arch!r}: "
                        f"{one_line(exc)}"[:600]) from None
    if check:
        check_output(model, data, arch=spec.arch, field="teacher.arch")
    return Teacher(model=model, spec=spec, selected_epoch=0, curve=[], data_fingerprint=data.fingerprint())


def given_curve(diagnostics: dict[str, Any]) -> list[dict[str, float]]:
    """The one-row curve of a teacher that was not trained here: its measured accuracies at epoch 0."""
    return [{"epoch": 0, "val_accuracy": diagnostics["val_accuracy"], "test_accuracy": diagnostics["test_accuracy"]}]


def _state_dict(raw: bytes, path: str) -> dict[str, torch.Tensor]:
    if path.lower().endswith(".safetensors") or _looks_like_safetensors(raw):
        from safetensors.torch import load

        try:
            return load(raw)
        except Exception as exc:
            raise SpecError("teacher.checkpoint", path,
                            f"is not a readable safetensors file ({one_line(exc)})") from None
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # arbitrary pickles end here: weights_only refuses anything but tensors and containers
        lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
        reason = next((line for line in lines if "Unsupported global" in line), lines[0] if lines else
                      type(exc).__name__)
        raise SpecError("teacher.checkpoint", path, "is neither safetensors nor a state dict that "
                        f"torch.load(weights_only=True) accepts ({reason[:300]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise SpecError("teacher.checkpoint", path, f"holds {type(obj).__name__}, not a state dict (parameter names "
                        "mapped to tensors)")
    return obj


def _looks_like_safetensors(raw: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    if len(raw) < 10:
        return False
    n = int.from_bytes(raw[:8], "little")
    return raw[8:9] == b"{" and 8 + n <= len(raw)


def _kwargs_text(kwargs: dict[str, Any] | None) -> str:
    return "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items())


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
    members = [build_model(spec.arch, input_shape=data.input_shape, num_classes=data.num_classes,
                           kwargs=spec.kwargs, field="teacher.arch") for _ in range(spec.ensemble)]
    model = members[0] if spec.ensemble == 1 else EnsembleModel(members)
    model.load_state_dict(load(weights))
    teacher = Teacher(model=model, spec=spec, selected_epoch=meta["selected_epoch"], curve=meta["curve"],
                      data_fingerprint=meta["data_fingerprint"], members=meta.get("members", []))
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
