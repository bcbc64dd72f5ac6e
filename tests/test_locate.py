"""The locate stage's statistics (kdtune.analysis.locate) on curves whose optimum is known.

alpha is the weight on the true labels: alpha = 1 means no distillation. Curves here are in points of accuracy;
every alpha runs on the same seeds, as the locate stage runs them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdtune.analysis.locate import CONFIDENCE
from kdtune.analysis.locate import locate
from kdtune.analysis.locate import locate_points


ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def split_parabola(alpha: float, star: float, left: float, right: float) -> float:
    """1 point at ``star``, falling with curvature ``left`` below it and ``right`` above it."""
    d = alpha - star
    return 1.0 - (left if d < 0 else right) * d * d


def smooth_skewed(alpha: float, star: float) -> float:
    """A smooth curve that is no split parabola: a cubic with its maximum, 1 point, at ``star`` and 0 at alpha = 1
    (no distillation), falling faster towards alpha = 1 than towards 0 as distillation curves do; single-peaked on
    [0, 1] for ``star`` up to 0.8."""
    d, right = alpha - star, 1.0 - star
    return 1.0 - d * d * (1.0 + 0.8 * d) / (right * right * (1.0 + 0.8 * right))


def _runs(curve, alphas, seeds: int, sd: float, rng: np.random.Generator,  # type: ignore[no-untyped-def]
          seed_sd: float = 0.0) -> dict[float, dict[int, float]]:
    seed_effect = rng.normal(0.0, seed_sd, seeds)
    return {a: {s: curve(a) + seed_effect[s] + rng.normal(0.0, sd) for s in range(seeds)} for a in alphas}


def test_locate_points_spread_over_the_range_and_leave_alpha_one_to_the_confirmation() -> None:
    assert locate_points(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert locate_points(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75]
    assert locate_points(0.1, 0.9, 3) == [0.1, 0.5, 0.9]
    assert locate_points(0.0, 1.0, 0) == []


def test_without_noise_the_optimum_and_the_near_optimal_alphas_are_exact() -> None:
    """A split parabola with kL = 2, kR = 8 and its optimum at 0.55: the fit finds 0.55 and the alphas within 0.5
    points of it, [0.55 - sqrt(0.5 / 2), 0.55 + sqrt(0.5 / 8)] = [0.05, 0.80]."""
    curve = lambda a: split_parabola(a, 0.55, 2.0, 8.0)  # noqa: E731
    runs = {a: {s: curve(a) for s in range(5)} for a in (*ALPHAS, 0.5)}
    found = locate(runs, sign=1.0, tolerance=0.5, params={"temperature": 4.0})
    assert found is not None
    assert found.alpha == pytest.approx(0.55, abs=0.011) and found.low <= 0.55 <= found.high
    assert found.near_optimal == pytest.approx((0.55 - math.sqrt(0.25), 0.55 + math.sqrt(0.5 / 8)), abs=0.011)
    assert found.seeds == 5 and found.alphas == (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
    assert found.as_dict()["params"] == {"temperature": 4.0} and found.as_dict()["confidence"] == CONFIDENCE


def test_lower_is_better_objectives_are_located_the_same_way() -> None:
    rng = np.random.default_rng(3)
    runs = _runs(lambda a: split_parabola(a, 0.3, 4.0, 4.0), ALPHAS, 12, 0.05, rng)
    high = locate(runs, sign=1.0, tolerance=0.2, params={})
    low = locate({a: {s: -v for s, v in r.items()} for a, r in runs.items()}, sign=-1.0, tolerance=0.2, params={})
    assert high == low and high is not None and abs(high.alpha - 0.3) <= 0.05


def test_seed_effects_cancel_every_alpha_ran_on_every_seed() -> None:
    """A shared seed effect 20 times the run noise changes nothing: every alpha's mean moves by the same amount,
    and the bootstrap draws a seed's runs together. An unpaired method would be lost in it."""
    curve = lambda a: split_parabola(a, 0.6, 3.0, 10.0)  # noqa: E731
    plain = _runs(curve, ALPHAS, 10, 0.1, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    shared = {s: float(rng.normal(0.0, 2.0)) for s in range(10)}
    shifted = {a: {s: v + shared[s] for s, v in r.items()} for a, r in plain.items()}
    a, b = locate(plain, sign=1.0, tolerance=0.5, params={}), locate(shifted, sign=1.0, tolerance=0.5, params={})
    assert a is not None and b is not None
    assert (a.alpha, a.low, a.high, *a.near_optimal) == pytest.approx((b.alpha, b.low, b.high, *b.near_optimal))
    assert b.high - b.low < 0.3


def test_a_flat_curve_says_any_alpha_is_near_optimal() -> None:
    """No alpha matters: the near-optimal set is the whole range, which is the answer to give."""
    rng = np.random.default_rng(7)
    found = locate(_runs(lambda a: 0.0, ALPHAS, 20, 0.05, rng), sign=1.0, tolerance=0.5, params={})
    assert found is not None and found.near_optimal == (0.0, 1.0)


def test_too_few_alphas_or_seeds_locate_nothing() -> None:
    rng = np.random.default_rng(8)
    curve = lambda a: split_parabola(a, 0.5, 4.0, 4.0)  # noqa: E731
    assert locate(_runs(curve, (0.0, 0.5, 1.0), 10, 0.1, rng), sign=1.0, tolerance=0.5, params={}) is None
    assert locate(_runs(curve, ALPHAS, 2, 0.1, rng), sign=1.0, tolerance=0.5, params={}) is None
    runs = _runs(curve, ALPHAS, 10, 0.1, rng)
    runs[0.4] = {s: v for s, v in runs[0.4].items() if s < 2}  # only 2 seeds ran every alpha
    assert locate(runs, sign=1.0, tolerance=0.5, params={}) is None


@pytest.mark.parametrize("star", [0.25, 0.75])
def test_the_interval_covers_a_smooth_curve_that_is_no_split_parabola(star: float) -> None:
    """Coverage on a curve from another family (a cubic), at the mnist_noise noise (0.42 points per run) and
    21 seeds: the interval must cover the optimum in at least 80% of 40 studies (it covered 92% and 89% in 100; its
    nominal level is 95%; a symmetric parabola or a cubic fitted to the simulator's curves covered 0-13% at 0.6-0.8,
    and the split parabola fitted to every alpha 0% at 0.75 here), and the median width must stay under 0.55."""
    rng = np.random.default_rng(int(star * 100))
    covered, widths = 0, []
    for _ in range(40):
        runs = _runs(lambda a: smooth_skewed(a, star), (*ALPHAS, round(star + rng.normal(0, 0.1), 2)), 21, 0.42, rng,
                     seed_sd=0.3)
        found = locate(runs, sign=1.0, tolerance=0.5, params={}, draws=400)
        assert found is not None
        covered += found.low <= star <= found.high
        widths.append(found.high - found.low)
    assert covered >= 32 and float(np.median(widths)) <= 0.55, (covered, np.median(widths))


def _words(located: dict, value: float) -> str:  # type: ignore[type-arg]
    from kdtune.analysis.recommendation import Context
    from kdtune.analysis.sequential import Design
    from kdtune.analysis.wording import located_words
    from kdtune.spec.schema import parse_spec
    from kdtune.tasks import objective_of

    spec = parse_spec({"name": "words"})
    context = Context(spec=spec, metric=objective_of(spec), margin=0.005, design=Design(round_size=4, max_n=8),
                      conditions=1)
    return located_words({"params": {"alpha": value, "temperature": 4.0}, "located": located}, context)


def test_the_verdict_says_where_the_optimum_lies_and_what_is_near_it() -> None:
    """The located answer in words: interval, near-optimal alphas in the margin's unit, and a confirmed alpha
    outside the interval named as such (the located optimum itself was never confirmed)."""
    located = {"alpha": 0.62, "low": 0.5, "high": 0.71, "confidence": 0.95, "seeds": 21, "tolerance": 0.005,
               "alphas": [0.0, 0.2, 0.4, 0.6, 0.65, 0.8, 1.0], "params": {"temperature": 4.0},
               "near_optimal": {"alpha_low": 0.3, "alpha_high": 0.8}}
    inside = _words(located, 0.65)
    assert inside == ("; located on 21 paired seeds at 7 alphas (T 4): the best alpha lies in 0.5–0.71 (95%, fitted "
                      "0.62), and any alpha in 0.3–0.8 is within 0.5 points of the best on validation")
    outside = _words(located, 0.3)
    assert outside.endswith("; the confirmed alpha 0.3 lies outside that interval, and the located optimum was not "
                            "itself confirmed")
    assert "no alpha is shown within 0.5 points" in _words({**located, "near_optimal": None}, 0.65)
    assert _words(None, 0.65) == ""  # type: ignore[arg-type]
