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
* Memory: a fresh process per size loads the folder of 1x and 4x the images and trains two epochs (each
  evaluated), on disk and in memory; its peak resident memory (``VmHWM``; the loader workers' ``ru_maxrss`` apart),
  and what it still holds once freed memory is handed back (``malloc_trim``). Each twice: with glibc's defaults (a
  plain process: dynamic mmap threshold) and with the fixed thresholds kdtune's Ray trial workers run with
  (``WORKER_MALLOC_ENV``), and once with every buffer over 128 KiB mapped on its own (a diagnostic). Freed buffers
  (batch activations, evaluation batches of 256) stay in glibc's heap between small arrays of the epoch, so the
  peak grows with the batches run (+106 MiB at 4x was first measured so, untraced), while what the process holds
  after ``malloc_trim``, and the peak with the diagnostic setting, are flat. Also
  printed: the disk path's per-image state in bytes (file names, positions, labels: what grows with the folder by
  design). The target is a flat disk path.

usage:
  python benchmarks/image_folder.py --data-root ROOT --images 4000 --side 56   # ROOT/MNIST/raw/*.gz; about 8 minutes
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
from machine import cpu_idle  # noqa: E402
from machine import load_average  # noqa: E402

from kdtune.study.ray_runtime import WORKER_MALLOC_ENV  # noqa: E402


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


#: glibc's malloc as a plain process has it (dynamic thresholds), as kdtune's Ray trial workers run it (fixed, high:
#: freed buffers stay for the next batch), and a diagnostic (every buffer over 128 KiB mapped alone and unmapped when
#: freed, so the peak counts only what was live at once).
MALLOC_ENVS = {"glibc defaults": {}, "trial workers' thresholds": dict(WORKER_MALLOC_ENV),
               "mmap above 128 KiB": {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}}


