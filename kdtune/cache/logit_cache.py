"""The logit cache itself: :class:`LogitCache` prepares, imports, reads, lists, verifies and prunes entries.

It composes the package's parts: keys (:mod:`kdtune.cache.keys`), the Parquet codec (:mod:`kdtune.cache.parquet`),
the filesystem (:mod:`kdtune.cache.store`) and the build lock (:mod:`kdtune.cache.lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kdtune._version import __version__
from kdtune.cache.keys import CACHE_FORMAT_VERSION
from kdtune.cache.keys import checkpoint_teacher_key
from kdtune.cache.keys import default_cache_root
from kdtune.cache.keys import imported_logits_key
from kdtune.cache.keys import logits_key
from kdtune.cache.keys import teacher_key
from kdtune.cache.keys import views_key
from kdtune.cache.lock import LocalLock
from kdtune.cache.parquet import DTYPES
from kdtune.cache.parquet import METADATA_KEY
from kdtune.cache.parquet import SPLITS
from kdtune.cache.parquet import InvalidFile
from kdtune.cache.parquet import decode
from kdtune.cache.parquet import decode_views
from kdtune.cache.parquet import encode
from kdtune.cache.parquet import encode_views
from kdtune.cache.parquet import labels_match
from kdtune.cache.store import TMP_MARK
from kdtune.cache.store import MissingFile
from kdtune.cache.store import Store
from kdtune.cache.store import utc_now
from kdtune.errors import CacheError
from kdtune.errors import DataError
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


_LOG = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class CacheEntry:
    """One entry as ``kdtune cache ls`` shows it; ``problem`` is set when it is damaged or unreadable."""

    kind: str  # "teacher" or "logits"
    key: str
    location: str
    size: int  # bytes, all files of the entry
    created: str | None  # ISO 8601, UTC
    dataset: str | None
    noise: str | None
    teacher: str | None
    accuracy: float | None  # teacher test accuracy (clean labels)
    dtype: str | None
    problem: str | None = None


class LogitCache:
    """A cache root: a local folder (default :func:`default_cache_root`) or a pyarrow filesystem URI.

    URIs are anything :meth:`pyarrow.fs.FileSystem.from_uri` accepts, e.g. ``file:///data/kdtune``,
    ``gs://bucket/prefix`` or ``s3://bucket/prefix?region=eu-west-1&endpoint_override=host:port&scheme=http``
    (credentials come from the usual environment variables; any in the URI are redacted from messages).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._store = Store(root if root is not None else default_cache_root())

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
                self._write_teacher(tkey, teacher, data, data_fp)
            return self._build_logits(tkey, teacher, data, data_fp, dtype, device=device, trained=trained)

    def prepare_views(
        self,
        prepared: PreparedTeacher,
        data: DataBundle,
        spec: ViewSpec,
        *,
        top_k: int | None = None,
        max_bytes: int | None = None,
        device: torch.device | str | None = None,
    ) -> ViewLogits:
        """The teacher's logits for the V views of every training image (:mod:`kdtune.tasks.image.views`), from the cache or
        computed once (V teacher forward passes over the training split) and cached.

        Refused with one :class:`SpecError` line before anything is computed: inputs that are not images, a
        ``top_k`` above the class count, and logits over ``max_bytes`` (:func:`kdtune.tasks.image.views.check_views`). The
        entry (``views/<key>/train.parquet``) is keyed by ``prepared``'s logits entry (teacher weights, data),
        the views (augmentation, V, data seed) and ``top_k``; it is verified on every read like any other file,
        and its stored view seeds must be the ones the views are rendered from.
        """
        from kdtune.tasks.image.views import check_views

        check_views(spec, tuple(data.train.x.shape), data.num_classes, top_k=top_k, max_bytes=max_bytes)
        if prepared.teacher is None:
            raise SpecError("student.augment", spec.to_dict()["augment"], "needs a teacher model to run on each "
                            "view; imported logits have none")
        key = views_key(prepared.key, spec.to_dict(), top_k)
        for quiet in (True, False):  # without the lock, then under it (another process may have built it)
            with contextlib.nullcontext() if quiet else self._lock(key):
                try:
                    return self._read_views(key, data, spec)
                except CacheError as exc:
                    _warn_damage(exc, quiet)
                if not quiet:
                    return self._build_views(key, prepared, data, spec, top_k, device)
        raise AssertionError("unreachable")  # pragma: no cover

    def views_cached(self, logits_key: str, spec: ViewSpec, top_k: int | None) -> tuple[str, bool]:
        """The key of the per-view entry on ``logits_key`` and whether its file is in the cache (not read)."""
        key = views_key(logits_key, spec.to_dict(), top_k)
        try:
            with self._store.open(f"views/{key}/train.parquet"):
                return key, True
        except CacheError:
            return key, False

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
        tkey = teacher_key(spec, data_fp)
        teacher, found = self._lookup(tkey, data, data_fp, dtype, quiet=True)
        key = found.key if found else (logits_key(teacher.fingerprint, data_fp, dtype) if teacher else None)
        action = "cached" if found else "compute logits" if teacher else "train teacher"
        return {"source": "trained", "teacher_key": tkey, "teacher_cached": teacher is not None, "logits_key": key,
                "logits_cached": found is not None, "action": action, "problem": None}

    def import_logits(self, arrays: dict[str, np.ndarray], data: DataBundle, *, source: str,
                      dtype: str = "float32") -> PreparedTeacher:
        """Store precomputed teacher logits for ``data`` (split -> (N, K) array) as a verified cache entry.

        Checked first, each failure one :class:`DataError` line naming the split and row: every split present,
        two-dimensional and floating point, its rows equal to the split's size, its columns to
        ``data.num_classes``, every value finite. The entry is keyed by its content and the dataset's samples
        (:func:`imported_logits_key`); importing the same logits again returns the existing entry.
        """
        from kdtune.cache.teacher import teacher_diagnostics
        from kdtune.core.train import TeacherLogits

        if dtype not in DTYPES:
            raise SpecError("dtype", dtype, f"must be one of {', '.join(DTYPES)}")
        checked = _check_imported(arrays, data, source)
        h = hashlib.sha256()
        for name in SPLITS:
            h.update(f"{name}:{checked[name].shape}".encode())
            h.update(checked[name].astype(DTYPES[dtype][0]).tobytes())
        content = h.hexdigest()[:32]
        samples = data.samples_fingerprint()
        key = imported_logits_key(content, samples, dtype)
        with self._lock(key):
            if not self._has_logits(key, data):
                logits = TeacherLogits(*(_as_tensor(checked[name].astype(DTYPES[dtype][0]).astype(np.float32))
                                         for name in SPLITS))
                diagnostics = teacher_diagnostics(logits, data)
                meta = _imported_metadata(key, content, samples, source, data, dtype, diagnostics)
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
        """Every entry under the root, described from its metadata only (no checksums: see :meth:`verify`)."""
        return [self._describe(kind, key, files) for kind, key, files in self._groups()]

    def verify(self) -> list[CacheEntry]:
        """Read every entry in full and return the damaged ones, each with its ``problem``.

        A logits entry is checked file by file (Parquet page CRCs, schema, rows, the sha256 of its logits) and
        as a whole: each split file must hold its own split (``train.parquet`` the train split, ...) of one
        dataset, and where that dataset can be rebuilt here from the entry's description (the built-in
        datasets, local data files; never a loader, which would run code) its rows and labels must match it.
        Not defended against: someone who rewrites a file together with its embedded checksum and records
        (``docs/security.md``).
        """
        damaged = []
        datasets: dict[str, DataBundle | None] = {}
        for kind, key, files in self._groups():
            entry = self._describe(kind, key, files)
            try:
                if kind == "teacher":
                    self._check_teacher_files(key)
                elif kind == "views":
                    self._verify_views(key, datasets)
                else:
                    self._verify_logits(key, datasets)
            except CacheError as exc:
                damaged.append(replace(entry, problem=str(exc)))
        return damaged

    def _verify_logits(self, key: str, datasets: dict[str, DataBundle | None]) -> None:
        metas = {}
        for name in SPLITS:
            path = f"logits/{key}/{name}.parquet"
            _, _, meta = self._read_split(path, key)
            if meta.get("split") != name:
                raise CacheError(f"{self._store.show(path)}: holds the {meta.get('split')!r} split, not {name!r}")
            metas[name] = meta
        if len({json.dumps(m.get("dataset"), sort_keys=True) for m in metas.values()}) > 1:
            raise CacheError(f"{self._store.show(f'logits/{key}')}: its split files come from different datasets")
        data = _rebuild_dataset(metas["train"].get("dataset") or {}, datasets)
        if data is not None:
            self._read_logits(key, data)  # rows and labels of every split against the dataset itself

    def prune(self, older_than_days: float, *, dry_run: bool = False) -> list[CacheEntry]:
        """Remove entries created more than ``older_than_days`` days ago, and temporary files left as old
        (at least an hour) by killed writers. Returns the removed entries (with ``dry_run``: the entries it
        would remove, and nothing is deleted)."""
        if not older_than_days >= 0:
            raise SpecError("older_than_days", older_than_days, "must be a number of days >= 0")
        cutoff = time.time() - older_than_days * 86400
        removed = []
        for kind, key, files in self._groups():
            entry = self._describe(kind, key, files)
            if _created_ts(entry.created, files) < cutoff:
                if not dry_run:
                    self._store.delete_dir(f"{_DIRS[kind]}/{key}")
                removed.append(entry)
        if dry_run:
            return removed
        abandoned = min(cutoff, time.time() - 3600)  # never a temporary file that is being written right now
        for info in self._store.list(""):
            if TMP_MARK in info.base_name and (info.mtime_ns or 0) / 1e9 < abandoned:
                self._store.delete_file(self._store.relative(info.path))
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
                    _warn_damage(exc, quiet)
                else:
                    teacher.curve = given_curve(meta["diagnostics"])
                    return self._prepared(key, tkey, teacher, arrays, meta, hit=True, trained=False)
                if not quiet:
                    check_output(teacher.model, data, arch=spec.arch, field="teacher.arch")
                    return self._build_logits(tkey, teacher, data, data_fp, dtype, device=device, trained=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare_imported(self, key: str, data: DataBundle) -> PreparedTeacher:
        """Imported logits: read verified against ``data``'s samples; diagnostics against its (noisy) labels."""
        from kdtune.cache.teacher import teacher_diagnostics
        from kdtune.core.train import TeacherLogits

        try:
            arrays, _ = self._read_logits(key, data)
        except MissingFile:
            raise SpecError("teacher.logits", key, f"is not in the cache at {self.location} (import logits with "
                            "`kdtune cache import`, or pass the --cache-dir you imported them into)") from None
        logits = TeacherLogits(*(_as_tensor(arrays[name]) for name in SPLITS))
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
            teacher = self._read_teacher(tkey, data)
        except CacheError as exc:
            _warn_damage(exc, quiet)
            return None, None
        key = logits_key(teacher.fingerprint, data_fp, dtype)
        try:
            arrays, meta = self._read_logits(key, data)
        except CacheError as exc:
            _warn_damage(exc, quiet)
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
        from kdtune.cache.teacher import teacher_diagnostics
        from kdtune.cache.teacher import teacher_logits
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
        diagnostics = teacher_diagnostics(logits, data)
        if member_logits:
            diagnostics["members"] = [{"seed": record["seed"], "selected_epoch": record["selected_epoch"],
                                       **teacher_diagnostics(m, data)}
                                      for record, m in zip(teacher.members, member_logits)]
        if not teacher.curve:  # a checkpoint teacher: its accuracies are measured here
            teacher.curve = given_curve(diagnostics)
        meta = _entry_metadata(key, tkey, teacher, data, data_fp, dtype, diagnostics)
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

        logits = TeacherLogits(*(_as_tensor(arrays[name]) for name in SPLITS))
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

    # -- teacher checkpoints -------------------------------------------------------------------------

    def _write_teacher(self, tkey: str, teacher: Teacher, data: DataBundle, data_fp: str) -> None:
        """Weights first (named by their fingerprint), then the sidecar that names them."""
        from kdtune.cache.teacher import teacher_to_bytes

        weights, sidecar = teacher_to_bytes(teacher)
        meta = json.loads(sidecar)
        weights_file = f"weights-{teacher.fingerprint}.safetensors"
        meta["cache"] = {"format_version": CACHE_FORMAT_VERSION, "key": tkey, "weights_file": weights_file,
                         "weights_sha256": hashlib.sha256(weights).hexdigest(), "created": utc_now()}
        meta["dataset"] = {"description": data.description, "fingerprint": data_fp}
        self._store.write(f"teachers/{tkey}/{weights_file}", weights)
        self._store.write(f"teachers/{tkey}/teacher.json",
                          json.dumps(meta, indent=2, sort_keys=True, default=str).encode())

    def _check_teacher_files(self, tkey: str) -> tuple[dict[str, Any], bytes, bytes]:
        """The sidecar (parsed and raw) and the weights, checked against the sidecar's sha256."""
        sidecar_path = f"teachers/{tkey}/teacher.json"
        sidecar = self._store.read(sidecar_path)
        try:
            meta = json.loads(sidecar)
            weights_path = f"teachers/{tkey}/{meta['cache']['weights_file']}"
            expected = meta["cache"]["weights_sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheError(f"{self._store.show(sidecar_path)}: damaged teacher sidecar ({one_line(exc)})") from None
        weights = self._store.read(weights_path)
        if hashlib.sha256(weights).hexdigest() != expected:
            raise CacheError(f"{self._store.show(weights_path)}: checksum mismatch (damaged teacher weights)")
        return meta, sidecar, weights

    def _read_teacher(self, tkey: str, data: DataBundle) -> Teacher:
        from kdtune.cache.teacher import teacher_from_bytes

        _, sidecar, weights = self._check_teacher_files(tkey)
        try:
            return teacher_from_bytes(weights, sidecar, data)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CacheError(f"{self._store.show(f'teachers/{tkey}')}: unusable teacher checkpoint ({one_line(exc)})") from None

    # -- logits entries ------------------------------------------------------------------------------

    def _read_logits(self, key: str, data: DataBundle) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The three splits, verified on their own and against ``data`` (row count and labels).

        Imported logits are checked against ``data``'s samples instead of its labels: they belong to the
        inputs, whatever label noise a condition adds.
        """
        arrays, meta = {}, {}
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

    # -- per-view entries ----------------------------------------------------------------------------

    def _build_views(self, key: str, prepared: PreparedTeacher, data: DataBundle, spec: ViewSpec,
                     top_k: int | None, device: torch.device | str | None) -> ViewLogits:
        """V teacher forward passes over the rendered views, written as one verified file and read back."""
        from kdtune.core.train import default_device
        from kdtune.tasks.image.views import compute_view_logits
        from kdtune.tasks.image.views import sparsify

        teacher = prepared.teacher
        assert teacher is not None
        teacher.model.to(device if device is not None else default_device())
        try:
            logits = compute_view_logits(teacher.model, data.train.x, spec)
        finally:
            teacher.model.cpu()
        if top_k is None:
            arrays = {"logits": logits.numpy()}
        else:
            values, classes, rest, mean = sparsify(logits, top_k)
            arrays = {"top_values": values.numpy(), "top_classes": classes.numpy(), "rest_lse": rest.numpy(),
                      "rest_mean": mean.numpy()}
        rows = np.arange(len(logits))
        seeds = spec.seeds(rows // spec.views, rows % spec.views)
        base = _entry_metadata(key, prepared.teacher_key or "", teacher, data, data.fingerprint(), "float32",
                               {"test_accuracy": prepared.diagnostics["test_accuracy"]})
        meta = {**base, "split": "train", "logits_key": prepared.key, "view_spec": spec.to_dict(), "top_k": top_k}
        self._store.write(f"views/{key}/train.parquet", encode_views(arrays, seeds, spec.views, meta))
        return self._read_views(key, data, spec)

    def _decode_views(self, key: str) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
        """The file of entry ``key``, verified on its own: codec checks, its key, and its seeds against the
        views its metadata names."""
        from kdtune.core.train import Augment
        from kdtune.tasks.image.views import ViewSpec

        path = f"views/{key}/train.parquet"
        shown = self._store.show(path)
        raw = self._store.read(path)
        try:
            arrays, seeds, meta = decode_views(raw)
            record = meta["view_spec"]
            spec = ViewSpec(Augment(**record["augment"]), int(record["views"]), int(record["seed"]))
        except (OSError, ValueError, KeyError, TypeError, SpecError, pa.ArrowException) as exc:
            raise CacheError(f"{shown}: damaged ({one_line(exc)})") from None
        except InvalidFile as exc:
            raise CacheError(f"{shown}: {exc}") from None
        if meta.get("key") != key:
            raise CacheError(f"{shown}: belongs to entry {meta.get('key')!r}, not {key!r}")
        rows = np.arange(len(seeds))
        if not np.array_equal(seeds, spec.seeds(rows // spec.views, rows % spec.views)):
            raise CacheError(f"{shown}: view seeds do not match its views (shift {spec.augment.shift}, rotate "
                             f"{spec.augment.rotate}, {spec.views} views, data seed {spec.seed})")
        return arrays, seeds, meta

    def _read_views(self, key: str, data: DataBundle, spec: ViewSpec) -> ViewLogits:
        """The entry, verified (see :meth:`_decode_views`) and against ``data`` and ``spec``."""
        from kdtune.tasks.image.views import ViewLogits

        arrays, _, meta = self._decode_views(key)
        shown = self._store.show(f"views/{key}/train.parquet")
        if meta["view_spec"] != spec.to_dict():
            raise CacheError(f"{shown}: holds views {meta['view_spec']}, not {spec.to_dict()}")
        if meta["rows"] != len(data.train) * spec.views or meta["dataset"]["fingerprint"] != data.fingerprint():
            raise CacheError(f"{shown}: rows or dataset do not match the dataset")
        tensors = {"dense": arrays.get("logits"), "values": arrays.get("top_values"),
                   "classes": arrays.get("top_classes"), "rest": arrays.get("rest_lse"),
                   "rest_mean": arrays.get("rest_mean")}
        return ViewLogits(spec, data.num_classes, key=key,
                          **{name: None if a is None else _readonly_tensor(a) for name, a in tensors.items()})

    def _verify_views(self, key: str, datasets: dict[str, DataBundle | None]) -> None:
        _, _, meta = self._decode_views(key)
        data = _rebuild_dataset(meta.get("dataset") or {}, datasets)
        if data is not None and meta["rows"] != len(data.train) * meta["view_spec"]["views"]:
            raise CacheError(f"{self._store.show(f'views/{key}/train.parquet')}: {meta['rows']} rows do not fit "
                             f"its dataset ({len(data.train)} training images x {meta['view_spec']['views']} views)")

    def _describe_views(self, key: str) -> dict[str, Any]:
        with self._store.open(f"views/{key}/train.parquet") as f:
            meta = json.loads(pq.read_metadata(f).metadata[METADATA_KEY])
        teacher = meta["teacher"]
        spec = meta["view_spec"]
        dtype = "float32" if meta.get("top_k") is None else f"float32 top-{meta['top_k']}"
        return {"created": meta["created"], **_dataset_fields(meta["dataset"]["description"]),
                "teacher": f"{_teacher_label(teacher['spec'], teacher['selected_epoch'])}; {spec['views']} views "
                f"(shift {spec['augment']['shift']}, rotate {spec['augment']['rotate']:g})",
                "accuracy": teacher["test_accuracy"], "dtype": dtype}

    # -- listing -------------------------------------------------------------------------------------

    def _groups(self) -> list[tuple[str, str, list[pafs.FileInfo]]]:
        """(kind, key, files) for every entry directory under the root, temporary files left out."""
        groups: dict[tuple[str, str], list[pafs.FileInfo]] = {}
        for info in self._store.list(""):
            parts = self._store.relative(info.path).split("/")
            kind = {"teachers": "teacher", "logits": "logits", "views": "views"}.get(parts[0])
            if kind is None or len(parts) != 3 or TMP_MARK in parts[2]:
                continue
            groups.setdefault((kind, parts[1]), []).append(info)
        return [(kind, key, files) for (kind, key), files in sorted(groups.items())]

    def _describe(self, kind: str, key: str, files: list[pafs.FileInfo]) -> CacheEntry:
        base = {"kind": kind, "key": key, "location": self._store.show(f"{_DIRS[kind]}/{key}"),
                "size": sum(f.size or 0 for f in files)}
        try:
            describe = {"teacher": self._describe_teacher, "views": self._describe_views}.get(kind, self._describe_logits)
            fields = describe(key)
        except (CacheError, OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            return CacheEntry(**base, created=None, dataset=None, noise=None, teacher=None, accuracy=None,
                              dtype=None, problem=one_line(exc))
        return CacheEntry(**base, **fields)

    def _describe_teacher(self, key: str) -> dict[str, Any]:
        meta = json.loads(self._store.read(f"teachers/{key}/teacher.json"))
        return {"created": meta["cache"]["created"], **_dataset_fields(meta["dataset"]["description"]),
                "teacher": _teacher_label(meta["spec"], meta["selected_epoch"]),
                "accuracy": meta["test_accuracy"], "dtype": None}

    def _describe_logits(self, key: str) -> dict[str, Any]:
        path = f"logits/{key}/train.parquet"
        with self._store.open(path) as f:
            meta = json.loads(pq.read_metadata(f).metadata[METADATA_KEY])
        teacher = meta["teacher"]
        return {"created": meta["created"], **_dataset_fields(meta["dataset"]["description"]),
                "teacher": _teacher_label(teacher["spec"], teacher["selected_epoch"]),
                "accuracy": meta["diagnostics"]["test_accuracy"], "dtype": meta["dtype"]}


_DIRS = {"teacher": "teachers", "logits": "logits", "views": "views"}


def _entry_metadata(
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


def _check_imported(arrays: dict[str, np.ndarray], data: DataBundle, source: str) -> dict[str, np.ndarray]:
    """Imported logits, checked split by split against ``data`` (see :meth:`LogitCache.import_logits`)."""
    checked = {}
    described = ", ".join(f"{k}={v}" for k, v in data.description.items() if v is not None)
    for name, split in zip(SPLITS, (data.train, data.val, data.test)):
        if name not in arrays or arrays[name] is None:
            raise DataError(f"{source}: no {name} logits (train, val and test are required)")
        array = np.asarray(arrays[name])
        if array.ndim != 2:
            raise DataError(f"{source}: {name} has shape {array.shape}: must be (rows, classes)")
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{source}: {name} has dtype {array.dtype}: logits must be floating point")
        if len(array) != len(split):
            raise DataError(f"{source}: {name} has {len(array)} rows; the dataset ({described}) has {len(split)} "
                            f"{name} samples")
        if array.shape[1] != data.num_classes:
            raise DataError(f"{source}: {name} has {array.shape[1]} columns; the dataset has {data.num_classes} "
                            "classes")
        bad = ~np.isfinite(array).all(1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{source}: {name}[{i}] contains {'NaN' if np.isnan(array[i]).any() else 'inf'}")
        checked[name] = array
    return checked


def _imported_metadata(key: str, content: str, samples: str, source: str, data: DataBundle, dtype: str,
                       diagnostics: dict[str, Any]) -> dict[str, Any]:
    """What every split file of an imported entry records: where the logits came from, and for which samples."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return {
        "format_version": CACHE_FORMAT_VERSION,
        "key": key,
        "dtype": dtype,
        "imported": True,
        "teacher": {"key": None, "spec": {"imported": source}, "selected_epoch": None,
                    "val_accuracy": diagnostics["val_accuracy"], "test_accuracy": diagnostics["test_accuracy"],
                    "weights_fingerprint": None, "logits_fingerprint": content},
        "diagnostics": diagnostics,
        "dataset": {"description": data.description, "fingerprint": data.fingerprint(), "samples_fingerprint": samples,
                    "name": data.name, "num_classes": data.num_classes, "preprocessing_version": PREPROCESSING_VERSION},
        "kdtune_version": __version__,
        "created": utc_now(),
    }


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU float32 tensor over ``array``, without a copy when it is float32 already.

    Arrow hands out read-only arrays and ``torch.from_numpy`` warns that it cannot protect them. The cached
    logits are only ever indexed (the trainer gathers batches from them), never written, so the warning is
    silenced here rather than paying for a copy.
    """
    import torch

    if array.dtype != np.float32:
        return torch.from_numpy(array.astype(np.float32))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


def _readonly_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor over a read-only decoded array, without a copy (the student only indexes it)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


def _created_ts(created: str | None, files: list[pafs.FileInfo]) -> float:
    """When an entry was made: its recorded creation time, else its newest file's mtime."""
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return max((f.mtime_ns or 0) / 1e9 for f in files)


def _rebuild_dataset(record: dict[str, Any], loaded: dict[str, DataBundle | None]) -> DataBundle | None:
    """The dataset an entry was built from, rebuilt from its description when that is possible here and gives
    the recorded fingerprint; None otherwise (a loader is never called: verifying must not run code)."""
    from kdtune.core.data import load_dataset

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


def _warn_damage(exc: CacheError, quiet: bool) -> None:
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
