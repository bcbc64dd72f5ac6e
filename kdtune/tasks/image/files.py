"""Users' own data (``docs/byo.md``): ``.npz`` and Parquet files, and loaders named ``package.module:loader``.

User arrays are validated (one-line :class:`~kdtune.errors.DataError` naming the array and the offending index),
used as given (no scaling), and go through the same subset / validation split / label noise as the built-in
datasets (:func:`kdtune.core.data.split_pool`); without a test split, a fixed stratified 20% is held out as for
digits. Files are read with ``allow_pickle=False``: nothing is unpickled. :func:`read_bytes` reads any local
file or pyarrow URI (also a teacher checkpoint's). A teacher's logits computed elsewhere (``kdtune cache
import``) are read by :func:`read_logits_file`, with the same ``.npz`` and list-column checks as the data.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdtune.core.data import Pool
from kdtune.errors import DataError
from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.tasks.bundle import SPLITS
from kdtune.tasks.image.datasets import DIGITS_TEST_FRACTION


USER_TEST_FRACTION = DIGITS_TEST_FRACTION  # held out, fixed and stratified, when user data has no test split
FILE_SUFFIXES = (".npz", ".parquet")
NPZ_ARRAYS = ("x", "y", "x_test", "y_test", "num_classes")
LOADER_FIELDS = ("x_train", "y_train", "x_test", "y_test", "num_classes")


def resolve_loader(name: str) -> Any:
    """The callable ``package.module:loader`` points to (imported, not called)."""
    module_name, _, attr = name.partition(":")
    try:
        loader = getattr(importlib.import_module(module_name), attr)
    except (Exception, SystemExit) as exc:  # not there, or the user's module raised (or exited) at import
        raise SpecError("dataset.name", name, f"does not import: {type(exc).__name__}: {one_line(exc)}") from None
    if not callable(loader):
        raise SpecError("dataset.name", name, "is not callable")
    return loader


def load_user_arrays(name: str) -> Pool:
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


def read_data_files(files: Sequence[str]) -> Pool:
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
        raw = read_bytes(path, field="dataset.files")
        if str(path).lower().endswith(".npz"):
            found = _read_npz(raw, source, allowed=NPZ_ARRAYS, expected="x and y")
        else:
            found = _read_parquet(raw, source)
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
            local = Path(text).expanduser()
            if local.exists() and not local.is_file():  # a FIFO or a device would block the read, or never end
                raise SpecError(field, text, "is not a regular file")
            return local.read_bytes()
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(text)
        with fs.open_input_file(inner) as f:
            return bytes(f.read())
    except FileNotFoundError:
        raise SpecError(field, text, "file not found") from None
    except SpecError:
        raise
    except Exception as exc:  # permissions, unknown URI schemes, network filesystems
        raise DataError(f"{field}: {text}: cannot read ({one_line(exc)})") from None


def read_logits_file(path: str) -> dict[str, np.ndarray]:
    """A teacher's logits computed elsewhere, as split -> (rows, classes) array, read without unpickling.

    ``.npz``: arrays ``train``, ``val``, ``test`` (rows, classes). Parquet: a column ``split`` (train | val |
    test) and a column ``logits`` (list of floats per row), rows of a split in split order, or ordered by an
    optional integer column ``index``. Rows, classes and finiteness are the cache's to check against the
    dataset (:meth:`kdtune.cache.LogitCache.import_logits`).
    """
    raw = read_bytes(path, field="LOGITS")
    if path.lower().endswith(".npz"):
        return _read_npz(raw, path, allowed=SPLITS, expected="train, val and test")
    if not path.lower().endswith(".parquet"):
        raise DataError(f"{path}: must be a .npz or .parquet file")
    table = _parquet_table(raw, path)
    for column in ("split", "logits"):
        if column not in table.column_names:
            raise DataError(f"{path}: no column {column!r} (columns: {', '.join(table.column_names)})")
    splits = np.asarray(table.column("split").to_pylist(), dtype=object)
    unknown = sorted({str(s) for s in splits} - set(SPLITS))
    if unknown:
        raise DataError(f"{path}: split {unknown[0]!r} is not one of {', '.join(SPLITS)}")
    values = _list_rows(table.column("logits"), path, "logits")
    indexed = "index" in table.column_names
    order = np.asarray(table.column("index").to_numpy(zero_copy_only=False)) if indexed else np.arange(len(values))
    out = {}
    for name in SPLITS:
        rows = np.flatnonzero(splits == name)
        if len(rows):
            out[name] = values[rows[np.argsort(order[rows], kind="stable")]]
            if indexed and not np.array_equal(np.sort(order[rows]), np.arange(len(rows))):
                raise DataError(f"{path}: the index of split {name} is not 0 .. {len(rows) - 1}")
    return out


def _read_npz(raw: bytes, source: str, *, allowed: Sequence[str], expected: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file's bytes, each named in ``allowed``, without unpickling; ``expected``
    says in words what the archive should hold (``"x and y"``), for the errors."""
    if not raw.startswith(b"PK"):  # else numpy takes any other bytes for a pickle and blames pickled data
        raise DataError(f"{source}: not an .npz file (a zip archive of .npy arrays {expected})")
    try:
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{source}: not a readable .npz file ({one_line(exc)})") from None
    if not hasattr(npz, "files"):
        raise DataError(f"{source}: holds a single array, not an .npz archive with arrays {expected}")
    found: dict[str, Any] = {}
    with npz:
        for key in npz.files:
            if key not in allowed:
                raise DataError(f"{source}: unexpected array {key!r} (allowed: {', '.join(allowed)})")
            _check_npy_size(npz, key, source)
            try:
                found[key] = npz[key]
            except ValueError as exc:  # object arrays need pickle, which is refused
                raise DataError(f"{source}: array {key!r} cannot be read without unpickling ({one_line(exc)}); "
                                "store plain numeric arrays") from None
    return found


