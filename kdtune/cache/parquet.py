"""The Parquet codec of a logits split: one file per split, zstd, byte-stream-split logits, page CRCs, one row group.

Each file carries its own metadata (entry key, dtype, teacher, dataset, the sha256 of its logits), so a file is
verified on its own: :func:`decode` rejects a changed schema, a wrong row count or a checksum mismatch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


if TYPE_CHECKING:
    from kdtune.core.data import Split


SPLITS = ("train", "val", "test")
DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}
METADATA_KEY = b"kdtune"


class InvalidFile(Exception):
    """A file that decodes but breaks the contract (schema, rows, checksum)."""


def _schema(num_classes: int, dtype: str) -> pa.Schema:
    value = pa.field("element", DTYPES[dtype][1], nullable=False)  # Parquet's own name for list items
    return pa.schema([
        pa.field("index", pa.int32(), nullable=False),
        pa.field("logits", pa.list_(value, num_classes), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("train_label", pa.int64(), nullable=False),
        pa.field("flipped", pa.bool_(), nullable=False),
    ])


def encode(logits: np.ndarray, split: Split, meta: dict[str, Any]) -> bytes:
    """One split as Parquet bytes: zstd, byte-stream-split logits, page CRCs, a single row group.

    One row group keeps each column a single Arrow chunk on read, which is what makes the read zero-copy.
    """
    n, k = logits.shape
    dtype = meta["dtype"]
    values = np.ascontiguousarray(logits, dtype=DTYPES[dtype][0])
    meta = {**meta, "rows": n, "num_classes": k, "logits_sha256": _sha256(values)}
    schema = _schema(k, dtype).with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})
    columns = [
        pa.array(np.arange(n, dtype=np.int32)),
        pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=DTYPES[dtype][1]), k),
        pa.array(split.clean.numpy().astype(np.int64)),
        pa.array(split.y.numpy().astype(np.int64)),
        pa.array(split.flipped.numpy().astype(bool)),
    ]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(columns, schema=schema), sink, compression="zstd",
                   row_group_size=max(n, 1), use_dictionary=["label", "train_label"],
                   use_byte_stream_split=["logits.list.element"], write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def decode(raw: bytes) -> tuple[np.ndarray, pa.Table, dict[str, Any]]:
    """The logits as an (N, K) read-only view of the decoded Arrow buffer, the table, and the metadata."""
    table, meta = _read_checked(raw, lambda meta: _schema(int(meta["num_classes"]), meta["dtype"]))
    array = _chunk(table, "logits").flatten().to_numpy(zero_copy_only=True).reshape(-1, int(meta["num_classes"]))
    if _sha256(array) != meta["logits_sha256"]:
        raise InvalidFile("logits checksum mismatch")
    if not np.array_equal(table.column("index").to_numpy(), np.arange(table.num_rows)):
        raise InvalidFile("index column is not 0..N-1")
    return array, table, meta


def _read_checked(raw: bytes, schema_for: Callable[[dict[str, Any]], pa.Schema]) -> tuple[pa.Table, dict[str, Any]]:
    """The table of a file the cache wrote and its metadata, with every page's checksum verified, after the
    checks both kinds of entry share: one row group, the schema ``schema_for(metadata)``, and the row count the
    metadata states."""
    parquet = pq.ParquetFile(pa.BufferReader(raw), page_checksum_verification=True)
    meta = json.loads(parquet.metadata.metadata[METADATA_KEY])
    if parquet.metadata.num_row_groups > 1:
        raise InvalidFile(f"{parquet.metadata.num_row_groups} row groups, expected 1")
    table = parquet.read()
    expected = schema_for(meta)
    if not table.schema.remove_metadata().equals(expected):
        raise InvalidFile(f"schema changed: {_schema_line(table.schema)}; expected {_schema_line(expected)}")
    if table.num_rows != meta["rows"]:
        raise InvalidFile(f"{table.num_rows} rows, metadata says {meta['rows']}")
    return table, meta


def _chunk(table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` as one array (a file of 0 rows has no chunk)."""
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def labels_match(table: pa.Table, split: Split) -> bool:
    return all(np.array_equal(table.column(name).to_numpy(), values.numpy())
               for name, values in (("label", split.clean), ("train_label", split.y), ("flipped", split.flipped)))


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8).data).hexdigest()


