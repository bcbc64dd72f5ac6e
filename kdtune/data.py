"""Datasets, their train/validation/test splits, and label noise with a record of every flip.

Everything is loaded once into tensors and normalised once (pixels / 255, as in the Keras KD tutorial):
the training loop slices these tensors with a per-epoch permutation instead of going through a per-item
``Dataset``/``DataLoader``, which costs 50-100x more per batch on a CPU (see ``docs/performance.md``).

Splits:
  * train: a seeded, class-stratified subset of the official training set (``train_size``), minus
  * validation: a seeded, class-stratified ``val_fraction`` of it. Train and validation carry the same label
    noise (a user selecting on validation only has noisy labels too);
  * test: the official test set, always clean.

Label noise flips exactly ``round(rate * n)`` labels of train and of validation, each to a *different* class
(``symmetric``: uniformly among the other classes; ``pairflip``: y -> (y - 1) mod K). Clean labels and the
boolean ``flipped`` mask are kept so that correction and memorisation of flipped labels can be measured.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
import torch

from kdtune.errors import DataError
from kdtune.errors import SpecError


#: Bumped whenever loading or normalisation changes, so that cache keys built on old arrays go stale.
PREPROCESSING_VERSION = 1

IMAGE_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
DATASETS = ("digits", *IMAGE_DATASETS, "linear")
NOISE_TYPES = ("symmetric", "pairflip")
DIGITS_TEST_FRACTION = 0.2
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """One split, as tensors on the CPU.

    ``y`` is what training and model selection see (noisy on train and validation); ``clean`` is the truth.
    For regression ``y`` is the observed target and ``clean`` the noise-free one (x · w*).
    """

    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]; (N, D) for the linear task
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
                h.update(str(tuple(t.shape)).encode())
                h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:32]


def default_data_root() -> Path:
    """``$KDTUNE_DATA_ROOT``, else ``$XDG_CACHE_HOME/kdtune/datasets`` (``~/.cache/kdtune/datasets``)."""
    if os.environ.get("KDTUNE_DATA_ROOT"):
        return Path(os.environ["KDTUNE_DATA_ROOT"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kdtune" / "datasets"


def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = False,
    train_size: int | None = None,
    val_fraction: float = 0.1,
    noise_level: float = 0.0,
    noise_type: str = "symmetric",
    seed: int = 0,
    linear: dict[str, Any] | None = None,
) -> DataBundle:
    """Load ``name``, subset and split it, and flip labels; fully determined by the arguments.

    Args:
        name: one of :data:`DATASETS`.
        data_root: folder holding torchvision's layout (``MNIST/raw/*.gz``); see :func:`default_data_root`.
        download: allow torchvision to download missing files. Without it, missing files are an error.
        train_size: number of training + validation images taken from the official training set
            (stratified); ``None`` keeps all. Ignored for ``linear`` (its sizes are in ``linear``).
        val_fraction: share of those held out for validation, stratified by class, in (0, 1).
        noise_level: share of train and validation labels flipped, in [0, 1).
        noise_type: ``symmetric`` or ``pairflip``.
        seed: the data seed: subset, split and noise draw (teacher and student seeds are separate).
        linear: options of the synthetic linear task (see :func:`make_linear`).
    """
    check_data_args(name, val_fraction, noise_level, noise_type, train_size)
    description = {
        "name": name,
        "train_size": train_size,
        "val_fraction": val_fraction,
        "noise_level": noise_level,
        "noise_type": noise_type,
        "seed": seed,
    }
    if name == "linear":
        return make_linear(seed=seed, **(linear or {}))
    if name == "digits":
        x_pool, y_pool, x_test, y_test = _load_digits()
    else:
        x_pool, y_pool, x_test, y_test = _load_idx_dataset(name, Path(data_root or default_data_root()), download)
    num_classes = int(y_pool.max()) + 1
    if train_size is not None:
        if train_size > len(y_pool):
            raise SpecError("dataset.train_size", train_size, f"must be at most {len(y_pool)} for {name}")
        keep = _stratified_take(y_pool, train_size, np.random.default_rng([seed, 0]))
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    val_idx = _stratified_take(y_pool, max(1, round(val_fraction * len(y_pool))), np.random.default_rng([seed, 1]))
    is_val = np.zeros(len(y_pool), dtype=bool)
    is_val[val_idx] = True
    splits = []
    for stream, mask in ((2, ~is_val), (3, is_val)):
        noisy, flipped = flip_labels(y_pool[mask], noise_level, noise_type, num_classes, np.random.default_rng([seed, stream]))
        splits.append(_split(x_pool[mask], noisy, y_pool[mask], flipped))
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


def make_linear(
    *,
    dim: int = 20,
    n_train: int = 200,
    n_val: int = 20000,
    n_test: int = 20000,
    noise_std: float = 1.0,
    seed: int = 0,
) -> DataBundle:
    """Synthetic regression: x ~ N(0, I_dim), y = x · w* + ε with ε ~ N(0, noise_std²), w* ~ N(0, I/dim).

    The validation split is separate and large by default, because the differences between alpha values on
    this task are of the order of σ²·dim/n_train and must not drown in validation noise.
    """
    for field, value in (("dim", dim), ("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 1:
            raise SpecError(f"dataset.linear.{field}", value, "must be a positive integer")
    if noise_std < 0:
        raise SpecError("dataset.linear.noise_std", noise_std, "must be >= 0")
    rng = np.random.default_rng([seed, 10])
    w = rng.normal(size=dim) / np.sqrt(dim)
    splits = []
    for n in (n_train, n_val, n_test):
        x = rng.normal(size=(n, dim))
        clean = x @ w
        y = clean + noise_std * rng.normal(size=n)
        splits.append(
            Split(
                x=torch.from_numpy(x.astype(np.float32)),
                y=torch.from_numpy(y.astype(np.float32)),
                clean=torch.from_numpy(clean.astype(np.float32)),
                flipped=torch.zeros(n, dtype=torch.bool),
            )
        )
    description = {"name": "linear", "dim": dim, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                   "noise_std": noise_std, "seed": seed}
    return DataBundle(
        name="linear",
        task="regression",
        num_classes=1,
        input_shape=(dim,),
        train=splits[0],
        val=splits[1],
        test=splits[2],
        description=description,
        linear_truth=LinearTruth(weights=w, noise_std=noise_std),
    )


def check_data_args(name: str, val_fraction: float, noise_level: float, noise_type: str, train_size: int | None) -> None:
    """Refuse bad dataset options before any data is read (also used to check a study before it starts)."""
    if name not in DATASETS:
        raise SpecError("dataset.name", name, f"must be one of {', '.join(DATASETS)}")
    if not 0.0 <= noise_level < 1.0:
        raise SpecError("noise_level", noise_level, "must be in [0, 1) (share of train/validation labels flipped)")
    if noise_type not in NOISE_TYPES:
        raise SpecError("noise_type", noise_type, f"must be one of {', '.join(NOISE_TYPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise SpecError("dataset.val_fraction", val_fraction, "must be in (0, 1)")
    if train_size is not None and train_size < 10:
        raise SpecError("dataset.train_size", train_size, "must be at least 10 (or omitted for the whole set)")


def _stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` samples drawn without replacement, each class in proportion to its frequency."""
    from sklearn.model_selection import train_test_split

    if n >= len(labels):
        return np.arange(len(labels))
    idx, _ = train_test_split(
        np.arange(len(labels)), train_size=n, stratify=labels, random_state=int(rng.integers(2**31 - 1))
    )
    return np.sort(idx)


