"""How far top-k per-view teacher logits move the KD loss and the student's accuracy from the dense cache.

A 100-class synthetic image task (each class a random pattern of Gaussian blobs on 16x16 pixels; samples are
shifted by up to 2 pixels, scaled and noised), an MLP teacher, per-view logits through the real cache
(``LogitCache.prepare_views``) dense and with ``top_k`` = each of ``--k``. Two measurements:

1. the soft term of the KD loss, T^2 x KL(softmax(t / T) || softmax(s / T)), over every view of every training
   image, with the teacher's rows dense and rebuilt from top-k (:func:`kdtune.tasks.image.views.densify`), for a student
   trained for a few epochs (the loss it would see mid-training); reported as the relative difference of the
   mean, and the mean L1 distance between the dense and the rebuilt softmax(t / T) (the student's gradient on
   its logits is T (softmax(s / T) - softmax(t / T)), so this is how far the gradient's target moves);
2. students trained with the dense and the top-k views (same seeds: paired), test accuracy and the paired
   difference with a 95% t-interval over seeds.

The last line is the largest relative KD-loss difference at the largest k and the accuracy difference there.

usage:
  python benchmarks/views_topk.py                     # about 3 minutes on 2 busy cores
  python benchmarks/views_topk.py --seeds 5 --epochs 15
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kdtune.analysis.scoring import t_estimate  # noqa: E402
from kdtune.cache import LogitCache  # noqa: E402
from kdtune.cache.teacher import TeacherSpec  # noqa: E402
from kdtune.core.train import Augment  # noqa: E402
from kdtune.core.train import TrainConfig  # noqa: E402
from kdtune.core.train import train_student  # noqa: E402
from kdtune.tasks.datasets import load_dataset  # noqa: E402
from kdtune.tasks.image.models import build_model  # noqa: E402
from kdtune.tasks.image.views import ViewSpec  # noqa: E402
from kdtune.tasks.image.views import densify  # noqa: E402
from kdtune.tasks.image.views import render  # noqa: E402


def synthetic_images(path: Path, classes: int, per_class: int, test_per_class: int, seed: int = 0) -> None:
    """An .npz of 16x16 images: class c is a fixed pattern of 4 Gaussian blobs; each sample shifts it by up to
    2 pixels, scales it in [0.7, 1.3] and adds noise (sd 0.15). Enough structure for augmentation to matter and
    for a teacher's soft targets to carry more than the label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    centres = rng.uniform(3, 13, size=(classes, 4, 2))
    prototypes = np.zeros((classes, 16, 16))
    for c in range(classes):
        for cy, cx in centres[c]:
            prototypes[c] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
    prototypes /= prototypes.max(axis=(1, 2), keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(classes), n)
        x = np.empty((len(y), 1, 16, 16), dtype=np.float32)
        for i, c in enumerate(y):
            img = np.roll(prototypes[c], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
            x[i, 0] = img * rng.uniform(0.7, 1.3) + rng.normal(0, 0.15, size=(16, 16))
        return x, y

    x, y = draw(per_class)
    x_test, y_test = draw(test_per_class)
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)


