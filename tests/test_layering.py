"""The core (data, models, losses, training loop, teacher) never imports Ray or W&B; read-only commands
import neither Ray nor torch (plan: no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_core_does_not_import_ray_or_wandb() -> None:
    code = ("import sys, kdtune.data, kdtune.models, kdtune.distill, kdtune.train, kdtune.teacher, kdtune.views;"
            "print([m for m in ('ray', 'wandb', 'optuna') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Read-only commands and what they must not import: they read files, and Ray (~1.3 s) or torch (~2 s) would
# be most of their time. `plan` times a few training steps, so it needs torch, never Ray.
READ_ONLY = [
    (["status", "{study}"], ("ray", "torch", "wandb")),
    (["status", "{study}", "--format", "json"], ("ray", "torch", "wandb")),
    (["recommend", "{study}", "--out", "{tmp}/recommendation.json"], ("ray", "torch", "wandb")),
    (["report", "{study}", "--out", "{tmp}/report.html"], ("ray", "torch", "wandb")),
    (["cache", "ls"], ("ray", "torch", "wandb")),
    (["plan", "{spec}", "--format", "json"], ("ray", "wandb")),
]


@pytest.mark.parametrize(("argv", "forbidden"), READ_ONLY, ids=[" ".join(a[:2]) for a, _ in READ_ONLY])
def test_read_only_commands_import_neither_ray_nor_torch(small_study: Path, tmp_path: Path, argv: list[str],
                                                        forbidden: tuple[str, ...]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text((small_study / "spec.yaml").read_text())
    args = [a.format(study=small_study, tmp=tmp_path, spec=spec) for a in argv]
    code = ("import sys\nfrom kdtune.cli import main\nrc = main(sys.argv[1:])\n"
            f"print('imported:', sorted(m for m in {forbidden!r} if m in sys.modules), file=sys.stderr)\n"
            "sys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stderr, done.stderr[-2000:]