def _split(x: np.ndarray, y: np.ndarray, clean: np.ndarray, flipped: np.ndarray) -> Split:
    return Split(
        x=torch.from_numpy(np.ascontiguousarray(x)),
        y=torch.from_numpy(y.astype(np.int64)),
        clean=torch.from_numpy(clean.astype(np.int64)),
        flipped=torch.from_numpy(flipped),
    )


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download); a fixed 20% stratified test split stands in for an
    official test set, so that the test set never depends on the user's seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=0
    )
    return x_pool, y_pool, x_test, y_test


def _load_idx_dataset(name: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-format datasets through torchvision, reading its tensors directly (no per-item transform)."""
    import torchvision

    folder = root / IMAGE_DATASETS[name] / "raw"
    missing = [f for f in _IDX_FILES if not (folder / f).exists() and not (folder / f"{f}.gz").exists()]
    if missing and not download:
        raise DataError(
            f"{name}: files missing in {folder}: {', '.join(f + '.gz' for f in missing)} "
            f"(set --data-root / KDTUNE_DATA_ROOT to a folder with them, or allow downloading with --download)"
        )
    cls = getattr(torchvision.datasets, IMAGE_DATASETS[name])
    # With every .gz present, download=True only verifies their MD5 and extracts them: no network is used.
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"{name}: cannot load from {folder}: {exc}") from exc

    def arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
        x = (ds.data.numpy().astype(np.float32) / 255.0)[:, None, :, :]
        return x, ds.targets.numpy().astype(np.int64)

    return (*arrays(train), *arrays(test))
