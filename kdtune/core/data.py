"""Datasets, their train/validation/test splits, and label noise with a record of every flip.

Everything is loaded once into tensors and normalised once (pixels / 255, as in the Keras KD tutorial):
the training loop slices these tensors with a per-epoch permutation instead of going through a per-item
``Dataset``/``DataLoader``, which costs 50-100x more per batch on a CPU (``docs/architecture.md``, Performance).

Splits:
  * train: a seeded, class-stratified subset of the official training set (``train_size``), minus
  * validation: a seeded, class-stratified ``val_fraction`` of it. Train and validation carry the same label
    noise (a user selecting on validation only has noisy labels too);
  * test: the official test set, always clean.

User data (``docs/byo.md``): ``name`` may be an import path ``package.module:loader`` whose loader returns
arrays, or any label when ``files`` names ``.npz`` / Parquet files. User arrays are validated (one-line
:class:`~kdtune.errors.DataError` naming the array and the offending index), used as given (no scaling), and go
through the same subset / validation split / label noise as the built-in datasets; without a test split, a fixed
stratified 20% is held out as for digits. Files are read with ``allow_pickle=False``: nothing is unpickled.

Label noise flips exactly ``round(rate * n)`` labels of train and of validation, each to a *different* class
(``symmetric``: uniformly among the other classes; ``pairflip``: y -> (y - 1) mod K). Clean labels and the
boolean ``flipped`` mask are kept so that correction and memorisation of flipped labels can be measured.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np
import torch

from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.image.names import DATASETS
from kdtune.tasks.image.names import IMAGE_DATASETS


#: Bumped whenever loading or normalisation changes, so that cache keys built on old arrays go stale.
PREPROCESSING_VERSION = 1

NOISE_TYPES = ("symmetric", "pairflip")
DIGITS_TEST_FRACTION = 0.2
USER_TEST_FRACTION = DIGITS_TEST_FRACTION  # held out, fixed and stratified, when user data has no test split
FILE_SUFFIXES = (".npz", ".parquet")
NPZ_ARRAYS = ("x", "y", "x_test", "y_test", "num_classes")
LOADER_FIELDS = ("x_train", "y_train", "x_test", "y_test", "num_classes")
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

    def samples_fingerprint(self) -> str:
        """A hash of the samples and clean labels of every split, without the (noisy) training labels.

        Equal for every noise level and noise type of one dataset, subset and split: what imported teacher
        logits (``kdtune cache import``) are tied to, since an outside teacher's logits depend on the inputs only.
        """
        h = hashlib.sha256(f"kdtune-samples-v{PREPROCESSING_VERSION}:{self.task}:{self.num_classes}".encode())
        for split in (self.train, self.val, self.test):
            for t in (split.x, split.clean):
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
    files: Sequence[str] | None = None,
) -> DataBundle:
    """Load ``name``, subset and split it, and flip labels; fully determined by the arguments.

    Args:
        name: one of :data:`DATASETS`, an import path ``package.module:loader`` (see :func:`load_user_arrays`),
            or, with ``files``, a label for the user's files.
        data_root: folder holding torchvision's layout (``MNIST/raw/*.gz``); see :func:`default_data_root`.
        download: allow torchvision to download missing files. Without it, missing files are an error.
        train_size: number of training + validation images taken from the official training set
            (stratified); ``None`` keeps all. Ignored for ``linear`` (its sizes are in ``linear``).
        val_fraction: share of those held out for validation, stratified by class, in (0, 1).
        noise_level: share of train and validation labels flipped, in [0, 1).
        noise_type: ``symmetric`` or ``pairflip``.
        seed: the data seed: subset, split and noise draw (teacher and student seeds are separate).
        linear: options of the synthetic linear task (see :func:`make_linear`).
        files: one or two ``.npz`` / Parquet files (local paths or pyarrow URIs): the training pool, then an
            optional test set (see :func:`read_data_files`).
    """
    check_data_args(name, val_fraction, noise_level, noise_type, train_size, files=files)
    description: dict[str, Any] = {
        "name": name,
        "train_size": train_size,
        "val_fraction": val_fraction,
        "noise_level": noise_level,
        "noise_type": noise_type,
        "seed": seed,
    }
    if name == "linear":
        return make_linear(seed=seed, **(linear or {}))
    if files:
        description["files"] = list(files)
        x_pool, y_pool, x_test, y_test, num_classes = read_data_files(files)
    elif ":" in name:
        x_pool, y_pool, x_test, y_test, num_classes = load_user_arrays(name)
    elif name == "digits":
        x_pool, y_pool, x_test, y_test = _load_digits()
        num_classes = int(y_pool.max()) + 1
    else:
        x_pool, y_pool, x_test, y_test = _load_idx_dataset(name, Path(data_root or default_data_root()), download)
        num_classes = int(y_pool.max()) + 1
    if train_size is not None:
        if train_size > len(y_pool):
            raise SpecError("dataset.train_size", train_size, f"must be at most {len(y_pool)} for {name}")
        keep = _stratified_take(y_pool, train_size, np.random.default_rng([seed, 0]), name)
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    val_idx = _stratified_take(y_pool, max(1, round(val_fraction * len(y_pool))), np.random.default_rng([seed, 1]),
                               name)
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


def check_data_args(name: str, val_fraction: float, noise_level: float, noise_type: str, train_size: int | None,
                    *, files: Sequence[str] | None = None) -> None:
    """Refuse bad dataset options before any data is read (also used to check a study before it starts).

    A loader's import path is imported (not called); local ``files`` must exist.
    """
    if files:
        if name in DATASETS or ":" in name:
            raise SpecError("dataset.name", name, "must be a label of your own (not a built-in dataset or a loader) "
                            "when dataset.files is set")
        if len(files) > 2:
            raise SpecError("dataset.files", list(files), "must list one file (the training pool) or two "
                            "(the training pool, then the test set)")
        for i, f in enumerate(files):
            if not str(f).lower().endswith(FILE_SUFFIXES):
                raise SpecError(f"dataset.files[{i}]", f, "must be a .npz or .parquet file")
            if "://" not in str(f) and not Path(f).expanduser().is_file():
                raise SpecError(f"dataset.files[{i}]", f, "file not found")
    elif ":" in name:
        resolve_loader(name)
    elif name not in DATASETS:
        raise SpecError("dataset.name", name, f"must be one of {', '.join(DATASETS)}, an import path "
                        "package.module:loader, or a label with dataset.files")
    if not 0.0 <= noise_level < 1.0:
        raise SpecError("noise_level", noise_level, "must be in [0, 1) (share of train/validation labels flipped)")
    if noise_type not in NOISE_TYPES:
        raise SpecError("noise_type", noise_type, f"must be one of {', '.join(NOISE_TYPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise SpecError("dataset.val_fraction", val_fraction, "must be in (0, 1)")
    if train_size is not None and train_size < 10:
        raise SpecError("dataset.train_size", train_size, "must be at least 10 (or omitted for the whole set)")


def check_data_root(name: str, root: str | os.PathLike[str] | None, download: bool) -> None:
    """Refuse a data root that lacks a built-in image dataset's files (unless downloading is allowed), before
    anything starts: ``root`` (default :func:`default_data_root`) must hold ``<Dataset>/raw/*[.gz]``."""
    if name not in IMAGE_DATASETS or download:
        return
    folder = Path(root or default_data_root()).expanduser() / IMAGE_DATASETS[name] / "raw"
    try:
        missing = [f for f in _IDX_FILES if not (folder / f).is_file() and not (folder / f"{f}.gz").is_file()]
    except OSError as exc:  # a name too long for the filesystem, a permission
        raise DataError(f"{name}: cannot look into {folder} ({exc.strerror or type(exc).__name__})") from None
    if missing:
        raise DataError(
            f"{name}: files missing in {folder}: {', '.join(f + '.gz' for f in missing)} "
            f"(set --data-root / KDTUNE_DATA_ROOT to a folder with them, or allow downloading with --download)"
        )


def _stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator, name: str = "dataset") -> np.ndarray:
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
    check_data_root(name, root, download)
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


# -- user data ----------------------------------------------------------------------------------------

UserArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


def resolve_loader(name: str) -> Any:
    """The callable ``package.module:loader`` points to (imported, not called)."""
    module_name, _, attr = name.partition(":")
    try:
        loader = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError("dataset.name", name, f"does not import: {one_line(exc)}") from None
    if not callable(loader):
        raise SpecError("dataset.name", name, "is not callable")
    return loader


def load_user_arrays(name: str) -> UserArrays:
    """Call the loader ``package.module:loader`` (no arguments) and validate what it returns.

    The loader returns a mapping or an object with ``x_train`` (N, features...) and ``y_train`` (N,) integer
    labels, optionally ``x_test`` and ``y_test`` (both or neither) and ``num_classes``; numpy arrays, torch
    tensors or anything ``numpy.asarray`` turns into a numeric array. Without a test split a fixed stratified
    20% of the training arrays is held out (as for digits), independent of the data seed.
    """
    loader = resolve_loader(name)
    source = f"dataset.name = {name!r}"
    try:
        out = loader()
    except Exception as exc:  # the user's code: any failure is reported in one line
        raise DataError(f"{source}: the loader raised {type(exc).__name__}: {one_line(exc)}") from None

    def get(field: str) -> Any:
        if isinstance(out, Mapping):
            return out.get(field)
        return getattr(out, field, None)

    if not isinstance(out, Mapping) and get("x_train") is None:
        raise DataError(f"{source}: the loader returned {type(out).__name__}; expected a mapping or an object "
                        f"with {', '.join(LOADER_FIELDS[:2])} (optional: {', '.join(LOADER_FIELDS[2:])})")
    if isinstance(out, Mapping):
        unknown = sorted(str(k) for k in out if k not in LOADER_FIELDS)
        if unknown:
            raise DataError(f"{source}: the loader returned unexpected key {unknown[0]!r} "
                            f"(allowed: {', '.join(LOADER_FIELDS)})")
    arrays = {field: get(field) for field in LOADER_FIELDS}
    return _user_arrays(source, arrays, ("x_train", "y_train", "x_test", "y_test"))


def read_data_files(files: Sequence[str]) -> UserArrays:
    """Read and validate ``dataset.files``: the training pool, then an optional test set.

    * ``.npz`` (read with ``allow_pickle=False``): arrays ``x`` (N, features...), ``y`` (N,) integer labels,
      optionally ``x_test`` and ``y_test`` (both or neither) and a scalar ``num_classes``.
    * Parquet: a column ``x`` (list or fixed-size list of numbers, one row per sample, all of one length) and a
      column ``y`` (integers); optional file metadata ``shape`` (JSON list, e.g. ``[1, 28, 28]``: the shape of one
      sample) and ``num_classes``.

    A second file is the test set (arrays ``x`` and ``y`` only). Without a test set, a fixed stratified 20% of
    the training pool is held out, independent of the data seed.
    """
    arrays: dict[str, Any] = {}
    names = {k: f"{files[0]}: {k}" for k in ("x", "y", "x_test", "y_test")}
    for i, path in enumerate(files):
        source = f"dataset.files: {path}"
        found = _read_npz(path, source) if str(path).lower().endswith(".npz") else _read_parquet(path, source)
        if i == 0:
            arrays.update(found)
            continue
        if arrays.get("x_test") is not None:
            raise DataError(f"{source}: a test file was given, but {files[0]} holds x_test already")
        extra = sorted(set(found) - {"x", "y", "num_classes"})
        if extra:
            raise DataError(f"{source}: a test file holds x and y only, not {extra[0]}")
        names.update(x_test=f"{path}: x", y_test=f"{path}: y")
        arrays.update(x_test=found["x"], y_test=found["y"])
        if found.get("num_classes") is not None:
            arrays.setdefault("num_classes", found["num_classes"])
    return _user_arrays("dataset.files", {"x_train": arrays.get("x"), "y_train": arrays.get("y"),
                                          "x_test": arrays.get("x_test"), "y_test": arrays.get("y_test"),
                                          "num_classes": arrays.get("num_classes")},
                        (names["x"], names["y"], names["x_test"], names["y_test"]))


def read_bytes(path: str, *, field: str) -> bytes:
    """The content of a local file or of a pyarrow filesystem URI (``s3://...``); missing -> SpecError."""
    text = str(path)
    try:
        if "://" not in text:
            return Path(text).expanduser().read_bytes()
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(text)
        with fs.open_input_file(inner) as f:
            return bytes(f.read())
    except FileNotFoundError:
        raise SpecError(field, text, "file not found") from None
    except Exception as exc:  # permissions, unknown URI schemes, network filesystems
        raise DataError(f"{field}: {text}: cannot read ({one_line(exc)})") from None


def _read_npz(path: str, source: str) -> dict[str, Any]:
    raw = read_bytes(path, field="dataset.files")
    try:
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{source}: not a readable .npz file ({one_line(exc)})") from None
    if not hasattr(npz, "files"):
        raise DataError(f"{source}: holds a single array, not an .npz archive with arrays x and y")
    found: dict[str, Any] = {}
    with npz:
        for key in npz.files:
            if key not in NPZ_ARRAYS:
                raise DataError(f"{source}: unexpected array {key!r} (allowed: {', '.join(NPZ_ARRAYS)})")
            try:
                found[key] = npz[key]
            except ValueError as exc:  # object arrays need pickle, which is refused
                raise DataError(f"{source}: array {key!r} cannot be read without unpickling ({one_line(exc)}); "
                                "store plain numeric arrays") from None
    return found


def _read_parquet(path: str, source: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    raw = read_bytes(path, field="dataset.files")
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except Exception as exc:
        raise DataError(f"{source}: not a readable Parquet file ({one_line(exc)})") from None
    for column in ("x", "y"):
        if column not in table.column_names:
            raise DataError(f"{source}: no column {column!r} (columns: {', '.join(table.column_names) or 'none'})")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    x = table.column("x").combine_chunks()
    if not (pa.types.is_list(x.type) or pa.types.is_large_list(x.type) or pa.types.is_fixed_size_list(x.type)):
        raise DataError(f"{source}: column x has type {x.type}: must be a list of numbers per row")
    if not (pa.types.is_integer(x.type.value_type) or pa.types.is_floating(x.type.value_type)):
        raise DataError(f"{source}: column x holds {x.type.value_type} values: must be numbers")
    if x.null_count:
        raise DataError(f"{source}: x[{_first(x.is_null())}] is null")
    lengths = pc.list_value_length(x).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        i = int(np.argmax(lengths != lengths[0]))
        raise DataError(f"{source}: x[{i}] has {lengths[i]} values but x[0] has {lengths[0]}")
    width = int(lengths[0]) if len(lengths) else 0
    values = x.flatten()
    if values.null_count:
        raise DataError(f"{source}: x[{_first(values.is_null()) // max(width, 1)}] contains a null value")
    flat = values.to_numpy(zero_copy_only=False).reshape(len(x), width)
    shape: tuple[int, ...] = (width,)
    if "shape" in meta:
        try:
            shape = tuple(int(d) for d in json.loads(meta["shape"]))
        except (ValueError, TypeError):
            raise DataError(f"{source}: metadata shape = {meta['shape']!r}: must be a JSON list of integers") from None
        if int(np.prod(shape)) != width:
            raise DataError(f"{source}: metadata shape {list(shape)} holds {int(np.prod(shape))} values but each "
                            f"x row has {width}")
    y = table.column("y").combine_chunks()
    if y.null_count:
        raise DataError(f"{source}: y[{_first(y.is_null())}] is null")
    found: dict[str, Any] = {"x": flat.reshape(len(x), *shape), "y": y.to_numpy(zero_copy_only=False)}
    if "num_classes" in meta:
        found["num_classes"] = meta["num_classes"]
    return found


def _first(mask: Any) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))


def _user_arrays(source: str, arrays: dict[str, Any], names: tuple[str, str, str, str]) -> UserArrays:
    """Validate user arrays (one-line errors naming the array and index) and hold out a test split if none."""
    xn, yn, xtn, ytn = names
    if arrays["x_train"] is None or arrays["y_train"] is None:
        missing = xn if arrays["x_train"] is None else yn
        raise DataError(f"{source}: no {missing} (training inputs and integer labels are required)")
    if (arrays["x_test"] is None) != (arrays["y_test"] is None):
        present, absent = (xtn, ytn) if arrays["x_test"] is not None else (ytn, xtn)
        raise DataError(f"{source}: {present} without {absent} (give both or neither)")
    num_classes = _num_classes(source, arrays["num_classes"])
    x = _check_x(source, xn, arrays["x_train"])
    y = _check_y(source, yn, arrays["y_train"], len(x), xn, num_classes)
    if arrays["x_test"] is not None:
        x_test = _check_x(source, xtn, arrays["x_test"])
        y_test = _check_y(source, ytn, arrays["y_test"], len(x_test), xtn, num_classes)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{source}: {xtn} samples have shape {x_test.shape[1:]} but {xn} samples have shape "
                            f"{x.shape[1:]}")
    k = num_classes or int(max(y.max(), y_test.max() if arrays["x_test"] is not None else 0)) + 1
    if k < 2:
        raise DataError(f"{source}: {yn} holds a single class; classification needs at least 2")
    if arrays["x_test"] is None:
        counts = np.bincount(y, minlength=k)
        single = np.flatnonzero(counts == 1)
        if len(single):
            raise DataError(f"{source}: class {int(single[0])} has a single sample in {yn}; holding out a "
                            "stratified test split needs at least 2 per class (or give a test split)")
        from sklearn.model_selection import train_test_split

        try:
            x, x_test, y, y_test = train_test_split(x, y, test_size=USER_TEST_FRACTION, stratify=y, random_state=0)
        except ValueError as exc:
            raise DataError(f"{source}: cannot hold out a stratified test split: {one_line(exc)}") from None
    return x, y, x_test, y_test, k


def _num_classes(source: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        k = int(np.asarray(value).item())
    except (ValueError, TypeError):
        raise DataError(f"{source}: num_classes = {value!r}: must be an integer >= 2") from None
    if k < 2 or k != float(np.asarray(value).item()):
        raise DataError(f"{source}: num_classes = {value!r}: must be an integer >= 2")
    return k


def _as_numpy(source: str, name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise DataError(f"{source}: {name} is not an array ({one_line(exc)})") from None


def _check_x(source: str, name: str, value: Any) -> np.ndarray:
    x = _as_numpy(source, name, value)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{source}: {name} has dtype {x.dtype}: must be numeric features")
    if x.ndim < 2:
        raise DataError(f"{source}: {name} has shape {x.shape}: must be (N, features...), one sample per row")
    if len(x) == 0:
        raise DataError(f"{source}: {name} is empty")
    if np.issubdtype(x.dtype, np.floating):
        flat = x.reshape(len(x), -1)
        nan, inf = np.isnan(flat).any(1), np.isinf(flat).any(1)
        if nan.any() or inf.any():
            i = int(np.argmax(nan | inf))
            raise DataError(f"{source}: {name}[{i}] contains {'NaN' if nan[i] else 'inf'}")
    return np.require(x, dtype=np.float32, requirements=["C", "W"])  # Arrow's arrays are read-only


def _check_y(source: str, name: str, value: Any, n: int, x_name: str, num_classes: int | None) -> np.ndarray:
    y = _as_numpy(source, name, value)
    if y.ndim != 1:
        raise DataError(f"{source}: {name} has shape {y.shape}: must be (N,) class labels")
    if len(y) != n:
        raise DataError(f"{source}: {x_name} has {n} rows but {name} has {len(y)}")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {name} has dtype {y.dtype}: must be integer class labels 0 .. K-1")
    bad = (y < 0) if num_classes is None else ((y < 0) | (y >= num_classes))
    if bad.any():
        i = int(np.argmax(bad))
        allowed = ">= 0" if num_classes is None else f"in [0, {num_classes})"
        raise DataError(f"{source}: {name}[{i}] = {int(y[i])}: labels must be {allowed}")
    return y.astype(np.int64)