def _schema_line(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


# -- per-view files (kdtune.tasks.image.views): one row per (image, view), dense logits or top-k ------------------------

VIEW_ARRAYS = {"dense": ("logits",), "sparse": ("top_values", "top_classes", "rest_lse", "rest_mean")}


def _views_schema(width: int, sparse: bool) -> pa.Schema:
    def fixed(name: str, kind: pa.DataType) -> pa.Field:
        return pa.field(name, pa.list_(pa.field("element", kind, nullable=False), width), nullable=False)

    values = [fixed("top_values", pa.float32()), fixed("top_classes", pa.int32()),
              pa.field("rest_lse", pa.float32(), nullable=False), pa.field("rest_mean", pa.float32(), nullable=False)
              ] if sparse else [fixed("logits", pa.float32())]
    return pa.schema([pa.field("index", pa.int32(), nullable=False), pa.field("view", pa.int32(), nullable=False),
                      pa.field("view_seed", pa.uint64(), nullable=False), *values])


def encode_views(arrays: dict[str, np.ndarray], seeds: np.ndarray, views: int, meta: dict[str, Any]) -> bytes:
    """Per-view logits as Parquet bytes: row ``i * views + v`` is view ``v`` of image ``i``, with its seed.

    ``arrays`` holds ``logits`` (rows, K) float32, or ``top_values`` / ``top_classes`` (rows, k), ``rest_lse`` and
    ``rest_mean`` (rows,) for top-k rows (:func:`kdtune.tasks.image.views.sparsify`). Same codec choices and checks as
    :func:`encode` (one row group, page CRCs, sha256).
    """
    sparse = "top_values" in arrays
    arrays = {name: np.ascontiguousarray(arrays[name]) for name in VIEW_ARRAYS["sparse" if sparse else "dense"]}
    first = arrays["top_values" if sparse else "logits"]
    rows, width = first.shape
    meta = {**meta, "rows": rows, "width": width, "sparse": sparse, "views": views,
            "logits_sha256": sha256_arrays(arrays)}
    schema = _views_schema(width, sparse).with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})
    columns = [pa.array((np.arange(rows) // max(views, 1)).astype(np.int32)),
               pa.array((np.arange(rows) % max(views, 1)).astype(np.int32)), pa.array(seeds.astype(np.uint64))]
    for name, array in arrays.items():
        kind = schema.field(name).type
        columns.append(pa.array(array) if array.ndim == 1 else
                       pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1), type=kind.value_type), width))
    split_columns = [f"{name}.list.element" for name in arrays if arrays[name].ndim == 2] + \
        (["rest_lse", "rest_mean"] if sparse else [])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(columns, schema=schema), sink, compression="zstd",
                   row_group_size=max(rows, 1), use_dictionary=False, use_byte_stream_split=split_columns,
                   write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def decode_views(raw: bytes) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """The arrays of :func:`encode_views` (read-only views of the decoded buffers), the seeds, and the metadata;
    rejects a changed schema, a wrong row count, a checksum mismatch and rows out of (image, view) order."""
    table, meta = _read_checked(raw, lambda meta: _views_schema(int(meta["width"]), bool(meta["sparse"])))
    width, sparse, views = int(meta["width"]), bool(meta["sparse"]), int(meta["views"])
    rows = table.num_rows
    arrays = {}
    for name in VIEW_ARRAYS["sparse" if sparse else "dense"]:
        chunk = _chunk(table, name)
        if name in ("rest_lse", "rest_mean"):
            arrays[name] = chunk.to_numpy(zero_copy_only=True)
        else:
            arrays[name] = chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, width)
    if sha256_arrays(arrays) != meta["logits_sha256"]:
        raise InvalidFile("logits checksum mismatch")
    order = np.arange(rows)
    if not (np.array_equal(table.column("index").to_numpy(), order // views)
            and np.array_equal(table.column("view").to_numpy(), order % views)):
        raise InvalidFile("index and view columns are not in (image, view) order")
    return arrays, table.column("view_seed").to_numpy(), meta


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    """One checksum over named arrays (name and bytes, in name order): what a file's metadata records and a read checks."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).view(np.uint8).data)
    return h.hexdigest()
