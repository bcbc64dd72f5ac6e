"""A corpus is a sequence of documents (strings), read from its source one document at a time, as often as needed,
and never held whole. Splits are made by document, so a document is the unit of leakage.

The default corpus (``python-docs``) needs no download: it is English prose that ships with every CPython.

* ``pydoc_data.topics.topics``: the 79 topics of the Python language reference that ``help()`` shows (about
  465 KB on Python 3.11), one document per topic;
* the docstrings of the standard library's top-level modules (``<stdlib>/*.py``, read with :mod:`ast`, never
  imported), one document per module: its module docstring then every class and function docstring of at least
  :data:`MIN_DOCSTRING` characters, in source order (157 modules, about 815 KB on Python 3.11).

The topics alone are few and very uneven (the five largest are 43% of the text), which makes a split by
document noisy; the docstrings add 157 documents of similar kind. Together: 236 documents, about 1.28 MB of text
(1.28 M byte-level tokens). The corpus differs between Python versions; the blocks' fingerprint (which goes into
cache keys) covers that. It is built once into a list (parsing 157 modules takes seconds, and 1.3 MB is small);
a :class:`Corpus` then reads that list exactly as it reads a file.

A user's own text, streamed from the file:

* ``.txt``: documents are separated by one or more blank lines (a line holding only whitespace); a directory
  means every ``*.txt`` file in it, in name order, each split the same way. Read :data:`READ_BYTES` at a time;
  a document is held whole only until it is handed on;
* ``.jsonl``: one JSON object per line, the document in its ``text_field`` (default ``"text"``), line by line;
* ``.parquet``: the document in the string column ``text_field``, read a row group at a time (only that column),
  handed on :data:`PARQUET_BATCH_ROWS` documents at a time.

Refused with one line (field, value, what is allowed): a missing file or an unknown suffix, a binary file (a NUL
byte, with its byte offset in the file), text that is not UTF-8 (with the byte offset in the file), a JSON line or
Parquet column without the text field, and a corpus without any non-blank document.

**Two passes, why.** Splitting by document needs the number of documents (the split is a seeded permutation of
document indices, :func:`kdtune.tasks.language.blocks.split_documents`), and a corpus larger than memory cannot
be held to count it. So :func:`load_corpus` reads the source through once: it counts the documents, computes
their content fingerprint (for cache keys) and raises every refusal above before anything is written. Every later
pass (tokenizing into the three splits' files, all open at once) reads the source again in corpus order, and
checks that it still holds the same documents. Within a split, documents are therefore packed in corpus order,
not in the permutation's order: keeping the permuted order would need random access to documents (an index of
file offsets, and a seek per document) for no gain, since training visits the blocks in a seeded order anyway.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sysconfig
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kdtune.errors import SpecError


DEFAULT_CORPUS = "python-docs"
#: Shorter docstrings (``"Return self."``) are mostly boilerplate; they are left out of the default corpus.
MIN_DOCSTRING = 80
SUFFIXES = (".txt", ".jsonl", ".parquet")
#: Bytes of a ``.txt`` file read at a time: large enough that reading is not the cost, small next to memory (text
#: decodes to up to 4 bytes a character in Python, and the read, its text and the pending document coexist).
READ_BYTES = 2**18
#: Documents of a Parquet file turned into Python strings at a time (Arrow holds the rest of the row group).
PARQUET_BATCH_ROWS = 64
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


class Corpus:
    """Documents read from their source on each iteration, one at a time; blank documents are dropped.

    Made by :func:`load_corpus`, which reads the source once to validate and count it. ``len()`` and
    :attr:`fingerprint` are of that first pass. Each later full pass must find the same documents, or it is refused
    in one line (the file changed while kdtune read it), so the blocks always match the key they are stored under.
    """

    def __init__(self, name: str, read: Callable[[], Iterable[str]], *, field: str = "dataset.corpus") -> None:
        self.name, self.field = name, field
        self._read = read
        self._first = True
        #: Non-blank documents, and a sha256 over their UTF-8 text (each preceded by its length, 8 bytes little-endian).
        self.count, self.fingerprint = 0, ""
        for _ in self:  # the first pass: every refusal is raised here, before anything is written
            pass

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        digest = hashlib.sha256()
        count = 0
        for doc in self._read():
            if not doc.strip():
                continue
            if not self._first and count == self.count:
                raise self._changed()
            data = doc.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
            count += 1
            yield doc
        if not count:
            raise SpecError(self.field, self.name, "holds no text: the corpus needs at least one non-blank document")
        if self._first:
            self.count, self.fingerprint, self._first = count, digest.hexdigest(), False
        elif (count, digest.hexdigest()) != (self.count, self.fingerprint):
            raise self._changed()

    def _changed(self) -> SpecError:
        return SpecError(self.field, self.name, f"changed while it was read (it held {self.count} documents when "
                         "first read); leave the corpus unchanged while kdtune prepares it")


def load_corpus(source: str | Path | None = None, *, text_field: str = "text", field: str = "dataset.corpus") -> Corpus:
    """The documents of ``source``: ``None`` or ``"python-docs"`` for the default corpus, else a path to a
    ``.txt``, ``.jsonl`` or ``.parquet`` file or a directory of ``.txt`` files, read once here to validate and count
    them (see the module's docstring). ``field`` names the spec field in error messages.
    """
    if source is None or source == DEFAULT_CORPUS:
        docs = default_corpus()
        return Corpus(DEFAULT_CORPUS, lambda: docs, field=field)
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise SpecError(field, str(source), "is a directory without *.txt files; give a .txt, .jsonl or "
                            ".parquet file, a directory of .txt files, or 'python-docs'")
        return Corpus(str(source), lambda: (doc for file in files for doc in _txt_documents(file, field)), field=field)
    if not path.is_file():
        raise SpecError(field, str(source), f"no such file; give a {', '.join(SUFFIXES)} file, a directory of .txt "
                        f"files, or '{DEFAULT_CORPUS}'")
    if path.suffix == ".txt":
        return Corpus(str(source), lambda: _txt_documents(path, field), field=field)
    if path.suffix == ".jsonl":
        return Corpus(str(source), lambda: _jsonl_documents(path, text_field, field), field=field)
    if path.suffix == ".parquet":
        return Corpus(str(source), lambda: _parquet_documents(path, text_field, field), field=field)
    raise SpecError(field, str(source), f"has an unknown suffix; allowed: {', '.join(SUFFIXES)}, a directory "
                    f"of .txt files, or '{DEFAULT_CORPUS}'")


def default_corpus() -> list[str]:
    """The Python reference's topics (one document each, sorted by name), then one document of docstrings per
    top-level standard library module (sorted by file name)."""
    from pydoc_data.topics import topics

    docs = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        doc = module_docstrings(path)
        if doc:
            docs.append(doc)
    return docs


def module_docstrings(path: Path) -> str:
    """The docstrings of one Python source file, module first, then classes and functions in source order
    (each at least :data:`MIN_DOCSTRING` characters), joined by blank lines; "" when the file does not parse."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    parts = [ast.get_docstring(tree) or ""]
    stack: list[ast.AST] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node) or ""
            if len(text) >= MIN_DOCSTRING:
                parts.append(text)
            stack.extend(reversed(node.body))
    return "\n\n".join(part for part in parts if part)


