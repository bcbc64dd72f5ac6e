"""The core (data, models, losses, training loop, teacher) never imports Ray or W&B."""

from __future__ import annotations

import subprocess
import sys


def test_core_does_not_import_ray_or_wandb() -> None:
    code = ("import sys, kdtune.data, kdtune.models, kdtune.distill, kdtune.train, kdtune.teacher;"
            "print([m for m in ('ray', 'wandb', 'optuna') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
