"""The teacher's per-position targets for token blocks in Parquet: written in row groups, read one row group at a
time and joined to the student's batches by block index.

One row per block of L = context positions. Three layouts (:data:`LAYOUTS`):

* ``dense``: ``logits`` (L x V float32). For small vocabularies (the byte tokenizer's 257): 1,028 bytes a token.
* ``topk``: ``ids`` (L x k int32), raw ``logits`` (L x k float32, before any temperature, so every T is applied
  at read time), ``tail_lse`` and ``tail_mean`` (L float32) of the other V - k logits, as the image task's top-k
  rows (:func:`kdtune.tasks.image.views.sparsify`): 8k + 8 bytes a token.
* ``sampled``: ``ids`` (L x N int32) drawn from the teacher's softmax at T = 1, their raw ``logits`` (L x N
  float32) and the full ``lse`` (L float32): 8N + 4 bytes a token (:class:`kdtune.tasks.language.loss.Sampled`).

Each row also holds its block ``index``. The footer holds the layout, V, L, k, the row count, the source's
identity (``meta``) and a sha256 per row group; a reader verifies, per row group it reads: the schema, the row
count, the checksum, that every value is finite (``tail_lse`` may be -inf only when k = V) and that ids are in
[0, V). Reading is one row group at a time, with plain reads of that row group's column chunks (not memory-mapped:
a mapped file's pages count in the process's resident memory, which then grew with the cache), so a cache larger
than RAM works; a batch's targets are gathered by block index (:meth:`TargetFile.targets`), holding at most two row
groups.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kdtune.cache.parquet import sha256_arrays
from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.tasks.language.blocks import read_row_group


if TYPE_CHECKING:  # torch loads where targets are read for training: `kdtune cache ls` reads footers only
    import torch

    from kdtune.tasks.language.loss import Targets


LAYOUTS = ("dense", "topk", "sampled")
#: Below this vocabulary a cache is dense unless a k is asked for: the byte tokenizer's rows are 1 KB a token.
DENSE_MAX_VOCAB = 512
METADATA_KEY = b"kdtune.targets"
TARGET_FORMAT = 1
#: Bytes of one row group when the writer chooses the rows (about 32 MiB of arrays).
ROW_GROUP_BYTES = 32 * 2**20
_COLUMNS = {"dense": (("logits", "V"),), "topk": (("ids", "k"), ("logits", "k"), ("tail_lse", 1), ("tail_mean", 1)),
            "sampled": (("ids", "k"), ("logits", "k"), ("lse", 1))}
_MAX_CACHED_GROUPS = 2


@dataclass(frozen=True)
class TargetFormat:
    """What a cache stores: ``layout``, the vocabulary, the positions per block and ``k`` (top-k ids, or draws
    for ``sampled``; ``None`` for dense)."""

    layout: str
    vocab_size: int
    context: int
    k: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise SpecError("cache.layout", self.layout, f"allowed: {', '.join(LAYOUTS)}")
        if self.layout == "dense" and self.k is not None:
            raise SpecError("cache.top_k", self.k, "must be omitted for a dense cache")
        if self.layout == "topk" and (self.k is None or not 1 <= self.k <= self.vocab_size):
            raise SpecError("cache.top_k", self.k, f"must be in [1, {self.vocab_size}] (the tokenizer's vocabulary)")
        if self.layout == "sampled" and (self.k is None or self.k < 1):
            raise SpecError("cache.samples", self.k, "must be a positive number of draws per position")

    def width(self, name: str) -> int:
        per = dict(_COLUMNS[self.layout])[name]
        return self.context * (self.vocab_size if per == "V" else int(self.k or 0) if per == "k" else 1)

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "vocab_size": self.vocab_size, "context": self.context, "k": self.k}


def choose_format(vocab_size: int, context: int, *, top_k: int | None = None, samples: int | None = None) -> TargetFormat:
    """``sampled`` with ``samples``, ``topk`` with ``top_k``, else dense; a vocabulary above
    :data:`DENSE_MAX_VOCAB` without either is refused (dense rows would be 4V bytes a token)."""
    if top_k is not None and samples is not None:
        raise SpecError("cache.samples", samples, "cannot be combined with cache.top_k; choose one")
    if samples is not None:
        return TargetFormat("sampled", vocab_size, context, samples)
    if top_k is not None:
        return TargetFormat("topk", vocab_size, context, top_k)
    if vocab_size > DENSE_MAX_VOCAB:
        raise SpecError("cache.top_k", None, f"is needed for a vocabulary of {vocab_size:,} (dense targets above "
                        f"{DENSE_MAX_VOCAB} ids cost {4 * vocab_size:,} bytes a token); set it, e.g. 32")
    return TargetFormat("dense", vocab_size, context)


def cache_bytes(tokens: int, vocab_size: int, *, layout: str = "dense", k: int | None = None) -> int:
    """Bytes of the targets' arrays for ``tokens`` positions (uncompressed; the block index, 8 bytes a block, and
    Parquet's overhead are left out): dense 4V, top-k 8k + 8, sampled 8N + 4 bytes a position."""
    fmt = TargetFormat(layout, vocab_size, 1, k)
    return tokens * sum(fmt.width(name) * 4 for name, _ in _COLUMNS[layout])


