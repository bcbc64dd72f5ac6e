"""A corpus as fixed-length token blocks in one Parquet file per split, read back one row group at a time.

* **Split by document** (:func:`split_documents`): documents, never blocks, are assigned to train, validation and
  test by a permutation of their indices drawn with the data seed, so no text is shared between splits.
* **Packing**: the corpus is read once more, in its own order (:func:`documents_by_split`), and each document goes
  to its split's writer (:class:`BlockWriter`; the three are open at once), so within a split documents are
  concatenated in corpus order, each followed by the tokenizer's end-of-document id. The stream is cut into blocks
  of ``context + 1`` tokens (inputs are ``block[:-1]``, next-token targets ``block[1:]``). A block may span a
  document boundary (the model sees the eos id there, as GPT-2's training did); the split's last partial block is
  dropped, so no block holds padding. Corpus order, not the permutation's: the corpus is streamed, never held, and
  training visits the blocks in a seeded order anyway (:mod:`kdtune.tasks.language.corpus` says why).
* **Storage**: one row per block, ``tokens`` a ``fixed_size_list<uint16>`` (``int32`` when the vocabulary
  exceeds 65,536), ``rows_per_group`` blocks per row group, zstd, page checksums. The footer holds the context,
  the tokenizer's fingerprint, the row count and a sha256 of every row group's tokens (as int32), so a reader
  verifies each row group it reads without reading the rest.
* **Reading** (:class:`BlockFile`): one row group at a time, with plain reads (not memory-mapped: the pages of a
  mapped file count in the process's resident memory and grew it with the file); an epoch visits the row groups
  in a seeded order and the blocks of each in a seeded order, and yields each block's global index (the row
  number), which is how cached teacher targets are joined to blocks.

Writing streams too: a document is tokenized, appended to its split's buffer, and full row groups are written
out, so neither the corpus, nor its tokens, nor its blocks are ever all in memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.errors import shorten
from kdtune.tasks.language.tokenizer import Tokenizer


SPLITS = ("train", "val", "test")
METADATA_KEY = b"kdtune.blocks"
BLOCK_FORMAT = 1
DEFAULT_ROWS_PER_GROUP = 256


def split_documents(num_docs: int, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Document indices of each split: a seeded permutation cut at the fractions (each split gets at least one
    document), so a document belongs to exactly one split."""
    for name, value in (("dataset.val_fraction", val_fraction), ("dataset.test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise SpecError(name, value, "must be in (0, 1)")
    if val_fraction + test_fraction >= 1:
        raise SpecError("dataset.test_fraction", test_fraction, f"must leave documents for training (val_fraction "
                        f"{val_fraction} + test_fraction < 1)")
    if num_docs < 3:
        raise SpecError("dataset.corpus", f"{num_docs} documents", "needs at least 3 documents (one each for train, "
                        "validation and test; splits are made by document)")
    order = np.random.default_rng(seed).permutation(num_docs)
    n_val = max(1, round(num_docs * val_fraction))
    n_test = max(1, round(num_docs * test_fraction))
    n_train = num_docs - n_val - n_test
    if n_train < 1:
        raise SpecError("dataset.corpus", f"{num_docs} documents", "leaves no training document at these fractions")
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (half the bytes), int32 otherwise."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


def _schema(width: int, dtype: np.dtype) -> pa.Schema:
    kind = pa.uint16() if dtype == np.uint16 else pa.int32()
    return pa.schema([pa.field("tokens", pa.list_(pa.field("element", kind, nullable=False), width), nullable=False)])


def _group_sha256(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype="<i4").data).hexdigest()


class Documents(Protocol):
    """What blocks are made of: documents that can be counted and then read in order (a list, or a
    :class:`kdtune.tasks.language.corpus.Corpus`, which reads its file again on each iteration)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[str]: ...


def documents_by_split(docs: Documents, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                       seed: int = 0) -> Iterator[tuple[str, str]]:
    """(split name, document) for every document of ``docs``, in corpus order, each in the split
    :func:`split_documents` assigns its index to."""
    which = np.empty(len(docs), dtype=np.uint8)
    for number, index in enumerate(split_documents(len(docs), val_fraction=val_fraction, test_fraction=test_fraction,
                                                   seed=seed).values()):
        which[index] = number
    for split, doc in zip(which, docs, strict=True):
        yield SPLITS[split], doc


class BlockWriter:
    """Tokenizes documents in the order given, packs them into blocks of ``context + 1`` tokens and writes full row
    groups as they fill. :meth:`close` renames the file into place and opens it; a writer left without closing
    (``with``) removes its temporary file. A split too short for a single block is refused (one line)."""

    def __init__(self, path: str | Path, tokenizer: Tokenizer, *, context: int,
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP) -> None:
        if context < 1:
            raise SpecError("dataset.context", context, "must be a positive number of tokens")
        if rows_per_group < 1:
            raise SpecError("dataset.rows_per_group", rows_per_group, "must be a positive number of blocks")
        self.path, self.tokenizer, self.context, self.rows_per_group = Path(path), tokenizer, context, rows_per_group
        self.dtype = token_dtype(tokenizer.vocab_size)
        self._schema = _schema(context + 1, self.dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd", write_page_checksum=True,
                                        use_dictionary=False)
        self._open = True
        self._buffer = np.empty(0, dtype=self.dtype)
        self._sums: list[str] = []
        self._whole = hashlib.sha256()
        self.rows = 0

    def add(self, doc: str) -> None:
        ids = np.asarray([*self.tokenizer.encode(doc), self.tokenizer.eos_id], dtype=self.dtype)
        self._buffer = np.concatenate([self._buffer, ids])
        group_tokens = self.rows_per_group * (self.context + 1)
        while len(self._buffer) >= group_tokens:
            self._flush(self._buffer[:group_tokens])
            self._buffer = self._buffer[group_tokens:]

    def _flush(self, tokens: np.ndarray) -> None:
        width = self.context + 1
        digest = _group_sha256(tokens)
        self._sums.append(digest)
        self._whole.update(digest.encode())
        values = pa.array(tokens, type=self._schema.field("tokens").type.value_type)
        self._writer.write_table(pa.table([pa.FixedSizeListArray.from_arrays(values, width)], schema=self._schema),
                                 row_group_size=len(tokens) // width)
        self.rows += len(tokens) // width

    def close(self) -> BlockFile:
        full = len(self._buffer) // (self.context + 1) * (self.context + 1)
        if full:
            self._flush(self._buffer[:full])
        meta = {"format": BLOCK_FORMAT, "context": self.context, "rows": self.rows,
                "rows_per_group": self.rows_per_group, "tokenizer": self.tokenizer.fingerprint,
                "vocab_size": self.tokenizer.vocab_size, "dtype": self.dtype.name, "group_sha256": self._sums,
                "fingerprint": self._whole.hexdigest()}
        self._writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta)})
        self._writer.close()
        self._open = False
        if self.rows == 0:
            self._tmp.unlink()
            raise SpecError("dataset.context", self.context, f"is longer than the {len(self._buffer)} tokens of the "
                            f"{self.path.stem} split; lower the context or give more text")
        self._tmp.replace(self.path)
        return BlockFile(self.path)

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._open:  # not closed: an error on the way; nothing is left behind
            self._writer.close()
            self._open = False
            self._tmp.unlink(missing_ok=True)


def write_blocks(docs: Iterable[str], tokenizer: Tokenizer, path: str | Path, *, context: int,
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP) -> BlockFile:
    """Tokenize ``docs`` in order, pack them into blocks of ``context + 1`` tokens and write them to ``path``;
    returns the file opened for reading."""
    with BlockWriter(path, tokenizer, context=context, rows_per_group=rows_per_group) as writer:
        for doc in docs:
            writer.add(doc)
        return writer.close()


def build_splits(docs: Documents, tokenizer: Tokenizer, folder: str | Path, *, context: int, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, seed: int = 0,
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP) -> dict[str, BlockFile]:
    """``folder/{train,val,test}.parquet`` from ``docs``, split by document with ``seed``, in one pass over
    ``docs`` with the three files open at once."""
    with ExitStack() as stack:
        writers = {name: stack.enter_context(BlockWriter(Path(folder) / f"{name}.parquet", tokenizer, context=context,
                                                         rows_per_group=rows_per_group)) for name in SPLITS}
        for name, doc in documents_by_split(docs, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed):
            writers[name].add(doc)
        return {name: writers[name].close() for name in SPLITS}


def read_row_group(file: pq.ParquetFile, path: Path, group: int, columns: list[str] | None = None) -> pa.Table:
    """Row group ``group`` of ``file`` (opened from ``path``), only ``columns`` (None: all); a page that fails its
    checksum or a truncated file is one line (:class:`CacheError`), as the token blocks and the targets need."""
    try:
        return file.read_row_group(group, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise CacheError(f"{path}: row group {group} cannot be read ({type(exc).__name__}: "
                         f"{shorten(' '.join(str(exc).split()))})") from None


def blocks_fingerprint(files: dict[str, BlockFile]) -> str:
    """One sha256 over the splits' content fingerprints, for cache keys (it changes with the corpus, the split, the
    tokenizer and the context)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}:{files[name].fingerprint};".encode())
    return h.hexdigest()


