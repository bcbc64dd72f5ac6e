"""Token-level distillation losses for causal LMs, from dense, top-k or sampled teacher targets.

Per position (kdtune's convention: **alpha is the weight on the true labels; alpha = 1 means no distillation**)::

    alpha * CE(next token, s) + (1 - alpha) * T^2 * D(teacher || student),

with both distributions at temperature T (softmax(logits / T)), padding masked out and the mean taken over real
tokens. D is one of (:data:`DIVERGENCES`):

* ``forward_kl`` (default): KL(p_T || q_T), teacher p, student q: mass-covering, Hinton et al. 2015;
* ``reverse_kl``: KL(q_T || p_T): mode-seeking (MiniLLM, Gu et al. 2024);
* ``jsd``: the generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024, eq. 1) exactly as Hugging Face
  TRL's ``GKDTrainer.generalized_jsd_loss`` computes it (trl/trainer/gkd_trainer.py): with the mixture
  m = beta p + (1 - beta) q, ``beta KL(p || m) + (1 - beta) KL(q || m)``. TRL's convention at the ends, kept
  here: **beta = 0 is forward KL(p || q) and beta = 1 is reverse KL(q || p)** (the formula itself tends to 0 at
  both ends; TRL special-cases them, so the loss jumps there). TRL applies no T^2; kdtune's formula does.

Teacher targets come in three forms:

* dense logits (B, L, V);
* :class:`TopK`: per position the k largest raw logits (before any temperature), their ids, and the log-sum-exp
  and mean of the other n = V - k logits, as :func:`kdtune.tasks.image.views.sparsify` stores image rows. The tail
  is rebuilt as :func:`~kdtune.tasks.image.views.densify` rebuilds it (each tail id gets the logit
  mean + (lse - log n - mean) / T: exact tail mass at T = 1), but never as a (B, L, V) teacher tensor: the loss
  gathers the student's log-probs at the k ids and adds the tail's contribution in closed form (forward and
  reverse KL) or as a sum over the student's own (B, L, V) log-probs (JSD). It equals the dense loss on
  ``densify``'s logits, and the exact dense loss when k = V;
* :class:`Sampled`: N ids per position drawn with replacement from the teacher's distribution at T = 1, with the
  teacher's raw logits at those ids and its full log-sum-exp ("Random Sampling KD", Anshumann et al., ACL 2025,
  "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs", with the proposal q = p, where every
  importance weight is 1/N). kdtune's estimator of forward KL is (1/N) sum_n (log p(x_n) - log q(x_n)), x_n ~ p:
  unbiased for KL(p || q) and, since log p does not depend on the student, its gradient is unbiased for the
  gradient of KL(p || q) (the paper's property). It holds only at the temperature the draws were made at (T = 1)
  and only for forward KL (reverse KL and JSD are not linear in p), so other settings are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdtune.core.distill import check_alpha
from kdtune.errors import SpecError


DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
DEFAULT_DIVERGENCE = "forward_kl"


@dataclass(frozen=True)
class TopK:
    """Top-k teacher targets: ``ids`` (B, L, k) int, raw ``logits`` (B, L, k) float32, the other logits'
    ``tail_lse`` and ``tail_mean`` (B, L) (-inf and 0 when k = V), over a vocabulary of ``vocab_size``."""

    ids: torch.Tensor
    logits: torch.Tensor
    tail_lse: torch.Tensor
    tail_mean: torch.Tensor
    vocab_size: int


@dataclass(frozen=True)
class Sampled:
    """Sampled teacher targets: ``ids`` (B, L, N) drawn from softmax(teacher logits) with replacement, the raw
    teacher ``logits`` at them (B, L, N), and the teacher's full log-sum-exp ``lse`` (B, L)."""

    ids: torch.Tensor
    logits: torch.Tensor
    lse: torch.Tensor


Targets = torch.Tensor | TopK | Sampled


def check_divergence(divergence: str, beta: float, *, field: str = "search.divergence") -> None:
    """Refuse an unknown divergence or a JSD beta outside [0, 1] (one line)."""
    if divergence not in DIVERGENCES:
        raise SpecError(field, divergence, f"unknown divergence; allowed: {', '.join(DIVERGENCES)}")
    if not 0 <= beta <= 1:
        raise SpecError("search.beta", beta, "must be in [0, 1] (GKD's JSD interpolation; 0 = forward KL, 1 = reverse KL)")


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for bf16/fp16/fp32 tensors; float64 stays float64 (tests check identities to 1e-10)."""
    return x if x.dtype == torch.float64 else x.float()


def _pointwise(lt: torch.Tensor, ls: torch.Tensor, divergence: str, beta: float) -> torch.Tensor:
    """Each vocabulary entry's term of D, from teacher and student log-probs (summed over the vocabulary, D)."""
    if divergence == "jsd" and beta == 0:
        divergence = "forward_kl"
    elif divergence == "jsd" and beta == 1:
        divergence = "reverse_kl"
    if divergence == "forward_kl":
        return lt.exp() * (lt - ls)
    if divergence == "reverse_kl":
        return ls.exp() * (ls - lt)
    mix = torch.logaddexp(lt + math.log(beta), ls + math.log(1 - beta))
    return beta * lt.exp() * (lt - mix) + (1 - beta) * ls.exp() * (ls - mix)


