"""The KD losses against independent formulas and their limits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdtune.core.distill import check_alpha
from kdtune.core.distill import kd_loss
from kdtune.core.distill import regression_kd_loss
from kdtune.errors import SpecError


def _batch(seed: int = 0, b: int = 32, k: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g) * 3, torch.randn(b, k, generator=g) * 3, torch.randint(0, k, (b,), generator=g)


def _kl_from_probabilities(t: torch.Tensor, s: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_t || p_s) written out by hand, per sample, averaged: an independent reference."""
    p_t = torch.softmax(t.double() / temperature, 1)
    p_s = torch.softmax(s.double() / temperature, 1)
    return (p_t * (p_t.log() - p_s.log())).sum(1).mean()


def test_alpha_one_is_cross_entropy() -> None:
    s, t, y = _batch()
    assert torch.allclose(kd_loss(s, t, y, alpha=1.0, temperature=4.0), F.cross_entropy(s, y))


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_alpha_zero_is_t_squared_kl(temperature: float) -> None:
    s, t, y = _batch(1)
    expected = temperature**2 * _kl_from_probabilities(t, s, temperature)
    assert kd_loss(s, t, y, alpha=0.0, temperature=temperature).double() == pytest.approx(float(expected), rel=1e-4)


def test_loss_is_linear_and_continuous_in_alpha() -> None:
    s, t, y = _batch(2)
    at = [float(kd_loss(s, t, y, alpha=a, temperature=3.0)) for a in (0.0, 1e-7, 0.5, 1 - 1e-7, 1.0)]
    assert at[1] == pytest.approx(at[0], rel=1e-5)
    assert at[3] == pytest.approx(at[4], rel=1e-5)
    assert at[2] == pytest.approx((at[0] + at[4]) / 2, rel=1e-5)


def test_kl_term_is_nonnegative_and_zero_at_the_teacher() -> None:
    for seed in range(20):
        s, t, y = _batch(seed)
        assert float(kd_loss(s, t, y, alpha=0.0, temperature=2.0)) >= 0
    assert float(kd_loss(t, t, y, alpha=0.0, temperature=2.0)) == pytest.approx(0.0, abs=1e-6)


def test_gradient_scale_roughly_independent_of_temperature() -> None:
    s, t, y = _batch(3)
    t = t - t.mean(1, keepdim=True)  # Hinton's high-T approximation assumes zero-mean logits
    norms = []
    for temperature in (5.0, 10.0, 20.0, 40.0):
        student = (s - s.mean(1, keepdim=True)).clone().requires_grad_(True)
        kd_loss(student, t, y, alpha=0.0, temperature=temperature).backward()
        norms.append(float(student.grad.norm()))
    # Without the T^2 factor the norm would fall 64-fold from T = 5 to T = 40.
    assert max(norms) / min(norms) < 1.3


def test_no_gradient_flows_into_teacher() -> None:
    s, t, y = _batch(4)
    t = t.clone().requires_grad_(True)
    kd_loss(s.requires_grad_(True), t, y, alpha=0.3, temperature=2.0).backward()
    assert t.grad is None


def test_regression_variant_limits_and_minimiser() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target, teacher = (torch.randn(50, generator=g) for _ in range(3))
    assert torch.allclose(regression_kd_loss(pred, target, teacher, alpha=1.0), F.mse_loss(pred, target))
    assert torch.allclose(regression_kd_loss(pred, target, teacher, alpha=0.0), F.mse_loss(pred, teacher))
    # The minimiser over a free prediction is the mixed target alpha * y + (1 - alpha) * t.
    free = torch.zeros(50, requires_grad=True)
    optimizer = torch.optim.LBFGS([free], max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = regression_kd_loss(free, target, teacher, alpha=0.3)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert torch.allclose(free.detach(), 0.3 * target + 0.7 * teacher, atol=1e-4)


@pytest.mark.parametrize("alpha", [1.5, -0.1])
def test_alpha_out_of_range_is_refused(alpha: float) -> None:
    with pytest.raises(SpecError, match=r"alpha = .*weight on the true labels"):
        check_alpha(alpha)


def test_negative_alpha_is_refused_with_its_reason() -> None:
    with pytest.raises(SpecError, match=r"alpha = -0\.5: .*only for the linear regression task"):
        check_alpha(-0.5)


def test_non_positive_temperature_is_refused() -> None:
    s, t, y = _batch()
    with pytest.raises(SpecError, match="temperature = 0"):
        kd_loss(s, t, y, alpha=0.5, temperature=0)
