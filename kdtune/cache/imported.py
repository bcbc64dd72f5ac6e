"""Logits a user brings (``kdtune cache import``): checked against the dataset, keyed by their content.

Imported logits have no teacher, so they are their own kind of entry: every split is checked before anything
is written (each failure one :class:`~kdtune.errors.DataError` line naming the split and row), their identity is
a hash of the values themselves (:func:`content_fingerprint`), and their records name the samples they belong
to rather than a teacher (:func:`imported_metadata`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from kdtune._version import __version__
from kdtune.cache.keys import CACHE_FORMAT_VERSION
from kdtune.cache.parquet import DTYPES
from kdtune.cache.parquet import SPLITS
from kdtune.cache.store import utc_now
from kdtune.errors import DataError


if TYPE_CHECKING:
    from kdtune.core.data import DataBundle


def check_imported(arrays: dict[str, np.ndarray], data: DataBundle, source: str) -> dict[str, np.ndarray]:
    """Imported logits, checked split by split against ``data`` (see :meth:`LogitCache.import_logits`)."""
    checked = {}
    described = ", ".join(f"{k}={v}" for k, v in data.description.items() if v is not None)
    for name, split in zip(SPLITS, (data.train, data.val, data.test)):
        if name not in arrays or arrays[name] is None:
            raise DataError(f"{source}: no {name} logits (train, val and test are required)")
        array = np.asarray(arrays[name])
        if array.ndim != 2:
            raise DataError(f"{source}: {name} has shape {array.shape}: must be (rows, classes)")
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{source}: {name} has dtype {array.dtype}: logits must be floating point")
        if len(array) != len(split):
            raise DataError(f"{source}: {name} has {len(array)} rows; the dataset ({described}) has {len(split)} "
                            f"{name} samples")
        if array.shape[1] != data.num_classes:
            raise DataError(f"{source}: {name} has {array.shape[1]} columns; the dataset has {data.num_classes} "
                            "classes")
        bad = ~np.isfinite(array).all(1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{source}: {name}[{i}] contains {'NaN' if np.isnan(array[i]).any() else 'inf'}")
        checked[name] = array
    return checked


def content_fingerprint(checked: dict[str, np.ndarray], dtype: str) -> str:
    """The identity of imported logits: their shapes and values as stored in ``dtype``."""
    h = hashlib.sha256()
    for name in SPLITS:
        h.update(f"{name}:{checked[name].shape}".encode())
        h.update(checked[name].astype(DTYPES[dtype][0]).tobytes())
    return h.hexdigest()[:32]


def imported_metadata(key: str, content: str, samples: str, source: str, data: DataBundle, dtype: str,
                       diagnostics: dict[str, Any]) -> dict[str, Any]:
    """What every split file of an imported entry records: where the logits came from, and for which samples."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return {
        "format_version": CACHE_FORMAT_VERSION,
        "key": key,
        "dtype": dtype,
        "imported": True,
        "teacher": {"key": None, "spec": {"imported": source}, "selected_epoch": None,
                    "val_accuracy": diagnostics["val_accuracy"], "test_accuracy": diagnostics["test_accuracy"],
                    "weights_fingerprint": None, "logits_fingerprint": content},
        "diagnostics": diagnostics,
        "dataset": {"description": data.description, "fingerprint": data.fingerprint(), "samples_fingerprint": samples,
                    "name": data.name, "num_classes": data.num_classes, "preprocessing_version": PREPROCESSING_VERSION},
        "kdtune_version": __version__,
        "created": utc_now(),
    }