def _tail_total(fill: torch.Tensor, ls: torch.Tensor, divergence: str, beta: float) -> torch.Tensor:
    """sum over the whole vocabulary of ``_pointwise(fill, ls)`` with one teacher log-prob ``fill`` (B, L) per
    position: closed forms for the KLs (no (B, L, V) intermediate), the elementwise sum for the JSD."""
    if divergence == "forward_kl" or (divergence == "jsd" and beta == 0):
        return fill.exp() * (ls.shape[-1] * fill - ls.sum(-1))
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1):
        return (ls.exp() * ls).sum(-1) - fill  # sum q = 1
    return _pointwise(fill.unsqueeze(-1), ls, divergence, beta).sum(-1)


def divergence_per_token(student_logits: torch.Tensor, teacher: Targets, *, temperature: float = 1.0,
                         divergence: str = DEFAULT_DIVERGENCE, beta: float = 0.5) -> torch.Tensor:
    """D(teacher_T || student_T) at every position (B, L), in float32, without the T^2 factor."""
    check_divergence(divergence, beta)
    if temperature <= 0:
        raise SpecError("temperature", temperature, "must be > 0")
    ls = F.log_softmax(_wide(student_logits) / temperature, dim=-1)
    if isinstance(teacher, Sampled):
        if divergence != "forward_kl" or temperature != 1:
            raise SpecError("cache.sampled", True, f"supports forward_kl at temperature 1 only (its draws are unbiased "
                            f"for the teacher at T = 1); got {divergence} at T = {temperature}")
        lt = _wide(teacher.logits) - _wide(teacher.lse).unsqueeze(-1)
        return (lt - ls.gather(-1, teacher.ids.long())).mean(-1)
    if isinstance(teacher, torch.Tensor):
        lt = F.log_softmax(_wide(teacher.detach()) / temperature, dim=-1)
        return _pointwise(lt, ls, divergence, beta).sum(-1)
    vocab, k = teacher.vocab_size, teacher.ids.shape[-1]
    top = _wide(teacher.logits) / temperature
    rest = vocab - k
    if rest:
        mean = _wide(teacher.tail_mean)
        fill = (mean + (_wide(teacher.tail_lse) - math.log(rest) - mean) / temperature) / temperature
        lse = torch.logaddexp(torch.logsumexp(top, -1), math.log(rest) + fill)
    else:
        lse = torch.logsumexp(top, -1)
    ls_top = ls.gather(-1, teacher.ids.long())
    total = _pointwise(top - lse.unsqueeze(-1), ls_top, divergence, beta).sum(-1)
    if rest:
        fill_lp = fill - lse
        total = total + _tail_total(fill_lp, ls, divergence, beta) \
            - _pointwise(fill_lp.unsqueeze(-1), ls_top, divergence, beta).sum(-1)
    return total


def lm_kd_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher: Targets | None, *, alpha: float,
               temperature: float = 1.0, divergence: str = DEFAULT_DIVERGENCE, beta: float = 0.5,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean over real tokens of alpha * CE + (1 - alpha) * T^2 * D (module docstring).

    Args:
        student_logits: (B, L, V) next-token logits.
        targets: (B, L) int64 next-token ids.
        teacher: dense (B, L, V) logits, :class:`TopK` or :class:`Sampled`; ``None`` only with alpha = 1 (no
            distillation: the teacher is not read).
        alpha: weight on the true next tokens, in [0, 1]; 1 = no distillation.
        mask: (B, L) bool, True at real tokens; padding positions contribute nothing (their teacher values are
            never used). ``None``: every position is real.
    """
    check_alpha(alpha)
    ce = F.cross_entropy(_wide(student_logits).flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
    per_token = alpha * ce
    if alpha < 1:
        if teacher is None:
            raise SpecError("alpha", alpha, "needs teacher targets below 1 (alpha = 1 is no distillation)")
        kd = divergence_per_token(student_logits, teacher, temperature=temperature, divergence=divergence, beta=beta)
        per_token = per_token + (1 - alpha) * temperature**2 * kd
    if mask is None:
        return per_token.mean()
    return torch.where(mask, per_token, torch.zeros_like(per_token)).sum() / mask.sum().clamp(min=1)


def truncate_topk(teacher: TopK, k: int) -> TopK:
    """The top-``k`` targets inside a cache of a larger k: the dropped logits join the tail (its log-sum-exp and
    mean updated exactly), so one cache of k_max serves every k <= k_max (ids are stored largest first)."""
    stored = teacher.ids.shape[-1]
    if not 1 <= k <= stored:
        raise SpecError("cache.top_k", k, f"must be in [1, {stored}] (the k the cache was built with)")
    if k == stored:
        return teacher
    dropped = _wide(teacher.logits[..., k:])
    rest = teacher.vocab_size - stored
    lse = torch.logaddexp(_wide(teacher.tail_lse), torch.logsumexp(dropped, -1))
    mean = (rest * _wide(teacher.tail_mean) + dropped.sum(-1)) / (rest + stored - k)
    return TopK(teacher.ids[..., :k], teacher.logits[..., :k], lse, mean, teacher.vocab_size)
