"""The built-in image datasets: scikit-learn's digits and the MNIST family through torchvision.

Loaded once into arrays and normalised once (pixels / 255, as in the Keras KD tutorial; digits / 16), then
subset, split and noised by :func:`kdtune.core.data.split_pool` like every other classification pool. The MNIST
family reads torchvision's tensors directly (no per-item transform) from ``<data root>/<Dataset>/raw``;
:func:`check_data_root` refuses a missing file before anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kdtune.core.data import Pool
from kdtune.errors import DataError
from kdtune.tasks.image.names import IMAGE_DATASETS


DIGITS_TEST_FRACTION = 0.2
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def default_data_root() -> Path:
    """``$KDTUNE_DATA_ROOT``, else ``$XDG_CACHE_HOME/kdtune/datasets`` (``~/.cache/kdtune/datasets``)."""
    if os.environ.get("KDTUNE_DATA_ROOT"):
        return Path(os.environ["KDTUNE_DATA_ROOT"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kdtune" / "datasets"


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


def load_digits() -> Pool:
    """scikit-learn's bundled 8x8 digits (no download); a fixed 20% stratified test split stands in for an
    official test set, so that the test set never depends on the user's seed."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=0
    )
    return x_pool, y_pool, x_test, y_test, int(y_pool.max()) + 1


def load_idx_dataset(name: str, root: Path, download: bool) -> Pool:
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

    (x_pool, y_pool), (x_test, y_test) = arrays(train), arrays(test)
    return x_pool, y_pool, x_test, y_test, int(y_pool.max()) + 1