def _measure_memory(root: Path, in_memory: bool, workers: int) -> dict[str, float]:
    """Runs in the fresh process :func:`peak_memory` starts: load the folder, train two epochs (each evaluated),
    read the memory at every phase (MiB), then what stays resident once freed memory is handed back
    (``gc.collect`` and glibc's ``malloc_trim(0)``: what the process still holds, not what its allocator kept)."""
    import ctypes
    import gc

    def status(field: str) -> float:
        line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
        return int(line.split()[1]) / 1024

    out: dict[str, float] = {}
    data = _load(root, in_memory, workers)
    out["after load"] = status("VmRSS")
    trainer = _trainer(data, 0)
    for epoch in (1, 2):
        trainer.step()
        out[f"after epoch {epoch}"] = status("VmRSS")
    out["peak"] = status("VmHWM")  # Linux keeps ru_maxrss across exec: a child would report its parent's
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out["held (trimmed)"] = status("VmRSS")
    out["workers"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def peak_memory(root: Path, in_memory: bool, workers: int, env: dict[str, str]) -> dict[str, float]:
    """:func:`_measure_memory` in a fresh process with ``env`` added to its environment: one process per
    measurement, so nothing an earlier one allocated counts (loader workers, forked, report apart)."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import image_folder as b;"
            f"print(json.dumps(b._measure_memory(__import__('pathlib').Path({str(root)!r}), {in_memory}, {workers})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


def metadata_bytes(root: Path) -> dict[str, float]:
    """What the disk path keeps per image, in bytes: the file names (Python strings and the list's pointers), the
    positions of each split and the labels (int64 each). What grows with the folder by design."""
    data = _load(root, False, 0)
    reader = data.train.x.reader
    names = sys.getsizeof(reader.files) + sum(sys.getsizeof(f) for f in reader.files)
    positions = sum(split.x.index.nbytes for split in (data.train, data.val, data.test))
    labels = sum(t.nbytes for split in (data.train, data.val, data.test) for t in (split.y, split.clean, split.flipped))
    return {"images": len(reader), "names": names / len(reader), "positions": positions / len(reader),
            "labels": labels / len(reader)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw/*.gz (default: digits scaled up)")
    parser.add_argument("--images", type=int, default=4000, help="images of the 1x folder (default: 4000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per path (default: 3)")
    parser.add_argument("--workers", type=int, default=2, help="loader processes of the disk path (default: 2)")
    parser.add_argument("--side", type=int, default=28, help="pixels of each (square, grey) image (default: 28)")
    parser.add_argument("--only", choices=("throughput", "memory"), default=None, help="one of the two measurements")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    result: dict[str, Any] = {"images": args.images, "side": args.side, "workers": args.workers, "cpus": os.cpu_count()}
    print(f"load before: {load_average()} (1, 5, 15 min); CPUs idle {cpu_idle(5.0):.0%} over 5 s; "
          f"{os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {scale: Path(tmp) / f"x{scale}" for scale in (1, 4)}
        for scale, root in roots.items():
            start = time.perf_counter()
            write_folder(root, args.images * scale, args.data_root, args.side)
            print(f"wrote {args.images * scale} PNG files in {time.perf_counter() - start:.1f} s", flush=True)
        if args.only != "memory":
            result["throughput"] = throughput(roots[1], args.epochs, args.workers)
            t = result["throughput"]
            print(f"samples/s: memory {t['memory']['samples_per_s']:,.0f}, disk {t['disk']['samples_per_s']:,.0f} "
                  f"({t['disk_over_memory']:.2f}x)", flush=True)
        if args.only != "throughput":
            memory(roots, args.workers, result)
    print(f"load after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if "memory_mib" in result:
        m = result["memory_mib"]
        print("| path, malloc | 1x: peak / held | 4x: peak / held | 4x - 1x: peak / held |")
        print("| --- | --- | --- | --- |")
        for malloc in MALLOC_ENVS:
            for side in ("disk", "memory"):
                one, four = m[f"{side} 1x, {malloc}"], m[f"{side} 4x, {malloc}"]
                print(f"| {side}, {malloc} | {one['peak']:,.0f} / {one['held (trimmed)']:,.0f} | {four['peak']:,.0f} / "
                      f"{four['held (trimmed)']:,.0f} | {four['peak'] - one['peak']:+,.0f} / "
                      f"{four['held (trimmed)'] - one['held (trimmed)']:+,.0f} |")
        growth = {malloc: {k: m[f"disk 4x, {malloc}"][k] - m[f"disk 1x, {malloc}"][k] for k in ("peak", "held (trimmed)")}
                  for malloc in MALLOC_ENVS}
        print(f"disk path, {4 * args.images} images against {args.images}: " + "; ".join(
            f"{malloc}: peak RSS {g['peak']:+,.0f} MiB, held {g['held (trimmed)']:+,.0f} MiB" for malloc, g in growth.items()))
    if "throughput" in result:
        t = result["throughput"]
        print(f"training loop, disk / memory: {t['disk_over_memory']:.2f}x ({t['disk']['samples_per_s']:,.0f} vs "
              f"{t['memory']['samples_per_s']:,.0f} samples/s)")


def memory(roots: dict[int, Path], workers: int, result: dict[str, Any]) -> None:
    """The disk path's per-image state, then every path's memory at 1x and 4x under each malloc setting."""
    result["metadata_bytes_per_image"] = metadata_bytes(roots[4])
    print("disk path's per-image state (bytes): " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                          result["metadata_bytes_per_image"].items()), flush=True)
    result["memory_mib"] = {}
    for malloc, env in MALLOC_ENVS.items():
        for in_memory in (False, True):
            for scale, root in roots.items():
                name = f"{'memory' if in_memory else 'disk'} {scale}x, {malloc}"
                result["memory_mib"][name] = peak_memory(root, in_memory, workers, env)
                print(f"{name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in result["memory_mib"][name].items()),
                      flush=True)


if __name__ == "__main__":
    main()
