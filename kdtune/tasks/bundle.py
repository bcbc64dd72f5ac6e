"""A condition's data (a :class:`~kdtune.core.data.DataBundle`) and its teacher's outputs as a payload of numpy
arrays, and back: what the image and linear tasks hand every trial of a condition (Ray stores it once, and the
trials read it zero-copy, read-only)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    import numpy as np

    from kdtune.core.data import DataBundle
    from kdtune.core.train import TeacherLogits


SPLITS = ("train", "val", "test")


def pack_payload(data: DataBundle, logits: TeacherLogits | None, teacher_weights: np.ndarray | None) -> dict[str, Any]:
    """Everything a trial needs about its condition, as numpy arrays."""
    from kdtune.core.images import DiskImages

    payload: dict[str, Any] = {
        "name": data.name, "task": data.task, "num_classes": data.num_classes,
        "input_shape": tuple(data.input_shape), "description": data.description,
        "teacher_weights": teacher_weights,
        "linear_truth": None if data.linear_truth is None else (data.linear_truth.weights, data.linear_truth.noise_std),
    }
    for name in SPLITS:
        split = getattr(data, name)
        # images on disk travel as their reader and positions (DiskImages is small and picklable), never as pixels
        payload[name] = {k: v if isinstance(v, DiskImages) else v.numpy()
                         for k, v in ((k, getattr(split, k)) for k in ("x", "y", "clean", "flipped"))}
        payload[f"logits_{name}"] = None if logits is None else getattr(logits, name).numpy()
    return payload


def unpack_payload(payload: dict[str, Any]) -> tuple[DataBundle, TeacherLogits | None]:
    """The :class:`DataBundle` and teacher logits (None without) of :func:`pack_payload`'s payload."""
    import torch

    from kdtune.core.data import DataBundle
    from kdtune.core.data import LinearTruth
    from kdtune.core.data import Split
    from kdtune.core.images import DiskImages
    from kdtune.core.train import TeacherLogits

    with warnings.catch_warnings():
        # The arrays live read-only in Ray's object store; training never writes to its inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        splits = {n: Split(**{k: v if isinstance(v, DiskImages) else torch.from_numpy(v)  # type: ignore[arg-type]
                              for k, v in payload[n].items()}) for n in SPLITS}
        logits = None
        if payload["logits_train"] is not None:
            logits = TeacherLogits(*(torch.from_numpy(payload[f"logits_{n}"]) for n in SPLITS))
    truth = payload["linear_truth"]
    data = DataBundle(name=payload["name"], task=payload["task"], num_classes=payload["num_classes"],
                      input_shape=payload["input_shape"], description=payload["description"],
                      linear_truth=None if truth is None else LinearTruth(weights=truth[0], noise_std=truth[1]),
                      **splits)
    return data, logits