def soft_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(t / T) || softmax(s / T)) per row, as :func:`kdtune.core.distill.kd_loss` computes it."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    return temperature**2 * (log_t.exp() * (log_t - log_s)).sum(1)


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="kdtune-topk-"))
    synthetic_images(folder / "c100.npz", args.classes, args.per_class, args.test_per_class)
    data = load_dataset("c100", files=[str(folder / "c100.npz")], val_fraction=0.1, seed=0)
    print(f"{args.classes} classes, {len(data.train)} training images, {args.views} views, k in {args.k}")
    cache = LogitCache(folder / "cache")
    augment = Augment(shift=2, rotate=10)
    spec = ViewSpec(augment, args.views, 0)
    start = time.perf_counter()
    prepared = cache.prepare(TeacherSpec(arch="mlp", epochs=args.teacher_epochs, kwargs={"widths": [512]},
                                         augment=augment), data, threads=1)
    print(f"teacher: test accuracy {prepared.diagnostics['test_accuracy']:.3f} ({time.perf_counter() - start:.0f} s)")
    dense = cache.prepare_views(prepared, data, spec)
    sparse = {k: cache.prepare_views(prepared, data, spec, top_k=k) for k in args.k}

    # 1. the KD soft term for a student trained a few epochs, over every (image, view)
    student = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes,
                          kwargs={"widths": [args.student_width]}, seed=0)
    train_student(student, data, TrainConfig(epochs=2, alpha=0.5, temperature=4.0, seed=0), teacher=prepared.logits,
                  views=dense)
    rows = torch.arange(len(data.train) * args.views)
    with torch.no_grad():
        student.eval()
        s_logits = torch.cat([student(render(data.train.x, spec, r // args.views, r % args.views))
                              for r in rows.split(1024)])
    assert dense.dense is not None
    worst = 0.0
    for k, views in sparse.items():
        assert views.values is not None and views.classes is not None
        assert views.rest is not None and views.rest_mean is not None
        for t in args.temperatures:
            rebuilt = densify(views.values, views.classes, views.rest, views.rest_mean, data.num_classes, t)
            exact, approx = soft_term(s_logits, dense.dense, t), soft_term(s_logits, rebuilt, t)
            rel = float((approx.mean() - exact.mean()).abs() / exact.mean())
            worst = max(worst, rel) if k == max(args.k) else worst
            l1 = (F.softmax(rebuilt / t, 1) - F.softmax(dense.dense / t, 1)).abs().sum(1).mean()
            print(f"k={k:3d} T={t:4g}: soft term dense {float(exact.mean()):.4f}, top-k {float(approx.mean()):.4f}, "
                  f"relative difference of the mean {100 * rel:.2f}%; L1 distance of the softened teacher "
                  f"distributions (what the student's gradient sees) {float(l1):.4f}")

    # 2. students trained on dense and top-k views, paired by seed
    k = max(args.k)
    acc: dict[str, list[float]] = {"dense": [], f"top-{k}": []}
    for seed in range(args.seeds):
        for name, views in (("dense", dense), (f"top-{k}", sparse[k])):
            model = build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes,
                                kwargs={"widths": [args.student_width]}, seed=seed)
            config = TrainConfig(epochs=args.epochs, alpha=args.alpha, temperature=args.temperature, seed=seed)
            history = train_student(model, data, config, teacher=prepared.logits, views=views)
            acc[name].append(history.best.test_accuracy)
        print(f"seed {seed}: dense {acc['dense'][-1]:.4f}, top-{k} {acc[f'top-{k}'][-1]:.4f}")
    diff = t_estimate([a - b for a, b in zip(acc[f"top-{k}"], acc["dense"])])
    for name, values in acc.items():
        est = t_estimate(values)
        print(f"{name}: test accuracy {_interval(est)}")
    print(f"top-{k} vs dense at T={args.temperature:g}: KD soft term within {100 * worst:.2f}% over T in "
          f"{args.temperatures}; test accuracy difference {_interval(diff, points=True)} over {args.seeds} seeds")


def _interval(est: dict[str, float | None], *, points: bool = False) -> str:
    scale, unit = (100, " points") if points else (1, "")
    mean = est["mean"] or 0.0
    if est["low"] is None:
        return f"{scale * mean:.4g}{unit} (n={est['n']})"
    return f"{scale * mean:.4g}{unit} [{scale * est['low']:.4g}, {scale * est['high']:.4g}] (95%, n={est['n']})"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=60, help="training pool per class (val included)")
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 4.0, 10.0])
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--student-width", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight on the true labels (1 = no distillation)")
    parser.add_argument("--temperature", type=float, default=4.0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