def _schema(fmt: TargetFormat) -> pa.Schema:
    def column(name: str) -> pa.Field:
        kind = pa.int32() if name == "ids" else pa.float32()
        return pa.field(name, pa.list_(pa.field("element", kind, nullable=False), fmt.width(name)), nullable=False)

    return pa.schema([pa.field("index", pa.int64(), nullable=False), *(column(name) for name, _ in _COLUMNS[fmt.layout])])


class TargetWriter:
    """Appends blocks' targets (any number per call, in any order) and writes full row groups as they fill.

    Use as a context manager; the file appears under its name only when the writer closes without an error.
    """

    def __init__(self, path: str | Path, fmt: TargetFormat, meta: dict[str, Any] | None = None, *,
                 rows_per_group: int | None = None) -> None:
        self.path, self.fmt, self.meta = Path(path), fmt, dict(meta or {})
        per_block = sum(fmt.width(name) * 4 for name, _ in _COLUMNS[fmt.layout])
        self.rows_per_group = rows_per_group or max(1, ROW_GROUP_BYTES // per_block)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._schema = _schema(fmt)
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd", write_page_checksum=True,
                                        use_dictionary=False,
                                        use_byte_stream_split=[f"{n}.list.element" for n, _ in _COLUMNS[fmt.layout]
                                                               if n != "ids"])
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in ("index", *dict(_COLUMNS[fmt.layout]))}
        self._held = 0
        self._sums: list[str] = []
        self.rows = 0

    def add(self, index: np.ndarray, **arrays: np.ndarray) -> None:
        """Targets of blocks ``index`` (B,): each array (B, L, width per position) or (B, L)."""
        self._pending["index"].append(np.asarray(index, dtype=np.int64))
        for name, _ in _COLUMNS[self.fmt.layout]:
            kind = np.int32 if name == "ids" else np.float32
            self._pending[name].append(np.asarray(arrays[name], dtype=kind).reshape(len(index), self.fmt.width(name)))
        self._held += len(index)
        while self._held >= self.rows_per_group:
            self._flush(self.rows_per_group)

    def _flush(self, rows: int) -> None:
        joined = {name: np.concatenate(parts) for name, parts in self._pending.items()}
        group = {name: array[:rows] for name, array in joined.items()}
        self._pending = {name: [array[rows:]] for name, array in joined.items()}
        self._held -= rows
        self._sums.append(sha256_arrays(group))
        columns = [pa.array(group["index"])]
        for name, _ in _COLUMNS[self.fmt.layout]:
            kind = self._schema.field(name).type
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(group[name].reshape(-1), type=kind.value_type),
                                                             kind.list_size))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self._schema), row_group_size=rows)
        self.rows += rows

    def close(self) -> TargetFile:
        if self._held:
            self._flush(self._held)
        meta = {"format": TARGET_FORMAT, **self.fmt.to_dict(), "rows": self.rows, "group_sha256": self._sums,
                "meta": self.meta}
        self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})
        self._writer.close()
        self._tmp.replace(self.path)
        return TargetFile(self.path)

    def __enter__(self) -> TargetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)


