"""Task-agnostic data: the three splits of a dataset, their fingerprints, and subsetting, splitting and label noise.

Data that fit in memory are held once as CPU tensors: the training loop slices these tensors with a per-epoch
permutation instead of going through a per-item ``Dataset``/``DataLoader``, which costs 50-100x more per batch on a
CPU (``docs/architecture.md``, Performance). Image datasets beyond memory keep their images on disk
(:class:`~kdtune.core.images.DiskImages`) and everything else (labels, splits, noise) here: the splits and the noise
are drawn from the labels alone (:func:`split_labels`), so both paths split, subset and flip alike. Where the
arrays come from is each task's business (:mod:`kdtune.tasks.datasets` dispatches by name); this module is what
they all share, so it imports no task.

Splits (:func:`split_pool`):
  * train: a seeded, class-stratified subset of the training pool (``train_size``), minus
  * validation: a seeded, class-stratified ``val_fraction`` of it. Train and validation carry the same label
    noise (a user selecting on validation only has noisy labels too);
  * test: the given test set, always clean.

Label noise flips exactly ``round(rate * n)`` labels of train and of validation, each to a *different* class
(``symmetric``: uniformly among the other classes; ``pairflip``: y -> (y - 1) mod K). Clean labels and the
boolean ``flipped`` mask are kept so that correction and memorisation of flipped labels can be measured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from typing import Literal

import numpy as np
import torch

from kdtune.core.images import DiskImages
from kdtune.core.images import Images
from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.errors import one_line


#: Bumped whenever loading or normalisation changes, so that cache keys built on old arrays go stale.
PREPROCESSING_VERSION = 1

NOISE_TYPES = ("symmetric", "pairflip")

Task = Literal["classification", "regression"]

#: A classification pool as a task's loader returns it: x_pool, y_pool, x_test, y_test, num_classes; the inputs are
#: arrays, or images on disk (:class:`~kdtune.core.images.DiskImages`).
Pool = tuple[np.ndarray | DiskImages, np.ndarray, np.ndarray | DiskImages, np.ndarray, int]


@dataclass(frozen=True)
class Split:
    """One split, as tensors on the CPU.

    ``y`` is what training and model selection see (noisy on train and validation); ``clean`` is the truth.
    For regression ``y`` is the observed target and ``clean`` the noise-free one (x · w*).
    """

    x: Images  # (N, C, H, W) float32 in [0, 1] (a tensor, or DiskImages on disk); (N, D) for the linear task
    y: torch.Tensor  # (N,) int64 class labels, or float32 targets for regression
    clean: torch.Tensor  # (N,) same dtype as y
    flipped: torch.Tensor  # (N,) bool

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class LinearTruth:
    """The generating weights of the synthetic linear task, needed for teacher construction and for α*."""

    weights: np.ndarray  # (D,) float64
    noise_std: float


@dataclass(frozen=True)
class DataBundle:
    """A loaded dataset: three splits plus what describes them."""

    name: str
    task: Task
    num_classes: int  # 1 for regression (one output)
    input_shape: tuple[int, ...]
    train: Split
    val: Split
    test: Split
    description: dict[str, Any]  # the arguments that produced it; goes into cache metadata and results
    linear_truth: LinearTruth | None = None

    def fingerprint(self) -> str:
        """A hash of the content: samples, clean and noisy labels of every split, and the preprocessing version.

        Two bundles with the same fingerprint are interchangeable for a teacher or a logit cache entry,
        whatever the options that produced them.
        """
        h = hashlib.sha256(f"kdtune-data-v{PREPROCESSING_VERSION}:{self.task}:{self.num_classes}".encode())
        for split in (self.train, self.val, self.test):
            for t in (split.x, split.y, split.clean):
                _hash_into(h, t)
        return h.hexdigest()[:32]

    def samples_fingerprint(self) -> str:
        """A hash of the samples and clean labels of every split, without the (noisy) training labels.

        Equal for every noise level and noise type of one dataset, subset and split: what imported teacher
        logits (``kdtune cache import``) are tied to, since an outside teacher's logits depend on the inputs only.
        """
        h = hashlib.sha256(f"kdtune-samples-v{PREPROCESSING_VERSION}:{self.task}:{self.num_classes}".encode())
        for split in (self.train, self.val, self.test):
            for t in (split.x, split.clean):
                _hash_into(h, t)
        return h.hexdigest()[:32]


def _hash_into(h: Any, t: Images) -> None:
    """A tensor's shape and bytes; for images on disk their source's identity and positions (not the pixels:
    reading them all would cost what the disk path avoids), so the two paths' fingerprints differ."""
    h.update(str(tuple(t.shape)).encode())
    h.update(t.identity() if isinstance(t, DiskImages) else t.contiguous().numpy().tobytes())


