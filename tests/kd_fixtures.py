"""Student factories for the study tests, loaded by import path (``kd_fixtures:...``) inside Ray workers.

They stand in for a user's own model, the collaborator of the code under test: the trial loop, the retry
policy and the failure bookkeeping are the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kdtune.models import MLP


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
