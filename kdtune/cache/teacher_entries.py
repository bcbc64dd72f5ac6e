"""The teacher checkpoint entries of the cache: ``teachers/<key>/teacher.json`` and the weights it names.

A trained teacher is stored so that no one trains it twice: weights first, in a file named by their own
fingerprint, then the sidecar that names them and records their sha256, so racing builders can never pair one
teacher's sidecar with another's weights. Apart from :class:`~kdtune.cache.logit_cache.LogitCache` because these
files are checked by checksum, not by the Parquet codec, and read back into a model rather than into arrays.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING
from typing import Any

from kdtune.cache.keys import CACHE_FORMAT_VERSION
from kdtune.cache.store import Store
from kdtune.cache.store import utc_now
from kdtune.errors import CacheError
from kdtune.errors import one_line


if TYPE_CHECKING:
    from kdtune.cache.teacher import Teacher
    from kdtune.core.data import DataBundle


def write_teacher(store: Store, tkey: str, teacher: Teacher, data: DataBundle, data_fp: str) -> None:
    """Weights first (named by their fingerprint), then the sidecar that names them."""
    from kdtune.cache.teacher import teacher_to_bytes

    weights, sidecar = teacher_to_bytes(teacher)
    meta = json.loads(sidecar)
    weights_file = f"weights-{teacher.fingerprint}.safetensors"
    meta["cache"] = {"format_version": CACHE_FORMAT_VERSION, "key": tkey, "weights_file": weights_file,
                     "weights_sha256": hashlib.sha256(weights).hexdigest(), "created": utc_now()}
    meta["dataset"] = {"description": data.description, "fingerprint": data_fp}
    store.write(f"teachers/{tkey}/{weights_file}", weights)
    store.write(f"teachers/{tkey}/teacher.json", json.dumps(meta, indent=2, sort_keys=True, default=str).encode())


def check_teacher_files(store: Store, tkey: str) -> tuple[dict[str, Any], bytes, bytes]:
    """The sidecar (parsed and raw) and the weights, checked against the sidecar's sha256."""
    sidecar_path = f"teachers/{tkey}/teacher.json"
    sidecar = store.read(sidecar_path)
    try:
        meta = json.loads(sidecar)
        weights_path = f"teachers/{tkey}/{meta['cache']['weights_file']}"
        expected = meta["cache"]["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{store.show(sidecar_path)}: damaged teacher sidecar ({one_line(exc)})") from None
    weights = store.read(weights_path)
    if hashlib.sha256(weights).hexdigest() != expected:
        raise CacheError(f"{store.show(weights_path)}: checksum mismatch (damaged teacher weights)")
    return meta, sidecar, weights


def read_teacher(store: Store, tkey: str, data: DataBundle) -> Teacher:
    """The cached teacher, its files checked; :class:`CacheError` naming the entry when they do not load."""
    from kdtune.cache.teacher import teacher_from_bytes

    _, sidecar, weights = check_teacher_files(store, tkey)
    try:
        return teacher_from_bytes(weights, sidecar, data)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CacheError(f"{store.show(f'teachers/{tkey}')}: unusable teacher checkpoint ({one_line(exc)})") from None