def check_split_args(val_fraction: float, noise_level: float, noise_type: str, train_size: int | None) -> None:
    """Refuse bad subset, split and noise options before any data is read."""
    if not 0.0 <= noise_level < 1.0:
        raise SpecError("noise_level", noise_level, "must be in [0, 1) (share of train/validation labels flipped)")
    if noise_type not in NOISE_TYPES:
        raise SpecError("noise_type", noise_type, f"must be one of {', '.join(NOISE_TYPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise SpecError("dataset.val_fraction", val_fraction, "must be in (0, 1)")
    if train_size is not None and train_size < 10:
        raise SpecError("dataset.train_size", train_size, "must be at least 10 (or omitted for the whole set)")


def split_pool(name: str, pool: Pool, *, train_size: int | None, val_fraction: float, noise_level: float,
               noise_type: str, seed: int, description: dict[str, Any]) -> DataBundle:
    """Subset the training pool, split off validation and flip labels (:func:`split_labels`); fully determined by
    the arguments."""
    x_pool, y_pool, x_test, y_test, num_classes = pool
    drawn = split_labels(name, y_pool, num_classes, train_size=train_size, val_fraction=val_fraction,
                         noise_level=noise_level, noise_type=noise_type, seed=seed)
    splits = [_split(x_pool.subset(s.index) if isinstance(x_pool, DiskImages) else x_pool[s.index], s.noisy, s.clean,
                     s.flipped) for s in drawn]
    test = _split(x_test, y_test, y_test, np.zeros(len(y_test), dtype=bool))
    return DataBundle(
        name=name,
        task="classification",
        num_classes=num_classes,
        input_shape=tuple(x_pool.shape[1:]),
        train=splits[0],
        val=splits[1],
        test=test,
        description=description,
    )


@dataclass(frozen=True)
class LabelSplit:
    """One split drawn from a pool's labels: the pool positions it takes (ascending), its noisy labels, its clean
    labels and which of them were flipped."""

    index: np.ndarray
    noisy: np.ndarray
    clean: np.ndarray
    flipped: np.ndarray


def split_labels(name: str, y_pool: np.ndarray, num_classes: int, *, train_size: int | None, val_fraction: float,
                 noise_level: float, noise_type: str, seed: int) -> tuple[LabelSplit, LabelSplit]:
    """Train and validation drawn from the pool's labels alone: the subset, the split and the noise.

    Each step has its own random stream of ``seed`` (subset, split, train noise, validation noise), so changing
    one option never redraws what another decided; what it draws does not depend on where the images are.
    """
    keep = np.arange(len(y_pool))
    if train_size is not None:
        if train_size > len(y_pool):
            raise SpecError("dataset.train_size", train_size, f"must be at most {len(y_pool)} for {name}")
        keep = stratified_take(y_pool, train_size, np.random.default_rng([seed, 0]), name)
    y_kept = y_pool[keep]
    val_idx = stratified_take(y_kept, max(1, round(val_fraction * len(y_kept))), np.random.default_rng([seed, 1]),
                              name)
    is_val = np.zeros(len(y_kept), dtype=bool)
    is_val[val_idx] = True
    splits = []
    for stream, mask in ((2, ~is_val), (3, is_val)):
        noisy, flipped = flip_labels(y_kept[mask], noise_level, noise_type, num_classes, np.random.default_rng([seed, stream]))
        splits.append(LabelSplit(keep[mask], noisy, y_kept[mask], flipped))
    return splits[0], splits[1]


def flip_labels(
    labels: np.ndarray, rate: float, noise_type: str, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * len(labels))`` labels, each to a different class.

    Returns the noisy labels and the boolean mask of flipped positions; ``labels`` is not modified.
    """
    n_flip = round(rate * len(labels))
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=n_flip, replace=False)] = True
    noisy = labels.copy()
    if noise_type == "symmetric":
        # An offset in 1..K-1 is uniform over the K-1 other classes and can never give back the same class.
        offsets = rng.integers(1, num_classes, size=n_flip)
        noisy[flipped] = (labels[flipped] + offsets) % num_classes
    else:  # pairflip
        noisy[flipped] = (labels[flipped] - 1) % num_classes
    return noisy, flipped


def stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator, name: str = "dataset") -> np.ndarray:
    """Indices of ``n`` samples drawn without replacement, each class in proportion to its frequency."""
    from sklearn.model_selection import train_test_split

    if n >= len(labels):
        return np.arange(len(labels))
    try:
        idx, _ = train_test_split(
            np.arange(len(labels)), train_size=n, stratify=labels, random_state=int(rng.integers(2**31 - 1))
        )
    except ValueError as exc:  # too few samples of a class, or fewer samples than classes
        raise DataError(f"{name}: cannot take a stratified sample of {n} of {len(labels)}: {one_line(exc)}") from None
    return np.sort(idx)


def _split(x: np.ndarray | DiskImages, y: np.ndarray, clean: np.ndarray, flipped: np.ndarray) -> Split:
    return Split(
        x=x if isinstance(x, DiskImages) else torch.from_numpy(np.ascontiguousarray(x)),
        y=torch.from_numpy(y.astype(np.int64)),
        clean=torch.from_numpy(clean.astype(np.int64)),
        flipped=torch.from_numpy(flipped),
    )
