"""A corpus is a list of documents (strings). Splits are made by document, so a document is the unit of leakage.

The default corpus (``python-docs``) needs no download: it is English prose that ships with every CPython.

* ``pydoc_data.topics.topics``: the 79 topics of the Python language reference that ``help()`` shows (about
  465 KB on Python 3.11), one document per topic;
* the docstrings of the standard library's top-level modules (``<stdlib>/*.py``, read with :mod:`ast`, never
  imported), one document per module: its module docstring then every class and function docstring of at least
  :data:`MIN_DOCSTRING` characters, in source order (157 modules, about 815 KB on Python 3.11).

The topics alone are few and very uneven (the five largest are 43% of the text), which makes a split by
document noisy; the docstrings add 157 documents of similar kind. Together: 236 documents, about 1.28 MB of text
(1.28 M byte-level tokens). The corpus differs between Python versions; the blocks' fingerprint (which goes into
cache keys) covers that.

A user's own text:

* ``.txt``: documents are separated by one or more blank lines (a line holding only whitespace); a directory
  means every ``*.txt`` file in it, in name order, each split the same way;
* ``.jsonl``: one JSON object per line, the document in its ``text_field`` (default ``"text"``);
* ``.parquet``: the document in the string column ``text_field``.

Refused with one line (field, value, what is allowed): a missing file or an unknown suffix, a binary file (a NUL
byte), text that is not UTF-8 (with the byte offset), a JSON line or Parquet column without the text field, and
a corpus without any non-blank document.
"""

from __future__ import annotations

import ast
import json
import re
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq

from kdtune.errors import SpecError


DEFAULT_CORPUS = "python-docs"
#: Shorter docstrings (``"Return self."``) are mostly boilerplate; they are left out of the default corpus.
MIN_DOCSTRING = 80
SUFFIXES = (".txt", ".jsonl", ".parquet")
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def load_corpus(source: str | Path | None = None, *, text_field: str = "text", field: str = "dataset.corpus") -> list[str]:
    """The documents of ``source``: ``None`` or ``"python-docs"`` for the default corpus, else a path to a
    ``.txt``, ``.jsonl`` or ``.parquet`` file or a directory of ``.txt`` files. Blank documents are dropped.

    ``field`` names the spec field in error messages.
    """
    if source is None or source == DEFAULT_CORPUS:
        docs = default_corpus()
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                raise SpecError(field, str(source), "is a directory without *.txt files; give a .txt, .jsonl or "
                                ".parquet file, a directory of .txt files, or 'python-docs'")
            docs = [doc for file in files for doc in _txt_documents(file, field)]
        elif not path.is_file():
            raise SpecError(field, str(source), f"no such file; give a {', '.join(SUFFIXES)} file, a directory of .txt "
                            f"files, or '{DEFAULT_CORPUS}'")
        elif path.suffix == ".txt":
            docs = _txt_documents(path, field)
        elif path.suffix == ".jsonl":
            docs = _jsonl_documents(path, text_field, field)
        elif path.suffix == ".parquet":
            docs = _parquet_documents(path, text_field, field)
        else:
            raise SpecError(field, str(source), f"has an unknown suffix; allowed: {', '.join(SUFFIXES)}, a directory "
                            f"of .txt files, or '{DEFAULT_CORPUS}'")
    docs = [doc for doc in docs if doc.strip()]
    if not docs:
        raise SpecError(field, str(source or DEFAULT_CORPUS), "holds no text: the corpus needs at least one non-blank "
                        "document")
    return docs


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


def _read_text(path: Path, field: str) -> str:
    """A file's text, refusing binary content (a NUL byte) and bytes that are not UTF-8."""
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise SpecError(field, str(path), f"is a binary file (NUL byte at offset {nul}); the corpus must be UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(field, str(path), f"is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}); re-encode it as UTF-8") from None


def _txt_documents(path: Path, field: str) -> list[str]:
    return _BLANK_LINES.split(_read_text(path, field).strip())


def _jsonl_documents(path: Path, text_field: str, field: str) -> list[str]:
    docs = []
    for number, line in enumerate(_read_text(path, field).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(field, str(path), f"line {number} is not JSON ({exc.msg}); a .jsonl corpus holds one JSON "
                            "object per line") from None
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise SpecError(f"{field}.text_field", text_field, f"line {number} of {path} has no string under this "
                            "key; set text_field to the key that holds each document's text")
        docs.append(text)
    return docs


def _parquet_documents(path: Path, text_field: str, field: str) -> list[str]:
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise SpecError(field, str(path), f"is not a readable Parquet file ({type(exc).__name__})") from None
    if text_field not in schema.names:
        raise SpecError(f"{field}.text_field", text_field, f"is not a column of {path}; its columns: "
                        f"{', '.join(schema.names)}")
    kind = schema.field(text_field).type
    if str(kind) not in ("string", "large_string", "string_view"):
        raise SpecError(f"{field}.text_field", text_field, f"is a {kind} column of {path}; it must hold strings")
    return [text for text in pq.read_table(path, columns=[text_field]).column(text_field).to_pylist() if text]
