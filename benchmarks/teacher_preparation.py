"""kdtune's teacher preparation against a plain script's teacher training and evaluation, same recipe, one run.

Both sides train the reference teacher (Conv 256 -> Conv 512 -> Dense) with the same recipe (Adam, lr 1e-3,
batch 64, ``--epochs``) on the same MNIST images with 5% of the training labels flipped, on every core of the
machine, as a study of one condition does:

* kdtune: what a study's preparation task does for a condition, from an empty cache: load the data, train the
  teacher (pre-loaded tensors, channels_last, the validation split evaluated each epoch and the selected epoch's
  test and flipped-label metrics once), then the cache entry: its logits on every split, its diagnostics, the
  Parquet files and the checkpoint.
* plain: a tutorial's script: a torchvision ``Dataset`` (PIL -> ``ToTensor`` -> ``Normalize``) through a
  ``DataLoader``, the model in PyTorch's default NCHW layout, then the test accuracy of the last epoch.

The sides alternate (``--repeats`` times each, the first side swapped every round) and the medians are compared.
The last line is the result; the target is a ratio (kdtune / plain) of at most 1.

    python benchmarks/teacher_preparation.py --data-root DIR --train-size 10000   # DIR/MNIST/raw/*.gz
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import load_average


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("KDTUNE_DATA_ROOT"),
                        help="folder with MNIST/raw/*.gz (default: $KDTUNE_DATA_ROOT)")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("--data-root is required (a folder with MNIST/raw/*.gz)")

    import torch
    from study_throughput import _writable_copy

    work = Path(tempfile.mkdtemp(prefix="kdtune-teacher-bench-"))
    root = _writable_copy(Path(args.data_root), work / "data")
    cores = len(os.sched_getaffinity(0))
    sides = {"kdtune": lambda i: _kdtune(root, args, work / f"cache-{i}", cores), "plain": lambda i: _plain(root, args)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    print(f"load before: {load_average()}, {cores} cores; reference teacher, {args.epochs} epochs, {args.train_size} MNIST "
          f"images, torch {torch.__version__}", flush=True)
    for i in range(args.repeats):
        for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
            seconds, accuracy = sides[name](i)
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s (test accuracy {accuracy:.4f})", flush=True)
    k, p = statistics.median(times["kdtune"]), statistics.median(times["plain"])
    print(f"load after: {load_average()}")
    print(f"teacher preparation: kdtune {k:.1f} s, plain training + evaluation {p:.1f} s, ratio {k / p:.2f} "
          "(target <= 1)")


def _kdtune(root: Path, args: argparse.Namespace, cache: Path, cores: int) -> tuple[float, float]:
    """A study's preparation task for one condition (``kdtune.study.preparation.prepare_condition``), from an empty cache."""
    import torch
    from kdtune.plan import expand

    from kdtune.cache import LogitCache
    from kdtune.spec.schema import parse_spec

    spec = parse_spec({"name": "teacher-bench", "tracking": "none",
                       "dataset": {"name": "mnist", "train_size": args.train_size, "data_root": str(root)},
                       "teacher": {"arch": "reference_teacher", "epochs": args.epochs},
                       "conditions": {"noise_level": [0.05]}})
    (condition,) = expand(spec)
    start = time.perf_counter()
    torch.set_num_threads(cores)  # one condition: every core (what teacher_threads gives it)
    data = condition.load_data(spec)
    prepared = LogitCache(cache).prepare(condition.teacher_spec(spec), data, threads=None)
    seconds = time.perf_counter() - start
    assert prepared.trained
    return seconds, prepared.diagnostics["test_accuracy"]


def _plain(root: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Teacher training and evaluation the way the tutorials write it: (seconds, test accuracy)."""
    seconds, accuracy, _ = plain_teacher(root, train_size=args.train_size, epochs=args.epochs)
    return seconds, accuracy


def plain_teacher(root: Path, *, train_size: int, epochs: int) -> tuple[float, float, Any]:
    """Teacher training and evaluation the way the tutorials write it: (seconds, test accuracy, model)."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from kdtune.tasks.image.models import build_model

    start = time.perf_counter()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # torch's default: every core
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.0,), (1.0,))])
    full = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=transform)
    train = torch.utils.data.Subset(full, range(train_size))
    test = torchvision.datasets.MNIST(str(root), train=False, download=False, transform=transform)
    torch.manual_seed(0)
    model = build_model("reference_teacher", input_shape=(1, 28, 28), num_classes=10)
    model.to(memory_format=torch.contiguous_format)  # PyTorch's default layout (build_model gives channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    flip = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(train, batch_size=64, shuffle=True):
            noisy = torch.where(torch.rand(len(y), generator=flip) < 0.05,
                                torch.randint(0, 10, (len(y),), generator=flip), y)  # ~5% noise (cost only)
            loss = F.cross_entropy(model(x), noisy)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=1000):
            correct += int((model(x).argmax(1) == y).sum())
    return time.perf_counter() - start, correct / len(test), model




if __name__ == "__main__":
    main()