def _check_npy_size(npz: Any, key: str, source: str) -> None:
    """An array whose header claims more bytes than its archive member holds (a header claiming 29 TiB was a
    MemoryError) is refused before numpy allocates it."""
    import math

    info = npz.zip.getinfo(f"{key}.npy")
    try:
        with npz.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
    except Exception as exc:
        raise DataError(f"{source}: array {key!r} is not a readable .npy array ({one_line(exc)})") from None
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size:
        raise DataError(f"{source}: array {key!r} claims shape {shape} ({claimed:,} bytes) but holds "
                        f"{info.file_size:,} bytes: the file is damaged or not what it says")


def _parquet_table(raw: bytes, source: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(raw))
    except Exception as exc:
        raise DataError(f"{source}: not a readable Parquet file ({one_line(exc)})") from None


def _list_rows(column: Any, source: str, name: str) -> np.ndarray:
    """A Parquet column of number lists, one list per row and all of one length, as a (rows, length) array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    x = column.combine_chunks()
    if not (pa.types.is_list(x.type) or pa.types.is_large_list(x.type) or pa.types.is_fixed_size_list(x.type)):
        raise DataError(f"{source}: column {name} has type {x.type}: must be a list of numbers per row")
    if not (pa.types.is_integer(x.type.value_type) or pa.types.is_floating(x.type.value_type)):
        raise DataError(f"{source}: column {name} holds {x.type.value_type} values: must be numbers")
    if x.null_count:
        raise DataError(f"{source}: {name}[{_first(x.is_null())}] is null")
    lengths = pc.list_value_length(x).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        i = int(np.argmax(lengths != lengths[0]))
        raise DataError(f"{source}: {name}[{i}] has {lengths[i]} values but {name}[0] has {lengths[0]}")
    width = int(lengths[0]) if len(lengths) else 0
    values = x.flatten()
    if values.null_count:
        raise DataError(f"{source}: {name}[{_first(values.is_null()) // max(width, 1)}] contains a null value")
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(len(x), width)


def _read_parquet(raw: bytes, source: str) -> dict[str, Any]:
    table = _parquet_table(raw, source)
    for column in ("x", "y"):
        if column not in table.column_names:
            raise DataError(f"{source}: no column {column!r} (columns: {', '.join(table.column_names) or 'none'})")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    flat = _list_rows(table.column("x"), source, "x")
    width = flat.shape[1]
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
    found: dict[str, Any] = {"x": flat.reshape(len(flat), *shape), "y": y.to_numpy(zero_copy_only=False)}
    if "num_classes" in meta:
        found["num_classes"] = meta["num_classes"]
    return found


def _first(mask: Any) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))


def _user_arrays(source: str, arrays: dict[str, Any], names: tuple[str, str, str, str]) -> Pool:
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
