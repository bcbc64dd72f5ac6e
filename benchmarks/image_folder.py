"""Images from disk against the same images in memory: student samples/s of each, and peak memory of the disk path
as the number of images grows.

One run, both sides. An image folder of PNG files is written first (real MNIST images from ``--data-root``, else
scikit-learn's digits scaled to 28x28), in torchvision's ImageFolder layout; ``dataset.name: image_folder`` then
loads it twice, ``in_memory: true`` (decoded once into tensors: today's fast path) and ``in_memory: false``
(:class:`kdtune.core.images.DiskImages`, each batch decoded and its crop + flip view rendered in loader workers).

* Throughput: the reference student trained by :class:`kdtune.core.train.Trainer` on crop + flip views (padding 2,
  4 views, the per-view teacher logits a fixed random array: the teacher is not what is measured), one torch
  thread, the two paths interleaved epoch by epoch; training samples per second (each epoch's wall time, its
  evaluation included).
* Memory: a fresh process per size loads the folder of 1x and 4x the images on disk and trains one epoch; its peak
  resident memory (``VmHWM``; its loader workers' ``ru_maxrss`` beside it) against the same with the images in
  memory. The target is a flat disk path.

usage:
  python benchmarks/image_folder.py --data-root ROOT --images 4000 --side 56   # ROOT/MNIST/raw/*.gz; about 2 minutes
  python benchmarks/image_folder.py                                   # digits scaled to 28x28
"""

from __future__ import annotations

import os


os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def write_folder(root: Path, images: int, data_root: str | None, side: int) -> None:
    """``images`` grey PNG files of ``side`` pixels in ``root/<label>/``: the first ``images`` of MNIST (or of digits,
    cycled), resized from 28x28 (8x8) when ``side`` differs."""
    from PIL import Image

    if data_root:
        from kdtune.tasks.image.datasets import load_idx_dataset

        x, y, _, _, _ = load_idx_dataset("mnist", Path(data_root), False)
        pixels = np.round(np.asarray(x)[:images, 0] * 255).astype(np.uint8)
        labels = y[:images]
    else:
        from sklearn import datasets

        digits = datasets.load_digits()
        small = np.round(digits.images * 255 / 16).astype(np.uint8)
        pixels = np.stack([np.asarray(Image.fromarray(small[i % len(small)]).resize((28, 28))) for i in range(images)])
        labels = digits.target[np.arange(images) % len(small)]
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        png = Image.fromarray(image, mode="L")
        (png if png.size == (side, side) else png.resize((side, side))).save(folder / f"{i:06d}.png")


def _load(root: Path, in_memory: bool, workers: int) -> Any:
    from kdtune.tasks.datasets import load_dataset

    return load_dataset("image_folder", images={"root": str(root), "in_memory": in_memory, "workers": workers},
                        val_fraction=0.1, seed=0)


def _trainer(data: Any, seed: int) -> Any:
    import torch

    from kdtune.core.augment import Augment
    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.tasks.image.models import build_model
    from kdtune.tasks.image.views import ViewLogits
    from kdtune.tasks.image.views import ViewSpec

    spec = ViewSpec(Augment(crop=data.input_shape[1], padding=2, flip=True), views=4, seed=0)
    logits = torch.randn(len(data.train) * spec.views, data.num_classes, generator=torch.Generator().manual_seed(0))
    model = build_model("reference_student", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)
    config = TrainConfig(epochs=100, alpha=0.5, temperature=4.0, seed=seed, batch_size=64)
    return Trainer(model, data, config, views=ViewLogits(spec, data.num_classes, dense=logits), threads=1)


def throughput(root: Path, epochs: int, workers: int) -> dict[str, Any]:
    paths = {"memory": _load(root, True, workers), "disk": _load(root, False, workers)}
    trainers = {name: _trainer(data, 0) for name, data in paths.items()}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for epoch in range(epochs + 1):  # epoch 0 warms up both (allocator, first worker start)
        for name in (list(paths) if epoch % 2 else list(paths)[::-1]):
            start = time.perf_counter()
            metrics = trainers[name].step()
            if epoch:
                seconds[name].append(time.perf_counter() - start)
    samples = len(paths["memory"].train)
    out = {name: {"samples_per_s": samples / float(np.median(s)), "epoch_s": [round(v, 3) for v in s]}
           for name, s in seconds.items()}
    out["disk_over_memory"] = out["disk"]["samples_per_s"] / out["memory"]["samples_per_s"]
    out["last_val_accuracy"] = metrics.val_accuracy
    return out


def peak_memory(root: Path, in_memory: bool, workers: int) -> dict[str, float]:
    """In a fresh process: load, train one epoch; the process's peak resident memory (``VmHWM``, MiB: Linux keeps
    ``ru_maxrss`` across exec, so a child would report its parent's) and its loader workers' largest ``ru_maxrss``
    (MiB; a forked worker starts from its parent's resident pages, shared copy-on-write)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import image_folder as b, resource, json;"
            f"d = b._load(__import__('pathlib').Path({str(root)!r}), {in_memory}, {workers}); b._trainer(d, 0).step();"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
            "print(json.dumps({'self': int(hwm) / 1024,"
            "'workers': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw/*.gz (default: digits scaled up)")
    parser.add_argument("--images", type=int, default=4000, help="images of the 1x folder (default: 4000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per path (default: 3)")
    parser.add_argument("--workers", type=int, default=2, help="loader processes of the disk path (default: 2)")
    parser.add_argument("--side", type=int, default=28, help="pixels of each (square, grey) image (default: 28)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    result: dict[str, Any] = {"images": args.images, "side": args.side, "workers": args.workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {scale: Path(tmp) / f"x{scale}" for scale in (1, 4)}
        for scale, root in roots.items():
            start = time.perf_counter()
            write_folder(root, args.images * scale, args.data_root, args.side)
            print(f"wrote {args.images * scale} PNG files in {time.perf_counter() - start:.1f} s", flush=True)
        result["throughput"] = throughput(roots[1], args.epochs, args.workers)
        t = result["throughput"]
        print(f"samples/s: memory {t['memory']['samples_per_s']:,.0f}, disk {t['disk']['samples_per_s']:,.0f} "
              f"({t['disk_over_memory']:.2f}x)", flush=True)
        result["peak_rss_mib"] = {}
        for scale, root in roots.items():
            for in_memory in (False, True):
                name = f"{'memory' if in_memory else 'disk'} {scale}x"
                result["peak_rss_mib"][name] = peak_memory(root, in_memory, args.workers)
                print(f"peak RSS, {name} ({args.images * scale} images): {result['peak_rss_mib'][name]}", flush=True)
    result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
