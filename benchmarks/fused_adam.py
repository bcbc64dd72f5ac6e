"""Fused Adam (kdtune's optimizer) against torch's default Adam, in kdtune's ``Trainer``, side by side.

One torch thread, as in a study trial. For each model, two Trainers of the same seed train an epoch in turn
(interleaved blocks, alternating which goes first); the only difference is the optimizer's implementation,
``fused=True`` (one kernel over all parameters) or torch's default (a loop over parameters). Evaluation is not
timed. The cases: the quickstart's student on digits (batch 32), and with ``--data-root`` the reference and
Hinton students on 3,000 MNIST images (batch 64 and 100). The last line per case is the ratio of medians.

    python benchmarks/fused_adam.py [--data-root DIR]      # about 1 minute; DIR/MNIST/raw/*.gz
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("KDTUNE_DATA_ROOT"),
                        help="folder with MNIST/raw/*.gz (default: $KDTUNE_DATA_ROOT; without it, digits only)")
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()

    import torch

    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.tasks.datasets import load_dataset
    from kdtune.tasks.image.models import build_model

    torch.set_num_threads(1)
    cases = [("digits", "reference_student", 32)]
    if args.data_root:
        cases += [("mnist", "reference_student", 64), ("mnist", "hinton_student", 100)]
    for dataset, arch, batch_size in cases:
        data = load_dataset(dataset, data_root=args.data_root, train_size=None if dataset == "digits" else 3000,
                            val_fraction=0.1, seed=0)
        config = TrainConfig(epochs=100, lr=1e-3, batch_size=batch_size, seed=0)
        trainers = {}
        for name in ("fused", "default"):
            model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
            trainer = Trainer(model, data, config)
            if name == "default":
                trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=config.lr, fused=False)
            assert name != "fused" or trainer.optimizer.defaults["fused"]
            trainer._train_epoch()  # noqa: SLF001 - warm-up; training only, evaluation is not timed
            trainers[name] = trainer
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for block in range(args.blocks):
            for name in (list(trainers) if block % 2 == 0 else list(reversed(trainers))):
                start = time.perf_counter()
                trainers[name]._train_epoch()  # noqa: SLF001
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, median in medians.items():
            print(f"{dataset} {arch} batch {batch_size}, {name} Adam: {1e3 * median:.0f} ms per epoch "
                  f"({len(data.train)} images)")
        print(f"{dataset} {arch}: fused / default = {medians['fused'] / medians['default']:.2f}")


if __name__ == "__main__":
    main()
