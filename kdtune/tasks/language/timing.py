"""What one training step and one evaluated block cost on this machine, for ``kdtune plan``'s estimate.

A model is built as the spec says and trained for :data:`TIMED_STEPS` steps on random token blocks of the spec's
shape, after :data:`WARMUP_STEPS` untimed ones, with dense random teacher logits when it distils (the byte
vocabulary's dense targets are what the shipped spec reads; top-k reads cost less). Nothing is written.
"""

from __future__ import annotations

import time
from typing import Any


WARMUP_STEPS = 2
TIMED_STEPS = 5


def step_seconds(arch: str, kwargs: dict[str, Any], vocab_size: int, context: int, batch_size: int, *,
                 threads: int, distil: bool) -> tuple[float, float]:
    """(seconds per training step of ``batch_size`` blocks, seconds per evaluated block) on ``threads`` threads."""
    import torch

    from kdtune.tasks.language.loss import lm_kd_loss
    from kdtune.tasks.language.models import build_lm

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        model = build_lm(arch, kwargs, vocab_size=vocab_size, context=context, seed=0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        block = torch.randint(0, vocab_size, (batch_size, context + 1), generator=generator)
        teacher = torch.randn(batch_size, context, vocab_size, generator=generator) if distil else None

        def step() -> None:
            loss = lm_kd_loss(model(block[:, :-1]), block[:, 1:], teacher, alpha=0.5 if distil else 1.0,
                              temperature=2.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(WARMUP_STEPS):
            step()
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            step()
        train_s = (time.perf_counter() - start) / TIMED_STEPS
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(TIMED_STEPS):
                model(block[:, :-1])
        eval_s = (time.perf_counter() - start) / TIMED_STEPS / batch_size
    finally:
        torch.set_num_threads(before)
    return train_s, eval_s
