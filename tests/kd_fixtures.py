"""Student factories for the study tests, loaded by import path (``kd_fixtures:...``) inside Ray workers.

They stand in for a user's own model, the collaborator of the code under test: the trial loop, the retry
policy and the failure bookkeeping are the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kdtune.tasks.image.models import MLP


class _FailOnce(nn.Module):
    """An MLP that raises once, on its ``fail_at``-th forward call, in the first process that gets there."""

    calls = 0

    def __init__(self, inner: nn.Module, marker: Path, fail_at: int) -> None:
        super().__init__()
        self.inner = inner
        self.marker = marker
        self.fail_at = fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _FailOnce.calls += 1
        if _FailOnce.calls >= self.fail_at and not self.marker.exists():
            self.marker.write_text("failed once")
            raise RuntimeError("injected failure (kd_fixtures.fail_once)")
        return self.inner(x)


def fail_once(input_shape: Sequence[int], num_classes: int, *, marker: str, fail_at: int = 100) -> nn.Module:
    return _FailOnce(MLP(input_shape, num_classes, widths=(32,)), Path(marker), fail_at)


class _NaNOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


def nan_model(input_shape: Sequence[int], num_classes: int, **unused: object) -> nn.Module:
    return _NaNOutput(MLP(input_shape, num_classes, widths=(8,)))


class _Held(nn.Module):
    """An MLP whose forward pass sleeps ``delay`` seconds while the file ``hold`` exists."""

    def __init__(self, inner: nn.Module, hold: Path, delay: float) -> None:
        super().__init__()
        self.inner = inner
        self.hold = hold
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hold.exists():
            time.sleep(self.delay)
        return self.inner(x)


def held_mlp(input_shape: Sequence[int], num_classes: int, *, hold: str, reached: str = "", delay: float = 0.0,
             width: int = 16) -> nn.Module:
    """A model that keeps a study in one phase while the file ``hold`` exists (tests/test_integrity.py): with
    ``reached`` its construction creates that file and then waits for ``hold`` to go (the checks before a study
    build the model in the driver); with ``delay`` each forward pass sleeps that long (a slow teacher)."""
    if reached:
        Path(reached).touch()
        deadline = time.time() + 300
        while Path(hold).exists() and time.time() < deadline:
            time.sleep(0.1)
    return _Held(MLP(input_shape, num_classes, widths=(width,)), Path(hold), delay)


# -- bring your own: model factories and data loaders (tests/test_byo.py, test_plan.py, test_export.py) ----------


def small_mlp(input_shape: Sequence[int], num_classes: int, *, width: int = 16) -> nn.Module:
    """A user's own student: a plain factory with a keyword argument."""
    return MLP(input_shape, num_classes, widths=(width,))


def wrong_classes(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Three logits too few: the shape check must name (4, K - 3) and (4, K)."""
    return MLP(input_shape, num_classes - 3, widths=(8,))


def raises_on_call(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    raise RuntimeError("cannot build this model here")


class _TupleOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.inner(x)
        return out, out


def tuple_output(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    return _TupleOutput(MLP(input_shape, num_classes, widths=(8,)))


class _FlatOnly(nn.Module):
    """Expects (N, 64) inputs: fails in forward on (N, 1, 8, 8) images."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def flat_only(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    return _FlatOnly(num_classes)


NOT_CALLABLE = 42


def blobs(n: int = 600, dim: int = 12, classes: int = 4, seed: int = 0) -> dict[str, object]:
    """A user's own data as a loader: Gaussian blobs, flat features, no test split (kdtune holds out 20%)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(classes, dim))
    y = np.arange(n) % classes
    x = centres[y] + rng.normal(size=(n, dim))
    return {"x_train": x.astype(np.float32), "y_train": y.astype(np.int64)}


def blobs_tensors() -> dict[str, object]:
    """The same blobs as torch tensors, with a test split and an explicit class count."""
    train, test = blobs(seed=0), blobs(n=200, seed=0)
    return {"x_train": torch.from_numpy(train["x_train"]), "y_train": torch.from_numpy(train["y_train"]),  # type: ignore[arg-type]
            "x_test": torch.from_numpy(test["x_train"]), "y_test": torch.from_numpy(test["y_train"]),  # type: ignore[arg-type]
            "num_classes": 4}


def blobs_with_nan() -> dict[str, object]:
    data = blobs()
    data["x_train"][137, 3] = float("nan")  # type: ignore[index]
    return data


def blobs_float_labels() -> dict[str, object]:
    data = blobs()
    data["y_train"] = data["y_train"].astype("float64")  # type: ignore[attr-defined]
    return data


def loader_raises() -> dict[str, object]:
    raise OSError("the data server is down")
