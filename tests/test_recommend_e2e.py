"""Recommendations through the whole pipeline: spec -> study (real local Ray) -> kdtune recommend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_study_spec

from kdtune.recommend import recommend
from kdtune.spec import parse_spec
from kdtune.study import RunOptions
from kdtune.study import run_study


pytestmark = pytest.mark.slow


def _linear_study(name: str, dim: int, n_train: int, noise_std: float, errors: list[float]):  # type: ignore[no-untyped-def]
    return parse_spec({
        "name": name,
        "dataset": {"name": "linear", "seed": 0,
                    "linear": {"dim": dim, "n_train": n_train, "n_val": 100000, "n_test": 2000, "noise_std": noise_std}},
        "teacher": {"arch": "linear", "seed": 0},
        "student": {"arch": "linear"},
        "conditions": {"teacher_error": errors},
        "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.05}},
        "sampler": "grid",
        # Each repeat redraws the training-label noise: 24 draws average the per-draw scatter of the optimum.
        "budget": {"repeats": 24},
        "scheduler": {"type": "fifo"},
        "tracking": "none",
    })


@pytest.mark.parametrize(("dim", "n_train", "noise_std", "errors"), [
    (50, 300, 1.0, [0.05, 0.2, 0.8]),
    (20, 400, 2.0, [0.1, 0.6]),
])
def test_linear_recommendation_matches_the_closed_form(ray_local: None, short_tmp: Path, dim: int, n_train: int,
                                                       noise_std: float, errors: list[float]) -> None:
    spec = _linear_study(f"linear-{dim}", dim, n_train, noise_std, errors)
    study_dir = run_study(spec, RunOptions(out=short_tmp / "study", progress=False))
    teachers = json.loads((study_dir / "teachers.json").read_text())
    report = recommend([study_dir])
    stars = []
    for condition in report["conditions"]:
        alpha_star = teachers[condition["key"]]["linear"]["alpha_star"]
        stars.append(alpha_star)
        assert condition["recommended"]["alpha"]["value"] == pytest.approx(alpha_star, abs=0.07), condition["key"]
    assert max(stars) - min(stars) > 0.3  # the settings really move alpha*: the check is not one point


def test_digits_recommendation_within_a_dense_grid_interval(ray_local: None, short_tmp: Path) -> None:
    common = {"conditions": {"noise_level": [0.2]}, "scheduler": {"type": "fifo"}, "default_temperature": 4.0,
              "student": {"arch": "mlp", "epochs": 6, "kwargs": {"widths": [32]}, "lr": 3e-3}}
    searched = tiny_study_spec("digits-tpe", budget={"trials_per_condition": 6, "repeats": 3},
                               search={"alpha": {"type": "float", "low": 0.0, "high": 1.0},
                                       "temperature": {"type": "categorical", "choices": [4.0]}}, **common)
    grid = tiny_study_spec("digits-grid", budget={"repeats": 3}, sampler="grid",
                           search={"alpha": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
                                   "temperature": {"type": "categorical", "choices": [4.0]}}, **common)
    # One trial at a time: TPE then sees completions in a fixed order, so the test is deterministic.
    tpe_dir = run_study(searched, RunOptions(out=short_tmp / "tpe", progress=False, max_concurrent=1))
    grid_dir = run_study(grid, RunOptions(out=short_tmp / "grid", progress=False))
    chosen = recommend([tpe_dir])["conditions"][0]["recommended"]["alpha"]["value"]
    interval = recommend([grid_dir])["conditions"][0]["recommended"]["alpha"]
    assert interval["low"] - 0.05 <= chosen <= interval["high"] + 0.05, (chosen, interval)
