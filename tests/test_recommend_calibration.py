"""A small run of the verdict calibration (benchmarks/recommend_calibration.py) through the real code.

Simulated studies (no training) of the mnist_noise budget, four conditions each, fixed random seeds, so the
counts are deterministic. The thresholds leave room for the simulation's own noise but not for the regression
the verdicts work removed: judged on the search runs instead of confirmation runs (the winner's curse), 20% of
such studies said "distil" somewhere (measured on 100; about 6 of these 30 expected, against at most 3
allowed). A subtler regression, dropping the Bonferroni adjustment (9% measured), needs the full benchmark.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import recommend_calibration as calibration  # noqa: E402


MNIST = calibration.BUDGETS[1]
STUDIES = 30


@pytest.fixture(scope="module")
def null_studies() -> list[list[dict]]:
    rng = np.random.default_rng(11)
    return [calibration.simulate_study(MNIST, [calibration.flat] * 4, rng) for _ in range(STUDIES)]


def test_no_effect_rarely_gives_distil_or_hurts_family_wise(null_studies: list[list[dict]]) -> None:
    kinds = [{r["entry"]["verdict"]["kind"] for r in study} for study in null_studies]
    assert sum("distil" in k for k in kinds) <= 3  # <= 10% of 30 studies; the design aims at <= 5%
    assert sum("hurts" in k for k in kinds) <= 3
    every = [r["entry"]["verdict"]["kind"] for study in null_studies for r in study]
    assert set(every) <= {"distil", "hurts", "no_gain", "inconclusive"}  # all confirmed: never "unconfirmed"


def test_no_effect_is_often_confirmed_as_no_gain(null_studies: list[list[dict]]) -> None:
    """At 10k-MNIST spreads, 16 fresh seeds resolve a 0.5-point margin for most null conditions."""
    every = [r["entry"]["verdict"]["kind"] for study in null_studies for r in study]
    assert every.count("no_gain") >= 0.5 * len(every)


def test_a_true_one_point_gain_is_confirmed(null_studies: list[list[dict]]) -> None:
    rng = np.random.default_rng(12)
    kinds = []
    for i in range(STUDIES):
        curve = calibration.peaked(0.01, [0.3, 0.5, 0.7][i % 3], float(np.log(4.0)))
        kinds.append(calibration.simulate_study(MNIST, [curve], rng)[0]["entry"]["verdict"]["kind"])
    assert kinds.count("distil") >= 0.7 * STUDIES
    assert kinds.count("no_gain") <= 2
