"""A small run of the calibration benchmark (benchmarks/recommend_calibration.py) through the real study code.

Simulated studies of the mnist_noise budget (its four conditions, 24 TPE proposals, 3 seeds, confirmation in
rounds of 4 up to 16): the real ``ConditionSearcher`` (Optuna TPE on an in-memory storage, its baselines, its
confirmation rounds and stopping), ``score_runs`` on per-epoch curves and ``recommend_condition``; only training
and ASHA are simulated (benchmarks/calibration_sim.py). Fixed random seeds, so the counts are deterministic.

Every limit is a binomial quantile at which a correct implementation fails less than once in a thousand runs
(one-sided 1e-3), at a rate the design guarantees or the issue sets as its target (docs/recommendation_schema.md,
"How reliable is a verdict"), never a count copied from a run. The skewed and rare-failure nulls are held too:
the plain t-interval deciding at the first look gave false "distil" in 55% of rare-failure studies at this budget.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scipy import stats


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import calibration_sim as sim  # noqa: E402
import recommend_calibration as calibration  # noqa: E402

from kdtune.analysis.sequential import Design  # noqa: E402
from kdtune.analysis.verdicts import DECISIVE  # noqa: E402
from kdtune.analysis.verdicts import ConfirmedArm  # noqa: E402
from kdtune.analysis.verdicts import confirm  # noqa: E402


MNIST = sim.BUDGETS["mnist_noise"]
TAIL = 1e-3
NULL_STUDIES = 40  # x 4 conditions
PEAK_STUDIES = 24  # x 4 conditions: 24 conditions per true optimum alpha


@pytest.fixture(scope="module")
def null_row() -> calibration.Row:
    return calibration.run_row(MNIST, calibration.Scenario("null", "normal"), NULL_STUDIES, seed=11)


@pytest.fixture(scope="module", params=["failure", "left", "right"])
def skewed_null_row(request: pytest.FixtureRequest) -> calibration.Row:
    seed = {"failure": 13, "left": 14, "right": 15}[request.param]
    return calibration.run_row(MNIST, calibration.Scenario("null", request.param), NULL_STUDIES, seed=seed)


@pytest.fixture(scope="module")
def peak_row() -> calibration.Row:
    return calibration.run_row(MNIST, calibration.Scenario("plus1", "normal"), PEAK_STUDIES, seed=12)


def test_no_effect_rarely_gives_a_false_distil_or_hurts_family_wise(null_row: calibration.Row) -> None:
    """The design promises at most 5% family-wise (all four conditions, both directions), judged against the
    confirmed configuration's true gain: at most 7 of 40 studies at one-sided 1e-3. The null is not flat: some
    confirmed configurations are truly worse than alpha = 1, and every condition ends confirmed."""
    wrong = sum(any(calibration.false_distil(c) or calibration.false_hurts(c) for c in study)
                for study in null_row.studies)
    assert wrong <= stats.binom.isf(TAIL, NULL_STUDIES, 0.05)
    assert {c.kind for c in null_row.conditions} <= set(DECISIVE) | {"inconclusive"}
    gains = [c.judged_gain for c in null_row.conditions]
    assert all(g is not None and g <= 0 for g in gains) and any(g is not None and g < 0 for g in gains)


def test_skewed_or_rarely_failing_gains_of_mean_zero_rarely_give_a_false_verdict(skewed_null_row: calibration.Row) -> None:
    """One distilled run in ten failing by 10 paired SDs, or a gamma-skewed difference one SD wide (both mean zero):
    the same 5% family-wise promise, at most 7 of 40 studies at one-sided 1e-3."""
    wrong = sum(any(calibration.false_distil(c) or calibration.false_hurts(c) for c in study)
                for study in skewed_null_row.studies)
    assert wrong <= stats.binom.isf(TAIL, NULL_STUDIES, 0.05)


def test_the_searcher_stops_at_the_first_decisive_look_and_recommend_reads_that_look(
        null_row: calibration.Row, peak_row: calibration.Row) -> None:
    """The verdict is judged on the fresh confirmation seeds the searcher spent, at a planned look: the first at
    which the verdict was decisive, or the last. Recomputing the verdict at every earlier look finds none decisive,
    so the study's stopping rule and ``recommend`` agree."""
    spec = sim.parse_spec(sim.load_budget_spec(MNIST))
    design = Design.of(spec.budget)
    for c in null_row.conditions + peak_row.conditions:
        gain = c.entry["gain"]
        assert gain["source"] == "confirm" and gain["n_pairs"] == c.confirm_pairs
        assert c.confirm_pairs in design.looks
        assert c.kind in DECISIVE or c.confirm_pairs == design.max_n
        baseline = next(a for a in c.arms.values() if a.alpha == 1.0 and a.confirm)
        candidates = [a for a in c.arms.values() if a.confirm and a.alpha != 1.0]
        assert [sum(map(len, c.rounds[:i + 1])) for i in range(len(c.rounds))] == list(design.looks[:len(c.rounds)])
        for i in range(len(c.rounds) - 1):  # every look before the last
            seeds = [(sim.PREFIX, s) for r in c.rounds[:i + 1] for s in r]

            def cut(arm: sim.Arm, seeds: list[tuple[str, int]] = seeds) -> ConfirmedArm:
                return ConfirmedArm(params=arm.params, runs={s: (arm.confirm[s].objective, arm.confirm[s].test)
                                                             for s in seeds if s in arm.confirm})

            earlier = confirm([cut(a) for a in candidates], cut(baseline), sign=1.0, design=design,
                              conditions=len(sim.expand(spec)), margin=spec.margin)
            assert earlier.kind not in DECISIVE, f"decisive ({earlier.kind}) at look {i + 1}, stopped at {c.confirm_pairs}"