class TargetFile:
    """A verified target cache, read one row group at a time (plain reads, not memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, page_checksum_verification=True)
            info = json.loads(self._file.metadata.metadata[METADATA_KEY])
            self.format = TargetFormat(info["layout"], int(info["vocab_size"]), int(info["context"]), info["k"])
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException, SpecError) as exc:
            raise CacheError(f"{self.path}: not a kdtune target cache ({type(exc).__name__})") from None
        self.meta: dict[str, Any] = info["meta"]
        self._info = info
        expected = _schema(self.format)
        if not self._file.schema_arrow.remove_metadata().equals(expected):
            raise CacheError(f"{self.path}: schema changed; expected {expected}")
        if self._file.metadata.num_rows != info["rows"] or len(info["group_sha256"]) != self.num_row_groups:
            raise CacheError(f"{self.path}: {self._file.metadata.num_rows} rows in {self.num_row_groups} row groups, its "
                             f"metadata says {info['rows']} in {len(info['group_sha256'])}")
        self._groups: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._where: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return int(self._info["rows"])

    @property
    def num_row_groups(self) -> int:
        return int(self._file.metadata.num_row_groups)

    def read_row_group(self, group: int) -> dict[str, np.ndarray]:
        """Row group ``group`` as arrays: ``index`` (rows,), the others (rows, L, width per position), verified."""
        table = read_row_group(self._file, self.path, group)
        fmt = self.format
        arrays = {"index": table.column("index").to_numpy()}
        for name, _ in _COLUMNS[fmt.layout]:
            flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            arrays[name] = flat.reshape(table.num_rows, fmt.width(name))
        if sha256_arrays(arrays) != self._info["group_sha256"][group]:
            raise CacheError(f"{self.path}: row group {group} does not match its checksum (the file changed)")
        self._check_values(arrays, group)
        shaped = {"index": arrays["index"]}
        for name, per in _COLUMNS[fmt.layout]:
            shape = (table.num_rows, fmt.context) if per == 1 else (table.num_rows, fmt.context, -1)
            shaped[name] = arrays[name].reshape(shape)
        return shaped

    def _check_values(self, arrays: dict[str, np.ndarray], group: int) -> None:
        for name, array in arrays.items():
            if name == "index":
                continue
            if name == "ids":
                bad = not (array.size == 0 or (array.min() >= 0 and array.max() < self.format.vocab_size))
            elif name == "tail_lse" and self.format.k == self.format.vocab_size:
                bad = not np.all(np.isneginf(array))
            else:
                bad = not np.all(np.isfinite(array))
            if bad:
                raise CacheError(f"{self.path}: row group {group} has invalid {name} values (non-finite or out of range)")

    def _locate(self) -> np.ndarray:
        """Row group of every block index (read from the index column only, once)."""
        if self._where is None:
            where = np.full(self.num_rows, -1, dtype=np.int32)
            for group in range(self.num_row_groups):
                index = read_row_group(self._file, self.path, group, ["index"]).column("index").to_numpy()
                if index.min() < 0 or index.max() >= self.num_rows or np.any(where[index] >= 0):
                    raise CacheError(f"{self.path}: block indices are not a permutation of 0..{self.num_rows - 1}")
                where[index] = group
            self._where = where
        return self._where

    def _group(self, group: int) -> dict[str, np.ndarray]:
        if group in self._groups:
            self._groups.move_to_end(group)
        else:
            arrays = self.read_row_group(group)
            arrays["_row"] = np.empty(self.num_rows, dtype=np.int64)  # filled for this group's blocks only
            arrays["_row"][arrays["index"]] = np.arange(len(arrays["index"]))
            self._groups[group] = arrays
            while len(self._groups) > _MAX_CACHED_GROUPS:
                self._groups.popitem(last=False)
        return self._groups[group]

    def targets(self, index: np.ndarray, device: torch.device | str = "cpu") -> Targets:
        """The targets of blocks ``index`` (B,), in that order, as the loss takes them (dense logits, TopK or
        Sampled) on ``device``."""
        import torch

        from kdtune.tasks.language.loss import Sampled
        from kdtune.tasks.language.loss import TopK

        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_rows):
            raise CacheError(f"{self.path}: block index out of range (the cache holds {self.num_rows} blocks)")
        groups = self._locate()[index]
        parts: dict[str, np.ndarray] = {}
        for group in np.unique(groups):
            arrays = self._group(int(group))
            chosen = np.nonzero(groups == group)[0]
            rows = arrays["_row"][index[chosen]]
            for name in dict(_COLUMNS[self.format.layout]):
                if name not in parts:
                    parts[name] = np.empty((len(index), *arrays[name].shape[1:]), dtype=arrays[name].dtype)
                parts[name][chosen] = arrays[name][rows]
        t = {name: torch.from_numpy(array).to(device) for name, array in parts.items()}
        if self.format.layout == "dense":
            return t["logits"]
        if self.format.layout == "topk":
            return TopK(t["ids"], t["logits"], t["tail_lse"], t["tail_mean"], self.format.vocab_size)
        return Sampled(t["ids"], t["logits"], t["lse"])

    def verify(self) -> None:
        """Read and verify every row group (one at a time) and the block indices."""
        for group in range(self.num_row_groups):
            self.read_row_group(group)
        self._locate()
