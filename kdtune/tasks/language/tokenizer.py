"""Tokenizers behind one tiny interface: ``name``, ``fingerprint``, ``vocab_size``, ``eos_id`` and ``encode``.

* ``"byte"`` (the default): a document's UTF-8 bytes are its ids 0-255, and id 256 ends a document (vocabulary
  257). Padding has no id of its own: token blocks are packed (documents concatenated, each followed by the end
  of document id) and the loss takes a boolean mask wherever a position is padding.
* ``"hf:<name>"``: ``transformers.AutoTokenizer.from_pretrained(name)``, from the local Hugging Face cache first and
  from the hub only when that fails and the machine can reach it (``HF_HUB_OFFLINE=1`` keeps it local);
  ``local_only=True`` never tries the hub.
* a path to a ``tokenizer.json`` (the ``tokenizers`` package's format, what ``Tokenizer.save`` writes).

The Hugging Face kinds need the optional extra (``pip install 'kdtune[lm]'``). The fingerprint (a sha256 of the
tokenizer's full serialised definition, or of the byte tokenizer's version) goes into every cache key built on
the tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol

from kdtune.errors import SpecError
from kdtune.errors import one_line


#: Bumped if the byte tokenizer's ids ever change.
BYTE_FORMAT = 1
#: End-of-document tokens looked for in a ``tokenizer.json`` (which has no notion of "eos" itself), in this order.
EOS_TOKENS = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")
LM_EXTRA = "pip install 'kdtune[lm]'"


class Tokenizer(Protocol):
    """What the language task needs from a tokenizer (read-only attributes, so frozen dataclasses satisfy it)."""

    @property
    def name(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``, without any special token added."""
        ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as ids 0-255 plus one end-of-document id (256): no training, no files, any text."""

    name: str = "byte"
    fingerprint: str = f"byte-v{BYTE_FORMAT}"
    vocab_size: int = 257
    eos_id: int = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``; end-of-document ids become newlines, broken UTF-8 sequences U+FFFD."""
        return bytes(10 if i == self.eos_id else i for i in ids).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (read from a ``tokenizer.json`` or taken from a fast ``transformers`` tokenizer)."""

    name: str
    fingerprint: str
    vocab_size: int
    eos_id: int
    backend: Any  # tokenizers.Tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.backend.decode(ids))


def load_tokenizer(spec: str = "byte", *, local_only: bool = False, field: str = "tokenizer") -> ByteTokenizer | HFTokenizer:
    """The tokenizer ``spec`` names: ``"byte"``, ``"hf:<name>"`` or a path to a ``tokenizer.json``.

    ``local_only`` never contacts the Hugging Face hub. Anything that cannot be loaded is one line naming
    ``field`` (:class:`SpecError`, exit code 2).
    """
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("hf:"):
        return _from_transformers(spec, local_only=local_only, field=field)
    if spec.endswith(".json"):
        return _from_file(spec, field=field)
    raise SpecError(field, spec, "unknown tokenizer; allowed: 'byte', 'hf:<name>' (a Hugging Face tokenizer) or a "
                    "path to a tokenizer.json")


def from_backend(backend: Any, name: str, *, field: str = "tokenizer") -> HFTokenizer:
    """Wrap a ``tokenizers.Tokenizer`` (as tests and users build one in memory) with its eos id and fingerprint."""
    eos = next((backend.token_to_id(token) for token in EOS_TOKENS if backend.token_to_id(token) is not None), None)
    if eos is None:
        raise SpecError(field, name, f"has no end-of-document token; add one of {', '.join(EOS_TOKENS)} to it")
    return _wrap(backend, name, eos)


def _wrap(backend: Any, name: str, eos: int) -> HFTokenizer:
    definition = backend.to_str()
    fingerprint = hashlib.sha256(definition.encode("utf-8")).hexdigest()
    return HFTokenizer(name=name, fingerprint=fingerprint, vocab_size=int(backend.get_vocab_size(with_added_tokens=True)),
                       eos_id=int(eos), backend=backend)


def _from_file(spec: str, *, field: str) -> HFTokenizer:
    try:
        from tokenizers import Tokenizer as Backend
    except ImportError:
        raise SpecError(field, spec, f"needs the 'tokenizers' package: {LM_EXTRA}") from None
    if not Path(spec).is_file():
        raise SpecError(field, spec, "no such file; give a tokenizer.json, 'byte' or 'hf:<name>'")
    try:
        backend = Backend.from_file(spec)
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise SpecError(field, spec, f"is not a tokenizer.json the tokenizers package can read ({one_line(exc, 120)})") from None
    return from_backend(backend, spec, field=field)


def _from_transformers(spec: str, *, local_only: bool, field: str) -> HFTokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SpecError(field, spec, f"Hugging Face tokenizers need the optional extra: {LM_EXTRA}") from None
    name = spec[len("hf:"):]
    tokenizer = None
    for local in ((True,) if local_only else (True, False)):
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
            break
        except Exception:  # OSError, ValueError, connection errors: try the hub next, or refuse below
            continue
    if tokenizer is None:
        where = "in the local Hugging Face cache" if local_only else "locally or on the Hugging Face hub"
        raise SpecError(field, spec, f"unknown tokenizer: not found {where}; allowed: 'byte', 'hf:<name>' of a "
                        "tokenizer you can load, or a path to a tokenizer.json")
    if not getattr(tokenizer, "is_fast", False):
        raise SpecError(field, spec, "has no fast (Rust) tokenizer; kdtune needs one (a tokenizer.json)")
    if tokenizer.eos_token_id is None:
        return from_backend(tokenizer.backend_tokenizer, spec, field=field)
    return _wrap(tokenizer.backend_tokenizer, spec, tokenizer.eos_token_id)
