"""The linear / MSE case of distillation, where the optimal alpha has a closed form.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

Setting (``docs/linear_closed_form.md`` has the derivation): features x ~ N(0, I_d), targets
y = x·w* + ε with ε ~ N(0, σ²); the teacher is w_t = w* + Δ with ‖Δ‖² = B exactly (uniform direction, drawn
from the teacher seed alone, so independent of the data); the student is the least-squares fit to the mixed
target alpha·y + (1 − alpha)·x·w_t, i.e. w = alpha·w_ols + (1 − alpha)·w_t. Its expected excess risk is
alpha²·V + (1 − alpha)²·B with V = σ²·tr((XᵀX)⁻¹) on the study's own training X, minimised at
α* = B / (B + V).

Design decision: **a repeat (student) seed redraws the training-label noise ε**, keeping the training X, the
validation and test sets and the teacher fixed. The expectation in α* is over ε for that fixed X and Δ, so
averaging repeats estimates exactly the curve whose minimum is α*. With a single ε draw the realised optimum
scatters around α* by far more than the searched precision (see the docs for numbers). The bundle's own
``train.y`` is therefore not used by :func:`fit_student`; every seed, 0 included, draws its own ε.

Pure numpy: no training loop, no Ray. The study engine calls :func:`make_teacher_weights` once per condition,
:func:`closed_form` once per condition, and :func:`fit_student` once per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kdtune.errors import SpecError


if TYPE_CHECKING:
    from kdtune.core.data import DataBundle
    from kdtune.core.data import LinearTruth


#: Stream identifiers mixed into the seeds, so that teacher and label-noise draws never share a stream
#: with each other or with :func:`kdtune.tasks.linear.data.make_linear` (which uses stream 10).
_TEACHER_STREAM = 30
_NOISE_STREAM = 20


def make_teacher_weights(truth: LinearTruth, error: float, seed: int) -> np.ndarray:
    """Teacher weights w* + Δ with ‖Δ‖² = ``error`` exactly and Δ's direction uniform on the sphere.

    Δ depends on ``seed`` (the teacher seed) and the dimension only, never on the data seed.
    """
    if error < 0:
        raise SpecError("teacher.error", error, "must be >= 0 (squared norm B of the teacher's weight error)")
    rng = np.random.default_rng([seed, _TEACHER_STREAM])
    direction = rng.standard_normal(truth.weights.shape)
    weights: np.ndarray = truth.weights + np.sqrt(error) * direction / np.linalg.norm(direction)
    return weights


def closed_form(data: DataBundle, error: float) -> dict[str, float]:
    """B, V = σ²·tr((XᵀX)⁻¹) on ``data``'s training X, and α* = B / (B + V) (the weight on the true labels).

    With B = V = 0 every alpha is optimal and α* is reported as 1 (no distillation).
    """
    truth = _truth(data)
    x = _design(data)
    variance = truth.noise_std**2 * float(np.trace(np.linalg.inv(x.T @ x)))
    total = error + variance
    return {"B": float(error), "V": variance, "alpha_star": float(error / total) if total > 0 else 1.0}


def student_weights(data: DataBundle, teacher_weights: np.ndarray, alpha: float, seed: int) -> np.ndarray:
    """The least-squares student on the mixed target alpha·y + (1 − alpha)·x·w_t, for one repeat seed.

    The seed redraws the training-label noise ε (same X). Least squares is linear in its target, so the
    solution is alpha·w_ols + (1 − alpha)·w_t with w_ols fitted to this seed's y.
    """
    truth = _truth(data)
    x = _design(data)
    rng = np.random.default_rng([int(data.description["seed"]), _NOISE_STREAM, seed])
    y = x @ truth.weights + truth.noise_std * rng.normal(size=x.shape[0])
    w_ols = np.linalg.solve(x.T @ x, x.T @ y)
    return alpha * w_ols + (1.0 - alpha) * np.asarray(teacher_weights, dtype=np.float64)


def fit_student(data: DataBundle, teacher_weights: np.ndarray, alpha: float, seed: int) -> dict[str, float]:
    """Solve the student for one repeat seed (see :func:`student_weights`) and evaluate it.

    Returns:
      * ``val_loss``: validation MSE against the noisy validation targets (the search objective, val_mse);
      * ``test_loss``: test MSE against the noisy test targets;
      * ``test_excess_mse``: test MSE against the noise-free targets x·w* (≈ ‖w − w*‖²);
      * ``weight_error``: ‖w − w*‖² exactly, the excess risk under x ~ N(0, I).
    """
    from kdtune.core.images import in_memory

    truth = _truth(data)
    w = student_weights(data, teacher_weights, alpha, seed)
    x_val = in_memory(data.val.x).numpy().astype(np.float64)
    x_test = in_memory(data.test.x).numpy().astype(np.float64)
    return {
        "val_loss": _mse(x_val @ w, data.val.y.numpy()),
        "test_loss": _mse(x_test @ w, data.test.y.numpy()),
        "test_excess_mse": _mse(x_test @ w, x_test @ truth.weights),
        "weight_error": float(np.sum((w - truth.weights) ** 2)),
    }


def _truth(data: DataBundle) -> LinearTruth:
    if data.linear_truth is None:
        raise SpecError("dataset.name", data.name, "the closed-form linear case needs dataset linear")
    return data.linear_truth


def _design(data: DataBundle) -> np.ndarray:
    """The training X in float64; refused when XᵀX is singular (fewer samples than features)."""
    from kdtune.core.images import in_memory

    x = in_memory(data.train.x).numpy().astype(np.float64)
    n, dim = x.shape
    if n <= dim + 1:
        raise SpecError("dataset.linear.n_train", n,
                        f"must be at least dim + 2 = {dim + 2} for least squares")
    return x


def _mse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((prediction - target.astype(np.float64)) ** 2))