def _decode(data: bytes, offset: int, path: Path, field: str, *, final: bool) -> tuple[str, bytes]:
    """``data`` (which starts at byte ``offset`` of ``path``) as text, and the bytes of a character cut off at its end
    (kept for the next read unless ``final``). A NUL byte or bytes that are not UTF-8 are refused with their offset."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SpecError(field, str(path), f"is a binary file (NUL byte at offset {offset + nul}); the corpus must be "
                        "UTF-8 text")
    try:
        return data.decode("utf-8"), b""
    except UnicodeDecodeError as exc:
        if not final and exc.reason == "unexpected end of data" and exc.end == len(data):
            return data[:exc.start].decode("utf-8"), data[exc.start:]
        raise SpecError(field, str(path), f"is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset "
                        f"{offset + exc.start}); re-encode it as UTF-8") from None


def _txt_documents(path: Path, field: str) -> Iterator[str]:
    """The documents of a ``.txt`` file, as ``_BLANK_LINES.split(text.strip())`` gives them, read
    :data:`READ_BYTES` at a time.

    A separator found in the text read so far is final unless it reaches the end of that text (more whitespace may
    follow). One not found yet can only begin in the trailing whitespace of the pending text, so only that part is
    searched again.
    """
    pending, cut, offset = "", b"", 0
    with path.open("rb") as f:
        while raw := f.read(READ_BYTES):
            text, cut = _decode(cut + raw, offset - len(cut), path, field, final=False)
            offset += len(raw)
            if not pending:
                text = text.lstrip()  # the file's leading whitespace (a document never starts with any)
            search_from = len(pending.rstrip())
            pending += text
            start = 0
            for match in _BLANK_LINES.finditer(pending, search_from):
                if match.end() == len(pending):
                    break
                yield pending[start:match.start()]
                start = match.end()
            pending = pending[start:]
    _decode(cut, offset - len(cut), path, field, final=True)  # a character cut off by the end of the file
    tail = pending.rstrip()  # a pending document never starts with whitespace
    if tail:
        yield tail


def _jsonl_documents(path: Path, text_field: str, field: str) -> Iterator[str]:
    offset = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line, _ = _decode(raw, offset, path, field, final=True)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(field, str(path), f"line {number} is not JSON ({exc.msg}); a .jsonl corpus holds one "
                                "JSON object per line") from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise SpecError(f"{field}.text_field", text_field, f"line {number} of {path} has no string under this "
                                "key; set text_field to the key that holds each document's text")
            yield text


def _parquet_documents(path: Path, text_field: str, field: str) -> Iterator[str]:
    """The non-null strings of column ``text_field``, a row group at a time (a plain read, not memory-mapped)."""
    try:
        file = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:  # a file that is not Parquet
        raise SpecError(field, str(path), f"is not a readable Parquet file ({type(exc).__name__})") from None
    with file:
        schema = file.schema_arrow
        if text_field not in schema.names:
            raise SpecError(f"{field}.text_field", text_field, f"is not a column of {path}; its columns: "
                            f"{', '.join(schema.names)}")
        kind = schema.field(text_field).type
        if str(kind) not in ("string", "large_string", "string_view"):
            raise SpecError(f"{field}.text_field", text_field, f"is a {kind} column of {path}; it must hold strings")
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                if text:
                    yield text
