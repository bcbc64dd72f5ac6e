"""What a cache entry records about itself, and how ``kdtune cache ls`` shows it.

Every entry's files carry their own records (teacher, dataset, diagnostics, when made): :func:`entry_metadata`
and :func:`imported_metadata` write them; :func:`entry_groups` and :func:`describe` read them back for a listing
without reading any logits. Kept apart from :class:`~kdtune.cache.logit_cache.LogitCache` because a listing
needs only the store and these records, never torch or a teacher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kdtune._version import __version__
from kdtune.cache.keys import CACHE_FORMAT_VERSION
from kdtune.cache.parquet import METADATA_KEY
from kdtune.cache.store import TMP_MARK
from kdtune.cache.store import MissingFile
from kdtune.cache.store import Store
from kdtune.cache.store import utc_now
from kdtune.errors import CacheError
from kdtune.errors import one_line


if TYPE_CHECKING:
    from kdtune.cache.teacher import Teacher
    from kdtune.core.data import DataBundle


_LOG = logging.getLogger(__name__)

ENTRY_DIRS = {"teacher": "teachers", "logits": "logits", "views": "views"}  # kind -> folder under the root


@dataclass(frozen=True)
class CacheEntry:
    """One entry as ``kdtune cache ls`` shows it; ``problem`` is set when it is damaged or unreadable."""

    kind: str  # "teacher", "logits", "views"; the language task's "lm-blocks", "lm-teacher", "lm-targets"
    key: str
    location: str
    size: int  # bytes, all files of the entry
    created: str | None  # ISO 8601, UTC
    dataset: str | None
    noise: str | None
    teacher: str | None
    accuracy: float | None  # teacher test accuracy (clean labels; a language model's: next-token accuracy)
    dtype: str | None
    problem: str | None = None
    test_loss: float | None = None  # a language teacher's test loss (nats/token)
    detail: str | None = None  # what else a language entry is: tokenizer and context, layout and k, test loss


def entry_metadata(
    key: str, tkey: str, teacher: Teacher, data: DataBundle, data_fp: str, dtype: str, diagnostics: dict[str, Any]
) -> dict[str, Any]:
    """What every split file of an entry records about where its logits came from."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return {
        "format_version": CACHE_FORMAT_VERSION,
        "key": key,
        "dtype": dtype,
        "teacher": {"key": tkey, "spec": teacher.spec.to_dict(), "selected_epoch": teacher.selected_epoch,
                    "val_accuracy": teacher.selected["val_accuracy"],
                    "test_accuracy": teacher.selected["test_accuracy"], "weights_fingerprint": teacher.fingerprint},
        "diagnostics": diagnostics,
        "dataset": {"description": data.description, "fingerprint": data_fp, "name": data.name,
                    "num_classes": data.num_classes, "preprocessing_version": PREPROCESSING_VERSION},
        "kdtune_version": __version__,
        "created": utc_now(),
    }


def entry_groups(store: Store) -> list[tuple[str, str, list[pafs.FileInfo]]]:
    """(kind, key, files) for every entry directory under the root, temporary files left out."""
    kinds = {folder: kind for kind, folder in ENTRY_DIRS.items()}
    groups: dict[tuple[str, str], list[pafs.FileInfo]] = {}
    for info in store.list(""):
        parts = store.relative(info.path).split("/")
        kind = kinds.get(parts[0])
        if kind is None or len(parts) != 3 or TMP_MARK in parts[2]:
            continue
        groups.setdefault((kind, parts[1]), []).append(info)
    return [(kind, key, files) for (kind, key), files in sorted(groups.items())]


