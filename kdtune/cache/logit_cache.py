"""The logit cache itself: :class:`LogitCache` prepares, imports, reads, lists, verifies and prunes entries.

It composes the package's parts: keys (:mod:`kdtune.cache.keys`), the Parquet codec (:mod:`kdtune.cache.parquet`),
the filesystem (:mod:`kdtune.cache.store`), the build lock (:mod:`kdtune.cache.lock`), the entries' records
(:mod:`kdtune.cache.entry_records`), teacher checkpoints (:mod:`kdtune.cache.teacher_entries`), imported logits
(:mod:`kdtune.cache.imported`) and the per-view entries (:mod:`kdtune.cache.view_entries`); ``ls``, ``verify`` and
``prune`` also cover the language task's entries under the same root (:mod:`kdtune.cache.lm_entries`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pyarrow as pa

from kdtune.cache.entry_records import ENTRY_DIRS
from kdtune.cache.entry_records import CacheEntry
from kdtune.cache.entry_records import created_ts
from kdtune.cache.entry_records import describe
from kdtune.cache.entry_records import entry_groups
from kdtune.cache.entry_records import entry_metadata
from kdtune.cache.entry_records import rebuild_dataset
from kdtune.cache.entry_records import warn_damage
from kdtune.cache.imported import check_imported
from kdtune.cache.imported import content_fingerprint
from kdtune.cache.imported import imported_metadata
from kdtune.cache.keys import checkpoint_teacher_key
from kdtune.cache.keys import imported_logits_key
from kdtune.cache.keys import logits_key
from kdtune.cache.keys import teacher_key
from kdtune.cache.lm_entries import LanguageEntries
from kdtune.cache.lock import LocalLock
from kdtune.cache.parquet import DTYPES
from kdtune.cache.parquet import SPLITS
from kdtune.cache.parquet import InvalidFile
from kdtune.cache.parquet import decode
from kdtune.cache.parquet import encode
from kdtune.cache.parquet import labels_match
from kdtune.cache.store import TMP_MARK
from kdtune.cache.store import MissingFile
from kdtune.cache.store import Store
from kdtune.cache.store import default_cache_root
from kdtune.cache.teacher_entries import check_teacher_files
from kdtune.cache.teacher_entries import read_teacher
from kdtune.cache.teacher_entries import write_teacher
from kdtune.cache.tensors import float32_tensor
from kdtune.cache.view_entries import ViewEntries
from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.errors import one_line


if TYPE_CHECKING:  # torch and the core load only where an entry is built or read: `kdtune cache ls` is quick
    import torch

    from kdtune.cache.teacher import Teacher
    from kdtune.cache.teacher import TeacherSpec
    from kdtune.core.data import DataBundle
    from kdtune.core.train import EpochMetrics
    from kdtune.core.train import TeacherLogits
    from kdtune.tasks.image.views import ViewLogits
    from kdtune.tasks.image.views import ViewSpec


@dataclass(frozen=True)
class PreparedTeacher:
    """What :meth:`LogitCache.prepare` returns.

    ``logits`` are CPU float32 tensors sharing memory with ``arrays`` (the decoded Parquet columns, read-only,
    in the stored dtype; a float16 entry is widened to float32 for ``logits``, which copies). Treat both as
    read-only: they are the cache's single in-memory copy.
    """

    key: str  # the logits entry
    teacher_key: str | None  # the teacher checkpoint (None for imported logits)
    teacher: Teacher | None  # None for imported logits: there is no teacher model
    logits: TeacherLogits
    arrays: dict[str, np.ndarray]  # split -> (N, K) read-only
    diagnostics: dict[str, Any]  # teacher_diagnostics() of the float32 logits, computed when built
    hit: bool  # nothing was trained and no teacher forward pass ran
    trained: bool  # the teacher was trained by this call
    location: str  # where the logits entry lives (credentials redacted)


class LogitCache:
    """A cache root: a local folder (default :func:`default_cache_root`) or a pyarrow filesystem URI.

    URIs are anything :meth:`pyarrow.fs.FileSystem.from_uri` accepts, e.g. ``file:///data/kdtune``,
    ``gs://bucket/prefix`` or ``s3://bucket/prefix?region=eu-west-1&endpoint_override=host:port&scheme=http``
    (credentials come from the usual environment variables; any in the URI are redacted from messages).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._store = Store(root if root is not None else default_cache_root())
        self._views = ViewEntries(self._store, self._lock)
        self._lm = LanguageEntries(self._store)

    @property
    def location(self) -> str:
        return self._store.show("")

    def prepare(
        self,
        spec: TeacherSpec,
        data: DataBundle,
        *,
        dtype: str = "float32",
        on_epoch: Callable[[EpochMetrics], None] | None = None,
        device: torch.device | str | None = None,
        threads: int | None = None,
        full_curve: bool = False,
    ) -> PreparedTeacher:
        """The teacher for ``spec`` on ``data`` and its logits: from the cache, or built once and cached.

        Args:
            spec: how the teacher is trained (its identity).
            data: the dataset; its fingerprint is part of every key.
            dtype: ``float32`` or ``float16`` for the stored logits (float16 halves the files; its rounding
                error stays below 0.01 for logits under 32 in magnitude).
            on_epoch: called after each teacher epoch, only when the teacher is trained.
            device: where the teacher trains and runs (default: CUDA when available, else CPU).
            threads: CPU threads for torch while training (``None`` leaves the setting alone).
            full_curve: measure test and flipped-label metrics at every teacher epoch, not only at the selected
                one (:func:`~kdtune.cache.teacher.train_teacher`); a cached teacher keeps the curve it was built with.
        """
        from kdtune.cache.teacher import train_teacher

        if dtype not in DTYPES:
            raise SpecError("dtype", dtype, f"must be one of {', '.join(DTYPES)}")
        if spec.logits:
            return self._prepare_imported(spec.logits, data)
        if spec.checkpoint:
            return self._prepare_checkpoint(spec, data, dtype, device)
        spec = spec.for_device(device)  # the precision that will run is the teacher's identity
        data_fp = data.fingerprint()
        tkey = teacher_key(spec, data_fp)
        _, found = self._lookup(tkey, data, data_fp, dtype, quiet=True)
        if found is not None:
            return found
        with self._lock(tkey):
            teacher, found = self._lookup(tkey, data, data_fp, dtype, quiet=False)
            if found is not None:  # built by another process while we waited
                return found
            trained = teacher is None
            if teacher is None:
                teacher = train_teacher(spec, data, on_epoch=on_epoch, device=device, threads=threads,
                                        full_curve=full_curve)
                if not all(bool(param.isfinite().all()) for param in teacher.model.parameters()):
                    raise CacheError(f"the teacher {spec.arch} diverged in training: its weights are not finite "
                                     "(lower teacher.lr or teacher.weight_decay); nothing was cached")
                write_teacher(self._store, tkey, teacher, data, data_fp)
            return self._build_logits(tkey, teacher, data, data_fp, dtype, device=device, trained=trained)

    def prepare_views(self, prepared: PreparedTeacher, data: DataBundle, spec: ViewSpec, *, top_k: int | None = None,
                      max_bytes: int | None = None, device: torch.device | str | None = None) -> ViewLogits:
        """The teacher's logits for the V views of every training image: :meth:`ViewEntries.prepare`."""
        return self._views.prepare(prepared, data, spec, top_k=top_k, max_bytes=max_bytes, device=device)

    def views_cached(self, logits_key: str, spec: ViewSpec, top_k: int | None) -> tuple[str, bool]:
        """The key of the per-view entry on ``logits_key`` and whether it is cached: :meth:`ViewEntries.cached`."""
        return self._views.cached(logits_key, spec, top_k)

    def plan(self, spec: TeacherSpec, data: DataBundle, *, dtype: str = "float32") -> dict[str, Any]:
        """What :meth:`prepare` would do for ``spec`` on ``data``, doing none of it (``kdtune plan``).

        Returns ``source`` (trained | checkpoint | imported), ``teacher_key``, ``teacher_cached`` (None where no
        teacher is stored), ``logits_key`` (None while the teacher is to be trained: its weights are not known),
        ``logits_cached`` and ``action``: ``cached``, ``compute logits`` (one teacher forward pass),
        ``train teacher`` or ``missing`` (imported logits not in this cache; ``problem`` says why).
        """
        from kdtune.cache.teacher import load_checkpoint_teacher

        data_fp = data.fingerprint()
        if spec.logits:
            try:
                self._read_logits(spec.logits, data)
            except CacheError as exc:
                problem = (f"teacher.logits = {spec.logits!r} is not in the cache at {self.location} (import logits "
                           "with `kdtune cache import`)") if isinstance(exc, MissingFile) else str(exc)
                return {"source": "imported", "teacher_key": None, "teacher_cached": None, "logits_key": spec.logits,
                        "logits_cached": False, "action": "missing", "problem": problem}
            return {"source": "imported", "teacher_key": None, "teacher_cached": None, "logits_key": spec.logits,
                    "logits_cached": True, "action": "cached", "problem": None}
        if spec.checkpoint:
            teacher = load_checkpoint_teacher(spec, data, check=False)
            key = logits_key(teacher.fingerprint, data_fp, dtype)
            cached = self._has_logits(key, data)
            return {"source": "checkpoint", "teacher_key": checkpoint_teacher_key(teacher.fingerprint, data_fp),
                    "teacher_cached": None, "logits_key": key, "logits_cached": cached,
                    "action": "cached" if cached else "compute logits", "problem": None}
        tkey = teacher_key(spec.for_device(None), data_fp)  # as this machine would train it
        stored, found = self._lookup(tkey, data, data_fp, dtype, quiet=True)
        lkey = found.key if found else (logits_key(stored.fingerprint, data_fp, dtype) if stored else None)
        action = "cached" if found else "compute logits" if stored else "train teacher"
        return {"source": "trained", "teacher_key": tkey, "teacher_cached": stored is not None, "logits_key": lkey,
                "logits_cached": found is not None, "action": action, "problem": None}

    def import_logits(self, arrays: dict[str, np.ndarray], data: DataBundle, *, source: str,
                      dtype: str = "float32") -> PreparedTeacher:
        """Store precomputed teacher logits for ``data`` (split -> (N, K) array) as a verified cache entry.

        Checked first, each failure one :class:`DataError` line naming the split and row: every split present,
        two-dimensional and floating point, its rows equal to the split's size, its columns to
        ``data.num_classes``, every value finite. The entry is keyed by its content and the dataset's samples
        (:func:`imported_logits_key`); importing the same logits again returns the existing entry.
        """
        from kdtune.core.metrics import teacher_diagnostics
        from kdtune.core.train import TeacherLogits

        if dtype not in DTYPES:
            raise SpecError("dtype", dtype, f"must be one of {', '.join(DTYPES)}")
        checked = check_imported(arrays, data, source)
        content = content_fingerprint(checked, dtype)
        samples = data.samples_fingerprint()
        key = imported_logits_key(content, samples, dtype)
        with self._lock(key):
            if not self._has_logits(key, data):
                logits = TeacherLogits(*(float32_tensor(checked[name].astype(DTYPES[dtype][0]))
                                         for name in SPLITS))
                diagnostics = teacher_diagnostics(logits, data)
                meta = imported_metadata(key, content, samples, source, data, dtype, diagnostics)
                for name, split in zip(SPLITS, (data.train, data.val, data.test)):
                    self._store.write(f"logits/{key}/{name}.parquet",
                                      encode(checked[name].astype(DTYPES[dtype][0]), split, {**meta, "split": name}))
        return self._prepare_imported(key, data)

    def read(self, key: str, data: DataBundle | None = None) -> dict[str, np.ndarray]:
        """The verified logits of entry ``key``: split -> (N, K) read-only array in the stored dtype.

        For workers that get the key from a driver (:attr:`PreparedTeacher.key`) and need no teacher. With
        ``data`` the rows and labels are checked against it too. Raises :class:`CacheError` naming the file
        when the entry is missing or damaged.
        """
        if data is not None:
            return self._read_logits(key, data)[0]
        return {name: self._read_split(f"logits/{key}/{name}.parquet", key)[0] for name in SPLITS}

    def entries(self) -> list[CacheEntry]:
        """Every entry under the root, the language task's included, described from its metadata only (no
        checksums: see :meth:`verify`)."""
        return [describe(self._store, kind, key, files) for kind, key, files in entry_groups(self._store)] + \
            self._lm.entries()

    def verify(self) -> list[CacheEntry]:
        """Read every entry in full and return the damaged ones, each with its ``problem``.

        A logits entry is checked file by file (Parquet page CRCs, schema, rows, the sha256 of its logits) and
        as a whole: each split file must hold its own split (``train.parquet`` the train split, ...) of one
        dataset, and where that dataset can be rebuilt here from the entry's description (the built-in
        datasets, local data files; never a loader, which would run code) its rows and labels must match it.
        The language task's entries are read in full by its own readers (:mod:`kdtune.cache.lm_entries`).
        Not defended against: someone who rewrites a file together with its embedded checksum and records
        (``docs/security.md``).
        """
        damaged = []
        datasets: dict[str, DataBundle | None] = {}
        for kind, key, files in entry_groups(self._store):
            entry = describe(self._store, kind, key, files)
            try:
                if kind == "teacher":
                    check_teacher_files(self._store, key)
                elif kind == "views":
                    self._views.verify(key, datasets)
                else:
                    self._verify_logits(key, datasets)
            except CacheError as exc:
                damaged.append(replace(entry, problem=str(exc)))
        return damaged + self._lm.verify()

    def _verify_logits(self, key: str, datasets: dict[str, DataBundle | None]) -> None:
        metas = {}
        for name in SPLITS:
            path = f"logits/{key}/{name}.parquet"
            array, _, meta = self._read_split(path, key)
            bad = int((~np.isfinite(array).all(axis=1)).sum()) if array.ndim == 2 else 0
            if bad:  # intact bytes of a diverged teacher are still unusable
                raise CacheError(f"{self._store.show(path)}: {bad} of {len(array)} rows of logits are not finite")
            if meta.get("split") != name:
                raise CacheError(f"{self._store.show(path)}: holds the {meta.get('split')!r} split, not {name!r}")
            metas[name] = meta
        if len({json.dumps(m.get("dataset"), sort_keys=True) for m in metas.values()}) > 1:
            raise CacheError(f"{self._store.show(f'logits/{key}')}: its split files come from different datasets")
        data = rebuild_dataset(metas["train"].get("dataset") or {}, datasets)
        if data is not None:
            self._read_logits(key, data)  # rows and labels of every split against the dataset itself

    def prune(self, older_than_days: float, *, dry_run: bool = False) -> list[CacheEntry]:
        """Remove entries created more than ``older_than_days`` days ago, and temporary files left as old
        (at least an hour) by killed writers; a language teacher's targets go with it. Returns the removed
        entries (with ``dry_run``: the entries it would remove, and nothing is deleted)."""
        if not older_than_days >= 0:
            raise SpecError("older_than_days", older_than_days, "must be a number of days >= 0")
        cutoff = time.time() - older_than_days * 86400
        removed = []
        for kind, key, files in entry_groups(self._store):
            entry = describe(self._store, kind, key, files)
            if created_ts(entry.created, files) < cutoff:
                if not dry_run:
                    self._store.delete_dir(f"{ENTRY_DIRS[kind]}/{key}")
                removed.append(entry)
        removed += self._lm.prune(cutoff, dry_run=dry_run)
        if dry_run:
            return removed
        abandoned = min(cutoff, time.time() - 3600)  # never a temporary file that is being written right now
        for info in self._store.list(""):
            if TMP_MARK in info.base_name and (info.mtime_ns or 0) / 1e9 < abandoned:
                self._store.delete_file(self._store.relative(info.path))
        self._lm.remove_temporaries(abandoned)
        return removed

    # -- prepare's steps ------------------------------------------------------------------------------

    def _prepare_checkpoint(self, spec: TeacherSpec, data: DataBundle, dtype: str,
                            device: torch.device | str | None) -> PreparedTeacher:
        """A user's weights: loaded and fingerprinted; logits from the cache, else one forward pass. Never trained."""
        from kdtune.cache.teacher import check_output
        from kdtune.cache.teacher import given_curve
        from kdtune.cache.teacher import load_checkpoint_teacher

        teacher = load_checkpoint_teacher(spec, data, check=False)
        data_fp = data.fingerprint()
        tkey = checkpoint_teacher_key(teacher.fingerprint, data_fp)
        key = logits_key(teacher.fingerprint, data_fp, dtype)
        for quiet in (True, False):  # without the lock, then under it (another process may have built it)
            lock = contextlib.nullcontext() if quiet else self._lock(tkey)
            with lock:
                try:
                    arrays, meta = self._read_logits(key, data)
                except CacheError as exc:
                    warn_damage(exc, quiet)
                else:
                    teacher.curve = given_curve(meta["diagnostics"])
                    return self._prepared(key, tkey, teacher, arrays, meta, hit=True, trained=False)
                if not quiet:
                    check_output(teacher.model, data, arch=spec.arch, field="teacher.arch")
                    return self._build_logits(tkey, teacher, data, data_fp, dtype, device=device, trained=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare_imported(self, key: str, data: DataBundle) -> PreparedTeacher:
        """Imported logits: read verified against ``data``'s samples; diagnostics against its (noisy) labels."""
        from kdtune.core.metrics import teacher_diagnostics
        from kdtune.core.train import TeacherLogits

        try:
            arrays, _ = self._read_logits(key, data)
        except MissingFile:
            raise SpecError("teacher.logits", key, f"is not in the cache at {self.location} (import logits with "
                            "`kdtune cache import`, or pass the --cache-dir you imported them into)") from None
        logits = TeacherLogits(*(float32_tensor(arrays[name]) for name in SPLITS))
        return PreparedTeacher(key=key, teacher_key=None, teacher=None, logits=logits, arrays=arrays,
                               diagnostics=teacher_diagnostics(logits, data), hit=True, trained=False,
                               location=self._store.show(f"logits/{key}"))

    def _has_logits(self, key: str, data: DataBundle) -> bool:
        try:
            self._read_logits(key, data)
        except CacheError:
            return False
        return True

    def _lookup(
        self, tkey: str, data: DataBundle, data_fp: str, dtype: str, *, quiet: bool
    ) -> tuple[Teacher | None, PreparedTeacher | None]:
        """The cached teacher and the complete cached result, each None when missing or damaged."""
        try:
            teacher = read_teacher(self._store, tkey, data)
        except CacheError as exc:
            warn_damage(exc, quiet)
            return None, None
        key = logits_key(teacher.fingerprint, data_fp, dtype)
        try:
            arrays, meta = self._read_logits(key, data)
        except CacheError as exc:
            warn_damage(exc, quiet)
            return teacher, None
        return teacher, self._prepared(key, tkey, teacher, arrays, meta, hit=True, trained=False)

    def _build_logits(
        self, tkey: str, teacher: Teacher, data: DataBundle, data_fp: str, dtype: str, *,
        device: torch.device | str | None, trained: bool,
    ) -> PreparedTeacher:
        """Run the teacher once over every split, write the entry, and read it back verified.

        Reading back means a fresh build returns exactly what every later cache hit will (float16 rounding
        included) and that nothing is used before it has been checked.
        """
        import torch

        from kdtune.cache.teacher import EnsembleModel
        from kdtune.cache.teacher import given_curve
        from kdtune.cache.teacher import teacher_logits
        from kdtune.core.metrics import teacher_diagnostics
        from kdtune.core.train import TeacherLogits
        from kdtune.core.train import default_device

        key = logits_key(teacher.fingerprint, data_fp, dtype)
        teacher.model.to(device if device is not None else default_device())
        try:
            if isinstance(teacher.model, EnsembleModel):  # each member once; the ensemble is their mean
                member_logits = [teacher_logits(member, data) for member in teacher.model.members]
                logits = TeacherLogits(*(torch.stack(split).mean(0) for split in zip(*(
                    (m.train, m.val, m.test) for m in member_logits))))
            else:
                member_logits, logits = [], teacher.logits(data)
        finally:
            teacher.model.cpu()
        for name, values in zip(SPLITS, (logits.train, logits.val, logits.test)):
            if not bool(values.isfinite().all()):  # never cached: every student would train on NaN
                raise CacheError(f"the teacher's {name} logits are not finite (its training diverged, or its "
                                 "weights hold NaN or infinity); nothing was cached")
        diagnostics = teacher_diagnostics(logits, data)
        if member_logits:
            diagnostics["members"] = [{"seed": record["seed"], "selected_epoch": record["selected_epoch"],
                                       **teacher_diagnostics(m, data)}
                                      for record, m in zip(teacher.members, member_logits)]
        if not teacher.curve:  # a checkpoint teacher: its accuracies are measured here
            teacher.curve = given_curve(diagnostics)
        meta = entry_metadata(key, tkey, teacher, data, data_fp, dtype, diagnostics)
        for name, split, values in zip(SPLITS, (data.train, data.val, data.test),
                                       (logits.train, logits.val, logits.test)):
            array = values.numpy().astype(DTYPES[dtype][0], copy=False)
            self._store.write(f"logits/{key}/{name}.parquet", encode(array, split, {**meta, "split": name}))
        arrays, stored = self._read_logits(key, data)
        return self._prepared(key, tkey, teacher, arrays, stored, hit=False, trained=trained)

    def _prepared(
        self, key: str, tkey: str, teacher: Teacher, arrays: dict[str, np.ndarray], meta: dict[str, Any], *,
        hit: bool, trained: bool,
    ) -> PreparedTeacher:
        from kdtune.core.train import TeacherLogits

        logits = TeacherLogits(*(float32_tensor(arrays[name]) for name in SPLITS))
        return PreparedTeacher(key=key, teacher_key=tkey, teacher=teacher, logits=logits, arrays=arrays,
                               diagnostics=meta["diagnostics"], hit=hit, trained=trained,
                               location=self._store.show(f"logits/{key}"))

    @contextmanager
    def _lock(self, tkey: str) -> Iterator[None]:
        local = self._store.local_path(f"locks/{tkey}.lock")
        if local is None:  # object store: no locks (the driver de-duplicates builds)
            yield
            return
        lock = LocalLock(local)
        try:
            lock.__enter__()
        except OSError as exc:  # a read-only cache: nothing can be built or repaired in it
            raise CacheError(f"{self._store.show(f'locks/{tkey}.lock')}: cannot write ({one_line(exc)}); the "
                             "entry is missing or damaged and this cache cannot be written to") from None
        try:
            yield
        finally:
            lock.__exit__()

    # -- logits entries ------------------------------------------------------------------------------

    def _read_logits(self, key: str, data: DataBundle) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The three splits, verified on their own and against ``data`` (row count and labels).

        Imported logits are checked against ``data``'s samples instead of its labels: they belong to the
        inputs, whatever label noise a condition adds.
        """
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        samples = None
        for name, split in zip(SPLITS, (data.train, data.val, data.test)):
            path = f"logits/{key}/{name}.parquet"
            array, table, meta = self._read_split(path, key)
            if meta.get("imported"):
                samples = samples or data.samples_fingerprint()
                if len(array) != len(split) or array.shape[1] != data.num_classes:
                    raise CacheError(f"{self._store.show(path)}: imported logits of shape {array.shape} do not fit "
                                     f"this dataset ({len(split)} {name} samples, {data.num_classes} classes)")
                if meta["dataset"].get("samples_fingerprint") != samples:
                    raise CacheError(f"{self._store.show(path)}: imported for other samples than this dataset's "
                                     "(import them with the same dataset name, files, train_size, val_fraction "
                                     "and seed)")
            elif len(array) != len(split) or not labels_match(table, split) or array.shape[1] != data.num_classes:
                raise CacheError(f"{self._store.show(path)}: rows or labels do not match the dataset")
            arrays[name] = array
        return arrays, meta

    def _read_split(self, path: str, key: str) -> tuple[np.ndarray, pa.Table, dict[str, Any]]:
        shown = self._store.show(path)
        raw = self._store.read(path)
        try:
            array, table, meta = decode(raw)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise CacheError(f"{shown}: damaged ({one_line(exc)})") from None
        except InvalidFile as exc:
            raise CacheError(f"{shown}: {exc}") from None
        if meta.get("key") != key:
            raise CacheError(f"{shown}: belongs to entry {meta.get('key')!r}, not {key!r}")
        return array, table, meta