def test_confirmed_gains_are_free_of_the_winners_curse(null_row: calibration.Row) -> None:
    """Where the confirmed configuration is truly as good as alpha = 1 (the null's plateau), its confirmed gain is
    as likely positive as negative: fresh seeds and a symmetric stopping rule. Gains read from the search runs the
    winner was chosen on lean positive."""
    gains = [c.entry["gain"]["mean"] for c in null_row.conditions if c.judged_gain == 0]
    positive = sum(g > 0 for g in gains)
    low, high = stats.binom.ppf(TAIL, len(gains), 0.5), stats.binom.isf(TAIL, len(gains), 0.5)
    assert len(gains) >= 40
    assert low <= positive <= high, f"{positive} of {len(gains)} plateau gains are positive; symmetric gives {low}..{high}"


def test_a_true_one_point_gain_is_confirmed(peak_row: calibration.Row) -> None:
    """Power at +1 point must stay at least 80% at the mnist_noise budget (the issue's target) and a false
    "no gain" at most 5%: of 96 conditions, at least the 1e-3 quantile at 80% say "distil", at most the 1e-3
    upper quantile at 5% say "no gain". A verdict that lost its power (or its confirmation) fails here."""
    kinds = [c.kind for c in peak_row.conditions]
    n = len(kinds)
    assert kinds.count("distil") >= stats.binom.ppf(TAIL, n, 0.80)
    assert kinds.count("no_gain") <= stats.binom.isf(TAIL, n, 0.05)
    assert kinds.count("hurts") <= stats.binom.isf(TAIL, n, 0.05)


def test_the_alpha_interval_covers_the_true_optimum_and_locates_it(peak_row: calibration.Row) -> None:
    """The recommended alpha interval must cover the true optimum (0.2, 0.4, 0.6 or 0.8) in at least 90% of
    conditions (the issue's target): at least the 1e-3 quantile at 90% of the 96. An interval that shrank without
    locating the optimum fails here. It must also say something: the issue's targets are a median width of at most
    0.35 and a located optimum at most 0.1 off on average; with 96 conditions the limits here are 0.40 and 0.12
    (the search's interval alone had median width 0.9-1.0 and its fitted optimum was 0.17 off)."""
    figures = calibration.alpha_figures(peak_row.conditions)
    n = figures["coverage"]["n"]
    assert n == 4 * PEAK_STUDIES
    assert figures["coverage"]["k"] >= stats.binom.ppf(TAIL, n, 0.90)
    located = [c for c in peak_row.conditions if c.entry["recommended"]["located"] is not None]
    assert len(located) >= stats.binom.ppf(TAIL, n, 0.80)  # every "distil" locates
    assert figures["median_width"]["mean"] <= 0.40 and figures["fitted_error"]["mean"] <= 0.12, figures


def test_the_benchmark_figures_carry_clopper_pearson_intervals(null_row: calibration.Row) -> None:
    """The table's rates are exact binomial intervals: 0 of 40 gives [0, 1 - 0.025^(1/40)], and the median's
    interval is made of observed order statistics around it."""
    assert calibration.rate(0, 40)["high"] == pytest.approx(1 - 0.025 ** (1 / 40))
    figures = calibration.summarise(null_row)
    assert figures["studies"] == NULL_STUDIES and figures["conditions"] == 4 * NULL_STUDIES
    width = calibration.median([float(v) for v in range(1, 101)])
    assert width["low"] <= width["mean"] <= width["high"] and width["low"] in range(1, 101)
