"""The teacher-logit cache: trained teachers and their logits, content-addressed, shared by every trial and node.

A student step that reads its teacher's logits from memory is ~20x cheaper than one that runs the teacher
(``docs/architecture.md``, Performance), so the teacher runs once per (teacher, dataset) and everything
else reads this cache.
:meth:`LogitCache.prepare` is the one entry point: it returns the teacher, its logits and its diagnostics,
training and computing only what the cache does not hold yet.

Keys are hashes of content, never of user-chosen names:

* a **teacher** checkpoint is keyed by its spec (:meth:`TeacherSpec.to_dict`, ``select`` and seed included),
  the dataset fingerprint (samples, splits, clean and noisy labels) and the preprocessing version;
* a **logits** entry is keyed by the teacher's *weights* fingerprint, the dataset fingerprint, the
  preprocessing version, the stored dtype and :data:`CACHE_FORMAT_VERSION`.

Teachers a user brings (``docs/byo.md``): a ``checkpoint`` teacher is never trained and not stored under
``teachers/``; its identity is its weights fingerprint + the dataset fingerprint (:func:`checkpoint_teacher_key`)
and its logits entry is keyed like any other. **Imported** logits (:meth:`LogitCache.import_logits`,
``kdtune cache import``) have no teacher: their key hashes the logits themselves and the dataset's *samples*
(:meth:`~kdtune.core.data.DataBundle.samples_fingerprint`: inputs and clean labels, not the noisy labels), so one
import serves every noise level of the same dataset, subset and split; a study names it with ``teacher.logits``.

Layout under the root (a local folder, or any pyarrow filesystem URI such as ``s3://bucket/prefix``)::

    teachers/<teacher key>/teacher.json                          sidecar + cache and dataset records
    teachers/<teacher key>/weights-<weights fingerprint>.safetensors
    logits/<logits key>/{train,val,test}.parquet                  one file per split, zstd, one row group
    locks/<teacher key>.lock                                      local roots only

Concurrency. On a local (or NFS) root every file is written under a temporary name and renamed, so readers
never see half a file, and builders of one teacher key serialise on a lock file holding the owner's PID,
host and a heartbeat (its mtime); a lock whose owner is dead (same host) or silent for
:data:`STALE_LOCK_SECONDS` is broken. Object stores have neither rename nor locks: an object appears whole
when its upload completes, so files are written to their final key directly, and a driver that starts many
workers must build each entry once (e.g. one task per entry) before the trials read it. Either way the
weights file is named by its own fingerprint and the sidecar written last names it, so racing builders can
never pair one teacher's sidecar with another's weights.

Reads are verified (schema, row count, sha256 of the logits, Parquet page CRCs); a damaged entry raises
:class:`~kdtune.errors.CacheError` naming the file, and :meth:`LogitCache.prepare` rebuilds it rather than use it.


The package: :mod:`~kdtune.cache.keys` (what identifies an entry), :mod:`~kdtune.cache.parquet` (the file codec),
:mod:`~kdtune.cache.store` (local folder or object store, atomic writes), :mod:`~kdtune.cache.lock` (one builder
per key), :mod:`~kdtune.cache.entry_records` (what an entry records, how a listing shows it),
:mod:`~kdtune.cache.teacher_entries`, :mod:`~kdtune.cache.imported` and :mod:`~kdtune.cache.view_entries` (one
kind of entry each) and :mod:`~kdtune.cache.logit_cache` (the cache). This module is its public face.
"""

from kdtune.cache.entry_records import CacheEntry
from kdtune.cache.keys import CACHE_FORMAT_VERSION
from kdtune.cache.keys import checkpoint_teacher_key
from kdtune.cache.keys import imported_logits_key
from kdtune.cache.keys import logits_key
from kdtune.cache.keys import teacher_key
from kdtune.cache.lock import STALE_LOCK_SECONDS
from kdtune.cache.logit_cache import LogitCache
from kdtune.cache.logit_cache import PreparedTeacher
from kdtune.cache.parquet import DTYPES
from kdtune.cache.parquet import METADATA_KEY
from kdtune.cache.parquet import SPLITS
from kdtune.cache.store import default_cache_root


__all__ = [
    "CACHE_FORMAT_VERSION",
    "DTYPES",
    "METADATA_KEY",
    "SPLITS",
    "STALE_LOCK_SECONDS",
    "CacheEntry",
    "LogitCache",
    "PreparedTeacher",
    "checkpoint_teacher_key",
    "default_cache_root",
    "imported_logits_key",
    "logits_key",
    "teacher_key",
]
