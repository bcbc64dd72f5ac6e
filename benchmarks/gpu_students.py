"""Students on one GPU: throughput of one student, the cache's speedup there, and how many students share a GPU.

Only the core runs here (no Ray, no Optuna, no W&B), so this script also runs on a GPU machine that has torch
alone. Random MNIST-shaped data, the reference teacher and student, KD loss, Adam, batch 64, as in a trial.

1. One process, side by side in interleaved blocks (medians): kdtune's ``Trainer`` with cached teacher logits,
   a bare loop on device tensors (the practical limit), and the tutorial step that runs the teacher inline.
2. K processes at once (K = 1, 2, 4, ...), each training its own student on the same GPU for a fixed time after
   a common start: the GPU's total samples/s for each K. A trial's ``resources.gpu`` fraction should be about
   1 / (the smallest K that reaches 90% of the best total).

    python benchmarks/gpu_students.py                 # about 3 minutes on one GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8192, help="training samples per epoch")
    parser.add_argument("--blocks", type=int, default=5, help="interleaved blocks of part 1")
    parser.add_argument("--processes", default="1,2,4,8,16", help="K values of part 2, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per K in part 2")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        parser.error("no CUDA device: this benchmark measures a GPU")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rates = _one_process(args.samples, args.blocks)
    for name, value in rates.items():
        print(f"{name}: {value:,.0f} samples/s (median of {args.blocks})")
    print(f"cache speedup on the GPU (cached / teacher inline): {rates['cached'] / rates['teacher inline']:.1f}x")
    print(f"kdtune Trainer / bare loop throughput: {rates['cached'] / rates['bare loop']:.2f}")

    totals = {k: _k_processes(k, args.samples, args.seconds) for k in (int(v) for v in args.processes.split(","))}
    best = max(totals.values())
    for k, total in totals.items():
        print(f"{k:>3} students at once: {total:,.0f} samples/s in total, {total / k:,.0f} per student")
    enough = min(k for k, total in totals.items() if total >= 0.9 * best)
    print(f"samples/s per GPU: {best:,.0f}; students per GPU (90% of the best total): {enough}")


def _one_process(samples: int, blocks: int) -> dict[str, float]:
    import torch
    from random_student import random_trainer

    from kdtune.core.distill import kd_loss
    from kdtune.tasks.image.models import build_model

    trainer = random_trainer(samples, "cuda")
    x, y, device_logits = trainer.train_split.x, trainer.train_split.y, trainer.teacher.train
    teacher = build_model("reference_teacher", input_shape=(1, 28, 28), num_classes=10, seed=0).cuda().eval()
    model = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10, seed=0).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loop(inline: bool) -> None:
        order = torch.randperm(samples, device="cuda")
        for start in range(0, samples, 64):
            idx = order[start:start + 64]
            if inline:
                with torch.no_grad():
                    t = teacher(x[idx])  # the teacher runs at every step
            else:
                t = device_logits[idx]
            loss = kd_loss(model(x[idx]), t, y[idx], alpha=0.1, temperature=10.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    variants = {"cached": trainer._train_epoch, "bare loop": lambda: loop(False),  # noqa: SLF001 - training only
                "teacher inline": lambda: loop(True)}
    for fn in variants.values():
        fn()  # warm-up: cuDNN autotuning, allocator
    torch.cuda.synchronize()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for block in range(blocks):
        names = list(variants) if block % 2 == 0 else list(reversed(variants))
        for name in names:
            start = time.perf_counter()
            variants[name]()
            torch.cuda.synchronize()
            rates[name].append(samples / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def _k_processes(k: int, samples: int, seconds: float) -> float:
    """Total samples/s of ``k`` student processes training at once on GPU 0."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k + 1), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(samples, seconds, barrier, results)) for _ in range(k)]
    for w in workers:
        w.start()
    barrier.wait()  # every worker has warmed up
    total = sum(results.get() for _ in workers)
    for w in workers:
        w.join()
    return total


def _worker(samples: int, seconds: float, barrier: Any, results: Any) -> None:
    import torch
    from random_student import random_trainer

    trainer = random_trainer(samples, "cuda")
    trainer._train_epoch()  # noqa: SLF001 - warm-up
    torch.cuda.synchronize()
    barrier.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer._train_epoch()  # noqa: SLF001
        done += samples
    torch.cuda.synchronize()
    results.put(done / (time.perf_counter() - start))


if __name__ == "__main__":
    main()
