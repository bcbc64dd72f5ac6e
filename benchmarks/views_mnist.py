"""What per-view cached teacher logits cost and save, against the teacher run inline and today's un-augmented cache.

One process, real MNIST (a subset), the reference teacher (trained with the same augmentation, through the real
cache) and the reference student, every student trained with reproducible views (shift 2, rotate 10 degrees; or with
``--augment crop-flip`` a random 28-pixel crop of the image padded by 2 and a horizontal flip, CIFAR's recipe; V views
per image, drawn by the student seed) by :class:`kdtune.core.train.Trainer`. Three ways to get the teacher's
logits for the student's batch:

* ``per-view cached``: :meth:`LogitCache.prepare_views` (V teacher passes over the training split, once);
* ``inline``: the teacher run on every rendered batch (:class:`kdtune.tasks.image.views.InlineTeacher`), the consistent
  teaching of Beyer et al. 2022, and the accuracy reference;
* ``un-augmented cached``: today's cache row of the un-augmented image, whatever view the student sees
  (inconsistent under augmentation).

Each seed trains the three students with the same seed (paired: same initial weights, batch order and views);
the variants' order rotates with the seed so that drift in machine load hits each alike. Reported: training
samples per second (each epoch's wall time less its evaluation, timed separately), test accuracy at the best
validation epoch with a 95% t-interval over seeds, and the paired difference to ``inline``. The last line is
the speed ratio and the accuracy difference of per-view cached against inline.

usage:
  python benchmarks/views_mnist.py --data-root ROOT                  # ROOT/MNIST/raw/*.gz; a few minutes
  python benchmarks/views_mnist.py --data-root ROOT --seeds 5 --epochs 5
  python benchmarks/views_mnist.py --data-root ROOT --augment crop-flip    # crop + flip views
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from machine import cpu_idle  # noqa: E402
from machine import load_average  # noqa: E402
from machine import with_interval  # noqa: E402

from kdtune.analysis.scoring import t_estimate  # noqa: E402
from kdtune.cache import LogitCache  # noqa: E402
from kdtune.cache.teacher import TeacherSpec  # noqa: E402
from kdtune.core.train import Augment  # noqa: E402
from kdtune.core.train import TrainConfig  # noqa: E402
from kdtune.core.train import Trainer  # noqa: E402
from kdtune.tasks.datasets import load_dataset  # noqa: E402
from kdtune.tasks.image.models import build_model  # noqa: E402
from kdtune.tasks.image.views import InlineTeacher  # noqa: E402
from kdtune.tasks.image.views import ViewSpec  # noqa: E402


#: The views' augmentation: MNIST's shifts and rotations, or CIFAR's padded crop and flip (28 pixels: MNIST's side).
AUGMENTS = {"shift-rotate": Augment(shift=2, rotate=10.0), "crop-flip": Augment(crop=28, padding=2, flip=True)}


class UnaugmentedLogits:
    """Today's cache under augmentation: the logits of the un-augmented image, whatever view is trained on."""

    def __init__(self, spec: ViewSpec, train_logits: torch.Tensor) -> None:
        self.spec = spec
        self.train_logits = train_logits

    def teacher_logits(self, index: torch.Tensor, view: torch.Tensor, batch: torch.Tensor, *,
                       temperature: float = 1.0) -> torch.Tensor:
        return self.train_logits[index]

    def to(self, device: torch.device) -> UnaugmentedLogits:
        return UnaugmentedLogits(self.spec, self.train_logits.to(device))


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    data = load_dataset("mnist", data_root=args.data_root, train_size=args.train_size, val_fraction=0.1, seed=0)
    augment = AUGMENTS[args.augment]
    spec = ViewSpec(augment, args.views, 0)
    cache = LogitCache(args.cache_dir or tempfile.mkdtemp(prefix="kdtune-views-"))
    start = time.perf_counter()
    prepared = cache.prepare(TeacherSpec(arch="reference_teacher", epochs=args.teacher_epochs, augment=augment),
                             data, threads=1)
    print(f"load {load_average()} (1, 5, 15 min); CPUs idle {cpu_idle(5.0):.0%} over 5 s; views: {augment.to_dict()}")
    print(f"MNIST {len(data.train)} training images; teacher test accuracy {prepared.diagnostics['test_accuracy']:.4f} "
          f"({'cached' if prepared.hit else f'{time.perf_counter() - start:.0f} s'})")
    start = time.perf_counter()
    views = cache.prepare_views(prepared, data, spec)
    build_s = time.perf_counter() - start
    print(f"per-view logits: {args.views} views, {args.views * len(data.train)} teacher forwards, "
          f"{build_s:.1f} s (once per teacher and dataset)")
    assert prepared.teacher is not None
    sources: dict[str, Any] = {"per-view cached": views, "inline": InlineTeacher(prepared.teacher.model, spec),
                               "un-augmented cached": UnaugmentedLogits(spec, prepared.logits.train)}
    names = list(sources)
    rates: dict[str, list[float]] = {n: [] for n in names}
    acc: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(args.seeds):
        order = names[seed % len(names):] + names[:seed % len(names)]
        for name in order:
            rate, accuracy = _train(data, prepared.logits, sources[name], seed, args)
            rates[name].append(rate)
            acc[name].append(accuracy)
        print(f"seed {seed}: " + ", ".join(f"{n} {acc[n][-1]:.4f} ({rates[n][-1]:.0f} samples/s)" for n in names))
    for name in names:
        r = t_estimate(rates[name])
        print(f"{name}: {with_interval(r, '{:.0f}')} samples/s; test accuracy {with_interval(t_estimate(acc[name]), '{:.4f}')}; "
              f"vs inline {with_interval(t_estimate([a - b for a, b in zip(acc[name], acc['inline'])]), '{:+.4f}')}")
    speed = t_estimate([a / b for a, b in zip(rates["per-view cached"], rates["inline"])])
    diff = t_estimate([a - b for a, b in zip(acc["per-view cached"], acc["inline"])])
    print(f"per-view cached vs inline: {with_interval(speed, '{:.1f}')}x the samples/s; test accuracy "
          f"{with_interval(diff, '{:+.4f}')} over {args.seeds} seeds ({args.augment} views; load {load_average()})")


def _train(data: Any, logits: Any, source: Any, seed: int, args: argparse.Namespace) -> tuple[float, float]:
    model = build_model("reference_student", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    config = TrainConfig(epochs=args.epochs, alpha=args.alpha, temperature=args.temperature, seed=seed)
    trainer = Trainer(model, data, config, teacher=logits, views=source, threads=1)
    train_s = 0.0
    best = None
    for _ in range(args.epochs):
        metrics = trainer.step()
        start = time.perf_counter()
        trainer.evaluate()  # the evaluation part of the epoch, timed on its own and taken off
        train_s += metrics.seconds - (time.perf_counter() - start)
        best = metrics if best is None or metrics.val_accuracy > best.val_accuracy else best
    assert best is not None
    return len(data.train) * args.epochs / train_s, best.test_accuracy


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw/*.gz (default: $KDTUNE_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None, help="teacher-logit cache (default: a fresh temporary folder)")
    parser.add_argument("--train-size", type=int, default=10000, help="MNIST images, validation included")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--augment", choices=sorted(AUGMENTS), default="shift-rotate", help="the views (and teacher's)")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.1, help="weight on the true labels (1 = no distillation)")
    parser.add_argument("--temperature", type=float, default=4.0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
