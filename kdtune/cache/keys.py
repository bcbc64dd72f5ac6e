"""Cache keys: hashes of content (what a teacher was trained from, the exact weights and data), never of names.

Every key includes :data:`CACHE_FORMAT_VERSION` and the dataset preprocessing version, so a change to either
makes old entries stop matching instead of being misread.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    from kdtune.cache.teacher import TeacherSpec


#: Bumped whenever the file layout, schema or metadata change: old entries then simply stop matching.
CACHE_FORMAT_VERSION = 1


def teacher_key(spec: TeacherSpec, data_fingerprint: str) -> str:
    """The key of a teacher checkpoint: what it was trained from, not what it became."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return _hash({"kind": "teacher", "format": CACHE_FORMAT_VERSION, "spec": spec.to_dict(),
                  "data": data_fingerprint, "preprocessing": PREPROCESSING_VERSION})


def logits_key(weights_fingerprint: str, data_fingerprint: str, dtype: str = "float32") -> str:
    """The key of a logits entry: the exact weights and the exact data, so equal keys mean equal logits."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return _hash({"kind": "logits", "format": CACHE_FORMAT_VERSION, "weights": weights_fingerprint,
                  "data": data_fingerprint, "preprocessing": PREPROCESSING_VERSION, "dtype": dtype})


def checkpoint_teacher_key(weights_fingerprint: str, data_fingerprint: str) -> str:
    """The identity of a teacher loaded from the user's checkpoint: its weights and the data it runs on."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return _hash({"kind": "teacher-checkpoint", "format": CACHE_FORMAT_VERSION, "weights": weights_fingerprint,
                  "data": data_fingerprint, "preprocessing": PREPROCESSING_VERSION})


def imported_logits_key(content_fingerprint: str, samples_fingerprint: str, dtype: str = "float32") -> str:
    """The key of imported logits: their content and the samples (not the labels) they belong to."""
    from kdtune.core.data import PREPROCESSING_VERSION

    return _hash({"kind": "imported-logits", "format": CACHE_FORMAT_VERSION, "logits": content_fingerprint,
                  "samples": samples_fingerprint, "preprocessing": PREPROCESSING_VERSION, "dtype": dtype})


def views_key(logits_key: str, views: dict[str, Any], top_k: int | None) -> str:
    """The key of a per-view entry: the un-augmented entry it extends (teacher weights, data, dtype), the views'
    augmentation, number, data seed and format (:meth:`kdtune.tasks.image.views.ViewSpec.to_dict`), and the top-k."""
    return _hash({"kind": "views", "format": CACHE_FORMAT_VERSION, "logits": logits_key, "views": views,
                  "top_k": top_k})


def _hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
