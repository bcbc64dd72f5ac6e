"""The closed-form linear case: the teacher's error, the least-squares student, and α* = B / (B + V) checked
against Monte Carlo over many training-label noise draws (one per repeat seed).

alpha is the weight on the true labels: alpha = 1 means no distillation. Every random draw below comes from
fixed seeds, so the statistical assertions are deterministic; their tolerances are set from the exact
Monte Carlo standard errors so that they would fail less than once in a thousand fresh draws.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdtune.core.data import DataBundle
from kdtune.errors import SpecError
from kdtune.tasks.linear.closed_form import closed_form
from kdtune.tasks.linear.closed_form import fit_student
from kdtune.tasks.linear.closed_form import make_teacher_weights
from kdtune.tasks.linear.closed_form import student_weights
from kdtune.tasks.linear.data import make_linear


B = 0.2
DRAWS = 2000


@pytest.fixture(scope="module")
def small() -> DataBundle:
    """V ≈ σ²·d/(n − d − 1) ≈ 0.2 ≈ B, so α* sits mid-range; small validation and test sets keep it fast."""
    return make_linear(dim=10, n_train=60, n_val=300, n_test=300, noise_std=1.0, seed=3)


def _gram_inverse(data: DataBundle) -> np.ndarray:
    x = data.train.x.numpy().astype(np.float64)
    return np.linalg.inv(x.T @ x)


@pytest.mark.parametrize("error", [0.0, 0.01, 0.2, 3.5])
def test_teacher_error_has_exactly_the_asked_squared_norm(error: float) -> None:
    truth = make_linear(dim=7, seed=0).linear_truth
    assert truth is not None
    delta = make_teacher_weights(truth, error, seed=5) - truth.weights
    assert float(np.sum(delta**2)) == pytest.approx(error, rel=1e-12, abs=1e-15)


def test_teacher_error_is_independent_of_the_data_seed() -> None:
    maybe = [make_linear(dim=12, seed=s).linear_truth for s in (0, 1)]
    truths = [t for t in maybe if t is not None]
    assert len(truths) == 2
    assert not np.allclose(truths[0].weights, truths[1].weights)
    deltas = [make_teacher_weights(t, 0.3, seed=2) - t.weights for t in truths]
    np.testing.assert_allclose(deltas[0], deltas[1], rtol=0, atol=1e-15)
    other_teacher = make_teacher_weights(truths[0], 0.3, seed=3) - truths[0].weights
    assert np.linalg.norm(other_teacher - deltas[0]) > 0.1


def test_negative_teacher_error_is_refused() -> None:
    truth = make_linear(dim=3).linear_truth
    assert truth is not None
    with pytest.raises(SpecError, match=r"teacher.error = -0.1: must be >= 0"):
        make_teacher_weights(truth, -0.1, seed=0)


def test_too_few_training_samples_are_refused() -> None:
    data = make_linear(dim=10, n_train=11, n_val=5, n_test=5)
    with pytest.raises(SpecError, match=r"dataset.linear.n_train = 11: must be at least dim \+ 2 = 12"):
        closed_form(data, 0.1)


def test_student_is_the_least_squares_fit_to_the_mixed_target() -> None:
    data = make_linear(dim=6, n_train=40, n_val=50, n_test=50, noise_std=0.0, seed=1)
    assert data.linear_truth is not None
    teacher = make_teacher_weights(data.linear_truth, 0.5, seed=0)
    x = data.train.x.numpy().astype(np.float64)
    for alpha in (0.0, 0.3, 1.0):
        target = alpha * (x @ data.linear_truth.weights) + (1 - alpha) * (x @ teacher)
        expected = np.linalg.lstsq(x, target, rcond=None)[0]
        np.testing.assert_allclose(student_weights(data, teacher, alpha, seed=0), expected, atol=1e-10)
    assert fit_student(data, teacher, 0.0, seed=0)["weight_error"] == pytest.approx(0.5, rel=1e-12)


def test_each_seed_redraws_the_label_noise_and_nothing_else(small: DataBundle) -> None:
    assert small.linear_truth is not None
    teacher = make_teacher_weights(small.linear_truth, B, seed=0)
    w = [student_weights(small, teacher, 1.0, seed=s) for s in (0, 0, 1)]
    np.testing.assert_array_equal(w[0], w[1])
    assert np.linalg.norm(w[0] - w[2]) > 0.05
    # alpha = 0 ignores the labels entirely: every seed gives the teacher.
    np.testing.assert_array_equal(student_weights(small, teacher, 0.0, seed=7), teacher)


def test_metrics_match_an_independent_computation(small: DataBundle) -> None:
    assert small.linear_truth is not None
    teacher = make_teacher_weights(small.linear_truth, B, seed=0)
    w = student_weights(small, teacher, 0.4, seed=11)
    metrics = fit_student(small, teacher, 0.4, seed=11)
    x_val, y_val = small.val.x.numpy().astype(np.float64), small.val.y.numpy().astype(np.float64)
    x_test, y_test = small.test.x.numpy().astype(np.float64), small.test.y.numpy().astype(np.float64)
    error = w - small.linear_truth.weights
    assert metrics["val_loss"] == pytest.approx(np.mean((x_val @ w - y_val) ** 2), rel=1e-12)
    assert metrics["test_loss"] == pytest.approx(np.mean((x_test @ w - y_test) ** 2), rel=1e-12)
    test_covariance = x_test.T @ x_test / len(x_test)
    assert metrics["test_excess_mse"] == pytest.approx(error @ test_covariance @ error, rel=1e-9)
    assert metrics["weight_error"] == pytest.approx(float(error @ error), rel=1e-12)


def test_excess_risk_curve_matches_the_formula_over_many_noise_draws(small: DataBundle) -> None:
    assert small.linear_truth is not None
    teacher = make_teacher_weights(small.linear_truth, B, seed=0)
    form = closed_form(small, B)
    g = _gram_inverse(small)
    delta = teacher - small.linear_truth.weights
    assert form["V"] == pytest.approx(float(np.trace(g)), rel=1e-12)  # σ = 1
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
        risks = np.array([fit_student(small, teacher, alpha, seed=s)["weight_error"] for s in range(DRAWS)])
        expected = alpha**2 * form["V"] + (1 - alpha) ** 2 * form["B"]
        # Exact variance of ‖alpha·Mε + (1 − alpha)·Δ‖² for Gaussian ε (M = (XᵀX)⁻¹Xᵀ, σ = 1).
        variance = 2 * alpha**4 * np.trace(g @ g) + 4 * alpha**2 * (1 - alpha) ** 2 * (delta @ g @ delta)
        tolerance = 4.5 * np.sqrt(variance / DRAWS) + 1e-12  # a normal tail of ~7e-6 per point
        assert abs(risks.mean() - expected) <= tolerance, (alpha, risks.mean(), expected, tolerance)


def test_alpha_star_is_the_argmin_of_the_mean_excess_risk_curve(small: DataBundle) -> None:
    assert small.linear_truth is not None
    teacher = make_teacher_weights(small.linear_truth, B, seed=0)
    alpha_star = closed_form(small, B)["alpha_star"]
    assert 0.35 < alpha_star < 0.65
    grid = np.round(np.linspace(0.0, 1.0, 41), 6)
    curve = np.array([np.mean([fit_student(small, teacher, a, seed=s)["weight_error"] for s in range(600)])
                      for a in grid])
    # SD of the empirical minimiser over fresh draws ≈ 0.0055 here (600 seeds): 0.025 is 4.5 of them,
    # and the grid's own resolution adds half a step.
    c2, c1, _ = np.polyfit(grid, curve, 2)  # the mean curve is an exact quadratic in alpha
    assert -c1 / (2 * c2) == pytest.approx(alpha_star, abs=0.025)
    assert abs(grid[np.argmin(curve)] - alpha_star) <= 0.025 + 0.0125


def test_validation_search_finds_alpha_star_with_the_default_sizes() -> None:
    """What the study engine does: minimise the mean validation MSE over repeat seeds (n_val = 20000)."""
    data = make_linear(seed=0)
    assert data.linear_truth is not None
    teacher = make_teacher_weights(data.linear_truth, 0.1, seed=0)
    alpha_star = closed_form(data, 0.1)["alpha_star"]
    points = (0.0, 0.5, 1.0)  # each seed's validation MSE is an exact quadratic in alpha
    curve = [np.mean([fit_student(data, teacher, a, seed=s)["val_loss"] for s in range(300)]) for a in points]
    c2, c1, _ = np.polyfit(points, curve, 2)
    # Over fresh blocks of 300 seeds the minimiser lands at α* − 0.004 ± 0.005 (validation bias + draws).
    assert -c1 / (2 * c2) == pytest.approx(alpha_star, abs=0.03)
