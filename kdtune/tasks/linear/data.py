"""The synthetic linear regression task's data: Gaussian features, a linear truth and Gaussian label noise.

The draws are the ones :mod:`kdtune.tasks.linear.closed_form` reasons about (its α* = B / (B + V) is computed on
this very X), so they live with the task rather than with the task-agnostic data types of :mod:`kdtune.core.data`.
"""

from __future__ import annotations

import numpy as np
import torch

from kdtune.core.data import DataBundle
from kdtune.core.data import LinearTruth
from kdtune.core.data import Split
from kdtune.errors import SpecError


def make_linear(
    *,
    dim: int = 20,
    n_train: int = 200,
    n_val: int = 20000,
    n_test: int = 20000,
    noise_std: float = 1.0,
    seed: int = 0,
) -> DataBundle:
    """Synthetic regression: x ~ N(0, I_dim), y = x · w* + ε with ε ~ N(0, noise_std²), w* ~ N(0, I/dim).

    The validation split is separate and large by default, because the differences between alpha values on
    this task are of the order of σ²·dim/n_train and must not drown in validation noise.
    """
    for field, value in (("dim", dim), ("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 1:
            raise SpecError(f"dataset.linear.{field}", value, "must be a positive integer")
    if noise_std < 0:
        raise SpecError("dataset.linear.noise_std", noise_std, "must be >= 0")
    rng = np.random.default_rng([seed, 10])
    w = rng.normal(size=dim) / np.sqrt(dim)
    splits = []
    for n in (n_train, n_val, n_test):
        x = rng.normal(size=(n, dim))
        clean = x @ w
        y = clean + noise_std * rng.normal(size=n)
        splits.append(
            Split(
                x=torch.from_numpy(x.astype(np.float32)),
                y=torch.from_numpy(y.astype(np.float32)),
                clean=torch.from_numpy(clean.astype(np.float32)),
                flipped=torch.zeros(n, dtype=torch.bool),
            )
        )
    description = {"name": "linear", "dim": dim, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                   "noise_std": noise_std, "seed": seed}
    return DataBundle(
        name="linear",
        task="regression",
        num_classes=1,
        input_shape=(dim,),
        train=splits[0],
        val=splits[1],
        test=splits[2],
        description=description,
        linear_truth=LinearTruth(weights=w, noise_std=noise_std),
    )
