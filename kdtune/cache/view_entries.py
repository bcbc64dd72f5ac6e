"""The per-view entries of the cache: the teacher's logits for V augmented views of every training image.

A student trained on augmented images needs its teacher's logits for the very view it sees, so these entries
are keyed by a logits entry (teacher weights, data), the views (augmentation, V, data seed) and ``top_k``, and
hold one row per (image, view). They are their own concern beside the teacher and logits entries of
:class:`~kdtune.cache.logit_cache.LogitCache` (which delegates to :class:`ViewEntries`): another file format
(:func:`~kdtune.cache.parquet.encode_views`), another key, another check (the stored view seeds must be the
ones the views are rendered from), and only the image task builds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pyarrow as pa

from kdtune.cache.entry_records import entry_metadata
from kdtune.cache.entry_records import rebuild_dataset
from kdtune.cache.entry_records import warn_damage
from kdtune.cache.keys import views_key
from kdtune.cache.parquet import InvalidFile
from kdtune.cache.parquet import decode_views
from kdtune.cache.parquet import encode_views
from kdtune.cache.store import Store
from kdtune.cache.tensors import readonly_tensor
from kdtune.errors import CacheError
from kdtune.errors import SpecError
from kdtune.errors import one_line


if TYPE_CHECKING:  # torch and the image task load only where an entry is built or read
    import torch

    from kdtune.cache.logit_cache import PreparedTeacher
    from kdtune.core.data import DataBundle
    from kdtune.tasks.image.views import ViewLogits
    from kdtune.tasks.image.views import ViewSpec


class ViewEntries:
    """The ``views/<key>/train.parquet`` entries of one cache root; ``lock`` is the cache's build lock per key."""

    def __init__(self, store: Store, lock: Callable[[str], AbstractContextManager[None]]) -> None:
        self._store = store
        self._lock = lock

    def prepare(
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
                    return self._read(key, data, spec)
                except CacheError as exc:
                    warn_damage(exc, quiet)
                if not quiet:
                    return self._build(key, prepared, data, spec, top_k, device)
        raise AssertionError("unreachable")  # pragma: no cover

    def cached(self, logits_key: str, spec: ViewSpec, top_k: int | None) -> tuple[str, bool]:
        """The key of the per-view entry on ``logits_key`` and whether its file is in the cache (not read)."""
        key = views_key(logits_key, spec.to_dict(), top_k)
        try:
            with self._store.open(f"views/{key}/train.parquet"):
                return key, True
        except CacheError:
            return key, False

    def _build(self, key: str, prepared: PreparedTeacher, data: DataBundle, spec: ViewSpec,
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
        base = entry_metadata(key, prepared.teacher_key or "", teacher, data, data.fingerprint(), "float32",
                               {"test_accuracy": prepared.diagnostics["test_accuracy"]})
        meta = {**base, "split": "train", "logits_key": prepared.key, "view_spec": spec.to_dict(), "top_k": top_k}
        self._store.write(f"views/{key}/train.parquet", encode_views(arrays, seeds, spec.views, meta))
        return self._read(key, data, spec)

    def _decode(self, key: str) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
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

    def _read(self, key: str, data: DataBundle, spec: ViewSpec) -> ViewLogits:
        """The entry, verified (see :meth:`_decode`) and against ``data`` and ``spec``."""
        from kdtune.tasks.image.views import ViewLogits

        arrays, _, meta = self._decode(key)
        shown = self._store.show(f"views/{key}/train.parquet")
        if meta["view_spec"] != spec.to_dict():
            raise CacheError(f"{shown}: holds views {meta['view_spec']}, not {spec.to_dict()}")
        if meta["rows"] != len(data.train) * spec.views or meta["dataset"]["fingerprint"] != data.fingerprint():
            raise CacheError(f"{shown}: rows or dataset do not match the dataset")
        tensors = {"dense": arrays.get("logits"), "values": arrays.get("top_values"),
                   "classes": arrays.get("top_classes"), "rest": arrays.get("rest_lse"),
                   "rest_mean": arrays.get("rest_mean")}
        return ViewLogits(spec, data.num_classes, key=key,
                          **{name: None if a is None else readonly_tensor(a) for name, a in tensors.items()})

    def verify(self, key: str, datasets: dict[str, DataBundle | None]) -> None:
        """Raise :class:`CacheError` when the entry is damaged or its rows do not fit its rebuilt dataset."""
        _, _, meta = self._decode(key)
        data = rebuild_dataset(meta.get("dataset") or {}, datasets)
        if data is not None and meta["rows"] != len(data.train) * meta["view_spec"]["views"]:
            raise CacheError(f"{self._store.show(f'views/{key}/train.parquet')}: {meta['rows']} rows do not fit "
                             f"its dataset ({len(data.train)} training images x {meta['view_spec']['views']} views)")
