"""A dataset by name, for every task: the one place that knows which loader a ``dataset`` section means.

The core (:mod:`kdtune.core.data`) holds what all tasks share and imports none of them; this module sits above
the tasks and dispatches: ``linear`` to the linear task, ``dataset.files`` and ``package.module:loader`` to the
user's data, ``image_folder`` and ``torchvision:<Class>`` to the images on disk, the built-in names to the image
datasets. Everything it returns went through the same checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdtune.core.data import DataBundle
from kdtune.core.data import check_split_args
from kdtune.core.data import split_pool
from kdtune.errors import SpecError
from kdtune.tasks.image.datasets import default_data_root
from kdtune.tasks.image.datasets import load_digits
from kdtune.tasks.image.datasets import load_idx_dataset
from kdtune.tasks.image.files import FILE_SUFFIXES
from kdtune.tasks.image.files import load_user_arrays
from kdtune.tasks.image.files import read_data_files
from kdtune.tasks.image.files import resolve_loader
from kdtune.tasks.image.folder import ImageOptions
from kdtune.tasks.image.folder import is_disk_dataset
from kdtune.tasks.image.folder import load_disk_dataset
from kdtune.tasks.image.folder import torchvision_class
from kdtune.tasks.image.names import DATASETS
from kdtune.tasks.image.names import TORCHVISION_PREFIX
from kdtune.tasks.linear.data import make_linear


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
    images: dict[str, Any] | None = None,
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
        images: for ``image_folder`` and ``torchvision:<Class>``, the fields of
            :class:`~kdtune.tasks.image.folder.ImageOptions` (the folder, image size, in memory or on disk).
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
        pool = read_data_files(files)
    elif is_disk_dataset(name):
        options = ImageOptions(**(images or {}))
        description["images"] = {k: v for k, v in asdict(options).items() if k != "workers"}
        pool = load_disk_dataset(name, options, data_root or default_data_root())
    elif ":" in name:
        pool = load_user_arrays(name)
    elif name == "digits":
        pool = load_digits()
    else:
        pool = load_idx_dataset(name, Path(data_root or default_data_root()), download)
    return split_pool(name, pool, train_size=train_size, val_fraction=val_fraction, noise_level=noise_level,
                      noise_type=noise_type, seed=seed, description=description)


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
                missing = not Path(f).expanduser().exists()
                raise SpecError(f"dataset.files[{i}]", f, "file not found" if missing else "is not a regular file")
    elif name.startswith(TORCHVISION_PREFIX):
        torchvision_class(name)
    elif ":" in name:
        resolve_loader(name)
    elif name not in DATASETS:
        raise SpecError("dataset.name", name, f"must be one of {', '.join(DATASETS)}, torchvision:<Class> (a "
                        "torchvision dataset on disk), an import path package.module:loader, or a label with "
                        "dataset.files")
    check_split_args(val_fraction, noise_level, noise_type, train_size)
