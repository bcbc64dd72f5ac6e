"""The language task's entries under ``<cache root>/lm/``, as ``kdtune cache ls``, ``verify`` and ``prune`` see them.

The language task builds them (:mod:`kdtune.tasks.language.prepare`): token blocks (``blocks/<key>/``: a Parquet
file per split and ``blocks.json``), trained teachers (``teachers/<key>/``: ``model.pt`` and ``teacher.json``) and
the teachers' targets for the training split (``targets/<teacher key>-<layout>-<k>.parquet``). Here they are

* **described** from their records only: the Parquet footers (read with pyarrow, no row group) and the JSON
  sidecars, so a listing imports neither torch nor the task's readers;
* **verified** in full by the task's own readers (:func:`~kdtune.tasks.language.prepare.open_blocks`,
  :func:`~kdtune.tasks.language.prepare.load_teacher`, :func:`~kdtune.tasks.language.prepare.open_targets`: every
  row group's checksum, finite targets, ids in range, the teacher's weights against its record), which are also
  what a study runs on an entry it finds before using it;
* **pruned** by the rule of the image entries: created more than N days ago (their recorded time, else their
  files' newest), and abandoned temporaries after an hour or more. Targets whose teacher was pruned stay, as the
  logits of a pruned image teacher do: they record the sha256 of the weights they came from, and a study uses them
  only for a teacher with those weights.

They live in a local folder only (the language task memory-maps nothing remote): under an object-store root the
listing is empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kdtune.cache.entry_records import CacheEntry
from kdtune.cache.entry_records import created_ts
from kdtune.cache.store import Store
from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.errors import one_line


#: kind -> its folder under the root.
LM_DIRS = {"lm-blocks": "lm/blocks", "lm-teacher": "lm/teachers", "lm-targets": "lm/targets"}
_TMP = ".tmp"  # the language task's temporary names: <key>.tmp folders, <file>.tmp files


class LanguageEntries:
    """The language task's entries of one cache root."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def groups(self) -> list[tuple[str, str, list[pafs.FileInfo]]]:
        """(kind, key, files) of every entry, temporaries and lock files left out."""
        found: dict[tuple[str, str], list[pafs.FileInfo]] = {}
        for info in self._store.list("lm"):
            kind, key, _ = self._where(info)
            if kind is not None and not key.endswith(_TMP):
                found.setdefault((kind, key), []).append(info)
        return [(kind, key, files) for (kind, key), files in sorted(found.items())]

    def entries(self) -> list[CacheEntry]:
        """Every entry, described from its footers and sidecars (no row group is read: see :meth:`verify`)."""
        return [self.describe(kind, key, files) for kind, key, files in self.groups()]

    def describe(self, kind: str, key: str, files: list[pafs.FileInfo]) -> CacheEntry:
        base: dict[str, Any] = {"kind": kind, "key": key, "location": self._store.show(self._rel(kind, key)),
                                "size": sum(f.size or 0 for f in files)}
        describe: Callable[[str], dict[str, Any]] = {"lm-blocks": self._describe_blocks,
                                                     "lm-teacher": self._describe_teacher}.get(kind, self._describe_targets)
        try:
            fields = describe(key)
        except (CacheError, OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            return CacheEntry(**base, created=None, dataset=None, noise=None, teacher=None, accuracy=None, dtype=None,
                              problem=one_line(exc))
        return CacheEntry(**base, noise=None, **fields)

    def verify(self) -> list[CacheEntry]:
        """Every entry read in full by the task's own readers; the damaged ones, each with its ``problem``."""
        damaged = []
        for kind, key, files in self.groups():
            try:
                self._check(kind, key)
            except CacheError as exc:
                damaged.append(replace(self.describe(kind, key, files), problem=one_line(exc)))
        return damaged

    def prune(self, cutoff: float, *, dry_run: bool) -> list[CacheEntry]:
        """Remove the entries created before ``cutoff`` (a Unix time); return them."""
        removed = []
        for kind, key, files in self.groups():
            entry = self.describe(kind, key, files)
            if created_ts(entry.created, files) < cutoff:
                if not dry_run:
                    self._remove(kind, key)
                removed.append(entry)
        return removed

    def remove_temporaries(self, before: float) -> None:
        """Remove what killed builders left (``<key>.tmp`` folders, ``<file>.tmp`` files) untouched since ``before``."""
        newest: dict[str, float] = {}
        for info in self._store.list("lm"):
            kind, key, rel = self._where(info)
            if kind is not None and key.endswith(_TMP):
                newest[rel] = max(newest.get(rel, 0.0), (info.mtime_ns or 0) / 1e9)
        for rel, mtime in newest.items():
            if mtime < before:
                (self._store.delete_file if rel.startswith(LM_DIRS["lm-targets"]) else self._store.delete_dir)(rel)

    # -- where entries are ----------------------------------------------------------------------------------

    def _where(self, info: pafs.FileInfo) -> tuple[str | None, str, str]:
        """(kind, key, relative path of the entry) of a file under ``lm/``; kind None for anything else (locks)."""
        parts = self._store.relative(info.path).split("/")
        if len(parts) == 3 and parts[1] == "targets" and parts[2].endswith((".parquet", _TMP)):
            return "lm-targets", parts[2].removesuffix(".parquet"), "/".join(parts)
        if len(parts) == 4 and parts[1] in ("blocks", "teachers"):
            return ("lm-blocks" if parts[1] == "blocks" else "lm-teacher"), parts[2], "/".join(parts[:3])
        return None, "", ""

    @staticmethod
    def _rel(kind: str, key: str) -> str:
        return f"{LM_DIRS[kind]}/{key}.parquet" if kind == "lm-targets" else f"{LM_DIRS[kind]}/{key}"

    def _remove(self, kind: str, key: str) -> None:
        if kind == "lm-targets":
            self._store.delete_file(self._rel(kind, key))
        else:
            self._store.delete_dir(self._rel(kind, key))

    # -- described from records -----------------------------------------------------------------------------

    def _footer(self, rel: str, name: bytes) -> dict[str, Any]:
        """The kdtune record in a Parquet file's footer (no row group is read)."""
        with self._store.open(rel) as f:
            return dict(json.loads(pq.read_metadata(f).metadata[name]))

    def _json(self, rel: str) -> dict[str, Any]:
        return dict(json.loads(self._store.read(rel)))

    def _describe_blocks(self, key: str) -> dict[str, Any]:
        from kdtune.tasks.language.blocks import METADATA_KEY
        from kdtune.tasks.language.blocks import SPLITS
        from kdtune.tasks.language.prepare import BLOCKS_RECORD

        folder = self._rel("lm-blocks", key)
        footers = {name: self._footer(f"{folder}/{name}.parquet", METADATA_KEY) for name in SPLITS}
        record = self._record(f"{folder}/{BLOCKS_RECORD}")
        train = footers["train"]
        blocks = "/".join(str(footers[name]["rows"]) for name in SPLITS)
        return {"created": record.get("created"), "dataset": record.get("corpus"), "teacher": None, "accuracy": None,
                "dtype": train["dtype"], "detail": f"{record.get('tokenizer', train['tokenizer'])} tokenizer "
                f"({train['vocab_size']:,} ids), context {train['context']}; {blocks} blocks (train/val/test)"}

    def _describe_teacher(self, key: str) -> dict[str, Any]:
        record = self._json(f"{self._rel('lm-teacher', key)}/teacher.json")
        diagnostics = record["diagnostics"]
        return {"created": record.get("created"), "dataset": record.get("corpus"), "teacher": _teacher_label(record),
                "accuracy": diagnostics["test_accuracy"], "test_loss": diagnostics["test_loss"], "dtype": None,
                "detail": f"test loss {diagnostics['test_loss']:.4f} nats/token" + _text_settings(record)}

    def _describe_targets(self, key: str) -> dict[str, Any]:
        from kdtune.tasks.language.cache_codec import METADATA_KEY

        info = self._footer(self._rel("lm-targets", key), METADATA_KEY)
        teacher_key = str(info["meta"]["teacher"])
        teacher = self._record(f"{self._rel('lm-teacher', teacher_key)}/teacher.json")
        what = {"dense": f"dense ({info['vocab_size']:,} ids)",
                "topk": f"top-{info['k']} of {info['vocab_size']:,} ids",
                "sampled": f"{info['k']} samples of {info['vocab_size']:,} ids"}[info["layout"]]
        return {"created": info["meta"].get("created"), "dataset": teacher.get("corpus"),
                "teacher": _teacher_label(teacher) if teacher else f"teacher {teacher_key} (no longer in the cache)",
                "accuracy": None, "dtype": "float32",
                "detail": f"{what}, context {info['context']}; {info['rows']:,} training blocks"}

    def _record(self, rel: str) -> dict[str, Any]:
        """A sidecar that may be absent (an entry of an earlier version) or unreadable: empty then."""
        try:
            return self._json(rel)
        except (CacheError, ValueError, TypeError):
            return {}

    # -- verified by the task's readers ---------------------------------------------------------------------

    def _check(self, kind: str, key: str) -> None:
        from kdtune.tasks.language.prepare import load_teacher
        from kdtune.tasks.language.prepare import open_blocks
        from kdtune.tasks.language.prepare import open_targets

        local = self._store.local_path(self._rel(kind, key))
        if local is None:
            raise CacheError(f"{self._store.show(self._rel(kind, key))}: the language task's entries are checked in a "
                             "local cache folder only")
        try:
            {"lm-blocks": open_blocks, "lm-teacher": load_teacher, "lm-targets": open_targets}[kind](local)
        except (OSError, KeyError, TypeError, ValueError, SpecError, pa.ArrowException) as exc:  # a footer's record
            raise CacheError(f"{local}: damaged ({type(exc).__name__}: {one_line(exc, 200)})") from None


def _teacher_label(record: dict[str, Any]) -> str:
    recipe = record.get("teacher")
    if not recipe:
        return f"teacher, epoch {record.get('selected_epoch')} (recipe not recorded)"
    kwargs = ", ".join(f"{k} {v}" for k, v in sorted(dict(recipe.get("kwargs") or {}).items()))
    return (f"{recipe['arch']}{f' ({kwargs})' if kwargs else ''} seed {recipe['seed']}, epoch "
            f"{record.get('selected_epoch')}/{recipe['epochs']} ({recipe['select']})")


def _text_settings(record: dict[str, Any]) -> str:
    if "tokenizer" not in record:
        return ""
    return f"; {record['tokenizer']} tokenizer ({record['vocab_size']:,} ids), context {record['context']}"