@dataclass
class Batch:
    """``tokens`` (B, context + 1) int64 and each block's global ``index`` (B,) int64 (its row in the file)."""

    index: np.ndarray
    tokens: np.ndarray


class BlockFile:
    """A split's blocks, read one row group at a time (plain reads, not memory-mapped); each row group's checksum is
    verified when it is read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, page_checksum_verification=True)
            self.meta: dict[str, Any] = json.loads(self._file.metadata.metadata[METADATA_KEY])
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise CacheError(f"{self.path}: not a kdtune block file ({type(exc).__name__})") from None
        self.context = int(self.meta["context"])
        expected = _schema(self.context + 1, np.dtype(self.meta["dtype"]))
        if not self._file.schema_arrow.remove_metadata().equals(expected):
            raise CacheError(f"{self.path}: schema changed ({self._file.schema_arrow}); expected {expected}")
        if self._file.metadata.num_rows != self.meta["rows"]:
            raise CacheError(f"{self.path}: {self._file.metadata.num_rows} rows, its metadata says {self.meta['rows']}")
        self._starts = np.concatenate([[0], np.cumsum([self._file.metadata.row_group(i).num_rows
                                                       for i in range(self.num_row_groups)])]).astype(np.int64)

    @property
    def num_blocks(self) -> int:
        return int(self.meta["rows"])

    @property
    def num_tokens(self) -> int:
        """Predicted tokens (``context`` per block)."""
        return self.num_blocks * self.context

    @property
    def num_row_groups(self) -> int:
        return int(self._file.metadata.num_row_groups)

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def tokenizer(self) -> str:
        return str(self.meta["tokenizer"])

    def row_group_start(self, group: int) -> int:
        """Global index of the first block of row group ``group``."""
        return int(self._starts[group])

    def read_row_group(self, group: int) -> np.ndarray:
        """The (rows, context + 1) tokens of one row group, verified against the footer's checksum."""
        column = read_row_group(self._file, self.path, group, ["tokens"]).column("tokens")
        flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        tokens = flat.reshape(-1, self.context + 1)
        if _group_sha256(tokens) != self.meta["group_sha256"][group]:
            raise CacheError(f"{self.path}: row group {group} does not match its checksum (the file changed)")
        return tokens

    def batches(self, batch_size: int, *, seed: int | None = None, epoch: int = 0) -> Iterator[Batch]:
        """The blocks in batches of ``batch_size`` (the last may be smaller).

        With ``seed``, epoch ``epoch`` visits the row groups in a permutation drawn from (seed, epoch) and the
        blocks of each row group in a permutation of their own; without it, blocks come in file order (evaluation).
        Only one row group and one batch are in memory at a time.
        """
        rng = None if seed is None else np.random.default_rng([seed, epoch])
        groups = np.arange(self.num_row_groups) if rng is None else rng.permutation(self.num_row_groups)
        pending_index: list[np.ndarray] = []
        pending_tokens: list[np.ndarray] = []
        held = 0
        for group in groups:
            tokens = self.read_row_group(int(group))
            index = self.row_group_start(int(group)) + np.arange(len(tokens), dtype=np.int64)
            if rng is not None:
                order = rng.permutation(len(tokens))
                tokens, index = tokens[order], index[order]
            pending_index.append(index)
            pending_tokens.append(tokens)
            held += len(tokens)
            while held >= batch_size:
                all_index, all_tokens = np.concatenate(pending_index), np.concatenate(pending_tokens)
                yield Batch(all_index[:batch_size], all_tokens[:batch_size].astype(np.int64))
                pending_index, pending_tokens = [all_index[batch_size:]], [all_tokens[batch_size:]]
                held -= batch_size
        if held:
            yield Batch(np.concatenate(pending_index), np.concatenate(pending_tokens).astype(np.int64))

    def verify(self) -> None:
        """Read and verify every row group (one at a time), and that the footer's checksums are exactly those of
        its row groups (their sha256 is the fingerprint that the teacher's cache key is made of)."""
        sums = self.meta.get("group_sha256")
        if not isinstance(sums, list) or len(sums) != self.num_row_groups \
                or hashlib.sha256("".join(map(str, sums)).encode()).hexdigest() != self.meta.get("fingerprint"):
            raise CacheError(f"{self.path}: its footer's checksums do not describe its {self.num_row_groups} row groups")
        for group in range(self.num_row_groups):
            self.read_row_group(group)
