"""Student training throughput with cached teacher logits vs the teacher run inline at every step.

Why the teacher-logit cache exists: a student step that reads its teacher's logits from memory (what
``LogitCache.prepare`` hands to the trainer) is far cheaper than one that runs the teacher forward pass
as well, because the reference teacher costs ~75x a student training step (``docs/architecture.md``, Performance).

Both variants run the same student step as ``kdtune.core.train.Trainer`` (index a batch, forward, ``kd_loss``,
backward, Adam) with the reference teacher and student in channels_last, one torch thread, in one process.
The inline variant adds the teacher forward under ``no_grad`` in eval mode. Blocks of each variant are
interleaved (the order alternating) and the medians of their samples/s are compared, so that drift in
machine load hits both alike. The last line printed is the ratio.

usage:
  python benchmarks/cache_speedup.py                       # random MNIST-shaped data (~1 minute)
  python benchmarks/cache_speedup.py --data-root ROOT      # real MNIST from ROOT/MNIST/raw/*.gz
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one thread per trial process

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from kdtune.core.distill import kd_loss  # noqa: E402
from kdtune.core.train import predict  # noqa: E402
from kdtune.tasks.image.models import build_model  # noqa: E402


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    x, y = _data(args.data_root, args.samples)
    teacher = build_model("reference_teacher", input_shape=(1, 28, 28), num_classes=10, seed=0).eval()
    start = time.perf_counter()
    cached_logits = predict(teacher, x)  # what the cache holds: one teacher pass over the data
    build = time.perf_counter() - start
    print(f"{len(x)} samples, batch {args.batch_size}, 1 thread, channels_last; "
          f"teacher pass to fill the cache: {len(x) / build:.0f} samples/s")

    variants = {"cached": _Run(x, y, args.batch_size, lambda idx, xb: cached_logits[idx]),
                "inline": _Run(x, y, args.batch_size, lambda idx, xb: _teacher_forward(teacher, xb))}
    for run in variants.values():
        run.block(steps=3)  # warm-up: allocator, kernels, Adam state
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(args.repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            rates[name].append(variants[name].block(seconds=args.seconds))
        print(f"repeat {rep + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f} samples/s" for n in variants))
    cached, inline = statistics.median(rates["cached"]), statistics.median(rates["inline"])
    print(f"cache speedup: {cached / inline:.1f}x (cached {cached:.0f} samples/s, inline {inline:.0f} samples/s)")


class _Run:
    """One student, stepping through the data in per-epoch random order like ``Trainer._train_epoch``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 teacher_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.x, self.y, self.batch_size, self.teacher_logits = x, y, batch_size, teacher_logits
        self.student = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10, seed=1)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(0)
        self.order, self.position = torch.randperm(len(y), generator=self.generator), 0

    def block(self, *, steps: int | None = None, seconds: float | None = None) -> float:
        """Run ``steps`` steps, or steps for about ``seconds``; return samples per second."""
        done, start = 0, time.perf_counter()
        while (steps is not None and done < steps * self.batch_size) or (
                seconds is not None and time.perf_counter() - start < seconds):
            done += self._step()
        return done / (time.perf_counter() - start)

    def _step(self) -> int:
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.y), generator=self.generator), 0
        idx = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        xb = self.x[idx]  # (B, 1, 28, 28), channels_last
        loss = kd_loss(self.student(xb), self.teacher_logits(idx, xb), self.y[idx], alpha=0.1, temperature=10.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return len(idx)


@torch.no_grad()
def _teacher_forward(teacher: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    return teacher(xb)


def _data(data_root: str | None, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST training images when a root is given, else uniform random pixels of the same shape."""
    if data_root:
        from kdtune.tasks.datasets import load_dataset

        train = load_dataset("mnist", data_root=data_root, train_size=samples + max(1, samples // 9)).train
        x, y = train.x[:samples], train.y[:samples]
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(samples, 1, 28, 28, generator=g), torch.randint(0, 10, (samples,), generator=g)
    return x.contiguous(memory_format=torch.channels_last), y


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw/*.gz (default: random data)")
    parser.add_argument("--samples", type=int, default=2048, help="training samples (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved blocks per variant (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one block (default: %(default)s)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