def describe(store: Store, kind: str, key: str, files: list[pafs.FileInfo]) -> CacheEntry:
    """An entry described from its records only (no checksums); an unreadable one gets its ``problem``."""
    base: dict[str, Any] = {"kind": kind, "key": key, "location": store.show(f"{ENTRY_DIRS[kind]}/{key}"),
            "size": sum(f.size or 0 for f in files)}
    try:
        fields = {"teacher": _describe_teacher, "views": _describe_views}.get(kind, _describe_logits)(store, key)
    except (CacheError, OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        return CacheEntry(**base, created=None, dataset=None, noise=None, teacher=None, accuracy=None,
                          dtype=None, problem=one_line(exc))
    return CacheEntry(**base, **fields)


def _describe_teacher(store: Store, key: str) -> dict[str, Any]:
    meta = json.loads(store.read(f"teachers/{key}/teacher.json"))
    return {"created": meta["cache"]["created"], **_dataset_fields(meta["dataset"]["description"]),
            "teacher": _teacher_label(meta["spec"], meta["selected_epoch"]),
            "accuracy": meta["test_accuracy"], "dtype": None}


def _describe_logits(store: Store, key: str) -> dict[str, Any]:
    meta = _parquet_records(store, f"logits/{key}/train.parquet")
    teacher = meta["teacher"]
    return {"created": meta["created"], **_dataset_fields(meta["dataset"]["description"]),
            "teacher": _teacher_label(teacher["spec"], teacher["selected_epoch"]),
            "accuracy": meta["diagnostics"]["test_accuracy"], "dtype": meta["dtype"]}


def _describe_views(store: Store, key: str) -> dict[str, Any]:
    meta = _parquet_records(store, f"views/{key}/train.parquet")
    teacher = meta["teacher"]
    spec = meta["view_spec"]
    dtype = "float32" if meta.get("top_k") is None else f"float32 top-{meta['top_k']}"
    return {"created": meta["created"], **_dataset_fields(meta["dataset"]["description"]),
            "teacher": f"{_teacher_label(teacher['spec'], teacher['selected_epoch'])}; {spec['views']} views "
            f"(shift {spec['augment']['shift']}, rotate {spec['augment']['rotate']:g})",
            "accuracy": teacher["test_accuracy"], "dtype": dtype}


def _parquet_records(store: Store, path: str) -> dict[str, Any]:
    """The records of one Parquet file, from its footer only (no logits are read)."""
    with store.open(path) as f:
        return dict(json.loads(pq.read_metadata(f).metadata[METADATA_KEY]))


def created_ts(created: str | None, files: list[pafs.FileInfo]) -> float:
    """When an entry was made: its recorded creation time, else its newest file's mtime."""
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return max((f.mtime_ns or 0) / 1e9 for f in files)


def rebuild_dataset(record: dict[str, Any], loaded: dict[str, DataBundle | None]) -> DataBundle | None:
    """The dataset an entry was built from, rebuilt from its description when that is possible here and gives
    the recorded fingerprint; None otherwise (a loader is never called: verifying must not run code)."""
    from kdtune.tasks.datasets import load_dataset

    description = dict(record.get("description") or {})
    text = json.dumps(description, sort_keys=True, default=str)
    if text not in loaded:
        name = description.pop("name", None)
        data = None
        if isinstance(name, str) and ":" not in name and name != "linear":
            try:
                data = load_dataset(name, **description)
            except Exception:  # files or data root not here, an option this version does not know: not checkable
                data = None
        loaded[text] = data
    data = loaded[text]
    return data if data is not None and data.fingerprint() == record.get("fingerprint") else None


def warn_damage(exc: CacheError, quiet: bool) -> None:
    """Say that an entry found damaged under the build lock is being rebuilt (a missing one is just built)."""
    if not quiet and not isinstance(exc, MissingFile):
        _LOG.warning("%s; rebuilding it", exc)


def _dataset_fields(description: dict[str, Any]) -> dict[str, Any]:
    noise = description.get("noise_level")
    label = None if noise is None else f"{noise:.0%} {description.get('noise_type', '')}".strip()
    return {"dataset": description.get("name"), "noise": label}


def _teacher_label(spec: dict[str, Any], selected_epoch: int | None) -> str:
    if spec.get("imported"):
        return f"imported logits ({spec['imported']})"
    if spec.get("checkpoint"):
        return f"{spec['arch']} from checkpoint {spec['checkpoint'].rsplit('/', 1)[-1]}"
    if spec.get("ensemble", 1) > 1:
        last = spec["seed"] + spec["ensemble"] - 1
        return f"ensemble of {spec['ensemble']} {spec['arch']} (seeds {spec['seed']}-{last}), {spec['epochs']} epochs " \
               f"({spec['select']})"
    return f"{spec['arch']} seed {spec['seed']}, epoch {selected_epoch}/{spec['epochs']} ({spec['select']})"

