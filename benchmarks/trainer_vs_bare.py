"""kdtune's training loop against a bare PyTorch loop on pre-loaded tensors: what kdtune's loop costs.

Both train the reference student (Conv 16 -> Conv 32 -> Dense) on MNIST-shaped data with cached teacher
logits, KD loss, Adam, batch 64, channels_last, one torch thread. The bare loop is the practical limit on
this machine: slicing tensors with a per-epoch permutation, nothing else. kdtune's ``Trainer`` adds its
bookkeeping (loss accumulated on the device, generator-driven batch order). Evaluation is excluded from both
(the bare loop has none). Interleaved blocks, alternating order, medians; the last line is the ratio.

    python benchmarks/trainer_vs_bare.py            # about 1 minute
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from random_student import random_trainer

    from kdtune.core.distill import kd_loss
    from kdtune.tasks.image.models import build_model

    n = args.samples
    trainer = random_trainer(n, "cpu")
    x_cl, y, logits = trainer.train_split.x, trainer.train_split.y, trainer.teacher.train  # x in channels_last

    model = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def bare_epoch() -> None:
        order = torch.randperm(n)
        for start in range(0, n, 64):
            idx = order[start:start + 64]
            loss = kd_loss(model(x_cl[idx]), logits[idx], y[idx], alpha=0.1, temperature=10.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    variants = {"kdtune Trainer": trainer._train_epoch, "bare loop": bare_epoch}  # noqa: SLF001 - training only
    for fn in variants.values():
        fn()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for block in range(args.blocks):
        names = list(variants) if block % 2 == 0 else list(reversed(variants))
        for name in names:
            start = time.perf_counter()
            variants[name]()
            rates[name].append(n / (time.perf_counter() - start))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, value in medians.items():
        print(f"{name}: {value:,.0f} samples/s (median of {args.blocks})")
    print(f"kdtune Trainer / bare loop throughput: {medians['kdtune Trainer'] / medians['bare loop']:.2f}")


if __name__ == "__main__":
    main()
