"""The knowledge-distillation losses.

kdtune's convention everywhere: **alpha is the weight on the true labels; alpha = 1 means no distillation.**
Hinton et al. (2015, "Distilling the Knowledge in a Neural Network") write the same loss with
lambda = 1 - alpha on the soft targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdtune.core.limits import MIN_TEMPERATURE
from kdtune.core.limits import TOO_COLD
from kdtune.errors import SpecError


def check_alpha(alpha: float, *, field: str = "alpha") -> None:
    """Refuse an alpha outside [0, 1] for classification.

    alpha < 0 would put a weight above 1 on the teacher (Das & Sanghavi 2023 find it useful under heavy label
    noise, for squared loss). With cross-entropy the mixed target alpha*y + (1 - alpha)*softmax(t/T) then has a
    negative entry and the loss is unbounded below, so only the linear (MSE) task allows it
    (``allow_negative_alpha`` in a spec).
    """
    if not 0 <= alpha <= 1:
        raise SpecError(field, alpha, "must be in [0, 1]; alpha is the weight on the true labels, 1 = no distillation "
                        "(alpha < 0 is only for the linear regression task)")



def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Response-based KD loss for classification, averaged over the batch::

        alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

    with s the student logits, t the teacher logits and T the temperature. The T^2 factor keeps the gradient
    of the soft term roughly independent of T (Hinton et al. 2015, section 2). The KL divergence is computed
    from two log-softmaxes, never from probabilities, so it stays finite and >= 0 for any logits. One formula
    for every alpha: no special case at 0 or 1 (at alpha = 1 the soft term is multiplied by zero).

    Args:
        student_logits: (B, K).
        teacher_logits: (B, K), treated as constants (no gradient flows into them).
        labels: (B,) int64 labels used for training (noisy where the data is).
        alpha: weight on the true labels; Hinton's lambda = 1 - alpha.
        temperature: T > 0.
    """
    if not temperature >= MIN_TEMPERATURE:
        raise SpecError("temperature", temperature, f"must be at least {MIN_TEMPERATURE} ({TOO_COLD})")
    hard = F.cross_entropy(student_logits, labels)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return alpha * hard + (1.0 - alpha) * temperature**2 * soft


def regression_kd_loss(
    prediction: torch.Tensor, target: torch.Tensor, teacher_prediction: torch.Tensor, *, alpha: float
) -> torch.Tensor:
    """KD for regression (the seed study's eqn 7.1), alpha on the labels here too::

        alpha * MSE(s, y) + (1 - alpha) * MSE(s, t)

    Its minimiser is the least-squares fit to the mixed target alpha * y + (1 - alpha) * t, which is what
    gives the linear case its closed-form optimal alpha.
    """
    hard = F.mse_loss(prediction, target)
    soft = F.mse_loss(prediction, teacher_prediction.detach())
    return alpha * hard + (1.0 - alpha) * soft
