"""Torch tensors over the cache's decoded arrays, without a copy.

Arrow hands out read-only arrays and ``torch.from_numpy`` warns that it cannot protect them. The cached logits
are only ever indexed (the trainer gathers batches from them), never written, so the warning is silenced here
once rather than paying for a copy in every place that reads an entry. torch is imported inside the functions:
listing the cache never loads it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    import torch


def readonly_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory, in its dtype."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


def float32_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU float32 tensor over ``array``: shared when it is float32 already, else a widened copy (float16)."""
    return readonly_tensor(array if array.dtype == np.float32 else array.astype(np.float32))
