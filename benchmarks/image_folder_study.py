"""A study on an image folder read from disk against the same study on the same images in memory: student samples/s.

What a user with a folder of images runs: ``kdtune run`` on a spec with ``dataset.name: image_folder``, once with
``dataset.in_memory: true`` (decoded once, batches sliced from tensors) and once with ``in_memory: false``
(:class:`kdtune.core.images.DiskImages`: every batch decoded and its crop + flip view rendered in data loader
workers, inside each trial). The folder is written first: the first ``--images`` MNIST training images (from
torchvision's folder layout under ``--data-root``; scikit-learn's digits scaled to 28x28 without it) as PNG files in
torchvision's ImageFolder layout. Both studies are the same tiny spec (one condition, the reference CNNs, the student
on 4 cached crop + flip views, FIFO, no confirmation, no W&B), each with a teacher-logit cache of its own (the two
paths' datasets have different fingerprints, so each trains its teacher), in child processes one after the other
(``--rounds`` alternates which goes first).

Reported per side, from the study folder: the students' samples/s per seed-epoch (training images / the ``seconds``
of each results row: an epoch's training and its evaluation, as a trial ran it, median over rows), the study's
student throughput (training samples of every row / the trial phase's wall time: what the concurrent trials
achieved together), and the wall time of each phase. The last line is the disk / memory ratio of both.

usage:
  python benchmarks/image_folder_study.py --data-root ROOT            # ROOT/MNIST/raw/*.gz; about 5 minutes
  python benchmarks/image_folder_study.py --images 2000 --epochs 2    # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from image_folder import write_folder
from machine import cpu_idle
from machine import load_average


def spec_for(root: Path, in_memory: bool, args: argparse.Namespace) -> dict[str, Any]:
    """The tiny study: one condition; the student on crop + flip views (what a vision user trains with)."""
    side = args.side
    return {
        "version": 1,
        "name": f"folder-{'memory' if in_memory else 'disk'}",
        "dataset": {"name": "image_folder", "root": str(root), "in_memory": in_memory, "workers": args.workers,
                    "val_fraction": 0.1, "seed": 0},
        "teacher": {"arch": "reference_teacher", "epochs": args.teacher_epochs},
        "student": {"arch": "reference_student", "epochs": args.epochs, "batch_size": 64, "lr": 1e-3,
                    "augment": {"crop": side, "padding": 2, "flip": True}, "views": 4},
        "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0},
                   "temperature": {"type": "float", "low": 1.0, "high": 20.0, "log": True}},
        "sampler": "random",
        "budget": {"trials_per_condition": args.trials, "repeats": args.repeats, "seed": 0, "confirm_top_k": 0},
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "tracking": None,
    }


def run_side(root: Path, in_memory: bool, work: Path, args: argparse.Namespace, train_images: int) -> dict[str, Any]:
    """One ``kdtune run`` in a child process, cold (an empty cache of its own); what its study folder says."""
    side = "memory" if in_memory else "disk"
    folder = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work))
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_for(root, in_memory, args), sort_keys=False))
    out = folder / "study"
    command = [sys.executable, "-m", "kdtune", "run", str(spec), "--out", str(out), "--cache-dir", str(folder / "cache")]
    env = {k: v for k, v in os.environ.items() if k not in ("KDTUNE_CACHE_DIR", "KDTUNE_STORAGE", "RAY_ADDRESS")}
    start = time.perf_counter()
    with open(folder / "run.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if code != 0:
        print((folder / "run.log").read_text()[-3000:])
        raise SystemExit(f"kdtune run ({side}) exited with {code} (log: {folder / 'run.log'})")
    return summarise(out, wall, train_images)


def summarise(out: Path, wall: float, train_images: int) -> dict[str, Any]:
    """Samples/s per seed-epoch (median over results rows) and of the trial phase as a whole, phase times."""
    from kdtune.records.results import read_results

    meta = json.loads((out / "study.json").read_text())
    created, started, finished = meta["created_at"], meta["trials_started_at"], meta["finished_at"]
    seconds = read_results(out).column("seconds").to_pylist()
    trial_phase = finished - started
    return {
        "wall_s": wall,
        "before_trials_s": started - created,  # Ray's start, the data, the teacher and its per-view logits
        "trial_phase_s": trial_phase,
        "seed_epochs": len(seconds),
        "seed_epoch_s": statistics.median(seconds),
        "samples_per_s": train_images / statistics.median(seconds),
        "study_samples_per_s": train_images * len(seconds) / trial_phase,
    }


def train_images(root: Path) -> int:
    """The training split's size, as the study draws it (labels only: nothing is decoded)."""
    from kdtune.tasks.datasets import load_dataset

    data = load_dataset("image_folder", images={"root": str(root), "in_memory": False}, val_fraction=0.1, seed=0)
    return len(data.train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder with MNIST/raw/*.gz (default: digits scaled up)")
    parser.add_argument("--images", type=int, default=4000, help="PNG files in the folder (default: 4000)")
    parser.add_argument("--side", type=int, default=28, help="pixels of each (square, grey) image (default: 28)")
    parser.add_argument("--trials", type=int, default=4, help="proposals (+ 2 baselines) (default: 4)")
    parser.add_argument("--repeats", type=int, default=2, help="seeds per trial (default: 2)")
    parser.add_argument("--epochs", type=int, default=3, help="student epochs (default: 3)")
    parser.add_argument("--teacher-epochs", type=int, default=1, help="teacher epochs (default: 1)")
    parser.add_argument("--workers", type=int, default=2, help="dataset.workers of the disk side (default: 2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side, alternating (default: 1)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    print(f"load before: {load_average()} (1, 5, 15 min); CPUs idle {cpu_idle(5.0):.0%} over 5 s; "
          f"{os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "disk": []}
    with tempfile.TemporaryDirectory(prefix="kdtune-folder-study-") as tmp:
        work = Path(tmp)
        root = work / "images"
        start = time.perf_counter()
        write_folder(root, args.images, args.data_root, args.side)
        n_train = train_images(root)
        print(f"wrote {args.images} PNG files ({args.side}x{args.side}) in {time.perf_counter() - start:.1f} s; "
              f"{n_train} training images", flush=True)
        for r in range(args.rounds):
            for in_memory in ((True, False) if r % 2 == 0 else (False, True)):
                name = "memory" if in_memory else "disk"
                result = run_side(root, in_memory, work, args, n_train)
                runs[name].append(result)
                print(f"{name:6s}: {result['samples_per_s']:7,.0f} samples/s per seed-epoch "
                      f"({1000 * result['seed_epoch_s']:.0f} ms over {result['seed_epochs']} seed-epochs); "
                      f"study {result['study_samples_per_s']:7,.0f} samples/s; wall {result['wall_s']:.1f} s "
                      f"(before trials {result['before_trials_s']:.1f} s, trials {result['trial_phase_s']:.1f} s)",
                      flush=True)
    print(f"load after: {load_average()}")
    per_epoch = {k: statistics.median(r["samples_per_s"] for r in v) for k, v in runs.items()}
    study = {k: statistics.median(r["study_samples_per_s"] for r in v) for k, v in runs.items()}
    print("| side | samples/s per seed-epoch | study samples/s (trial phase) | wall s |")
    print("| --- | --- | --- | --- |")
    for name in runs:
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs[name])
        print(f"| {name} | {per_epoch[name]:,.0f} | {study[name]:,.0f} | {walls} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    print(f"disk / memory: {per_epoch['disk'] / per_epoch['memory']:.2f}x per seed-epoch "
          f"({per_epoch['disk']:,.0f} vs {per_epoch['memory']:,.0f} samples/s), "
          f"{study['disk'] / study['memory']:.2f}x of the study's trial phase "
          f"({study['disk']:,.0f} vs {study['memory']:,.0f} samples/s)")


if __name__ == "__main__":
    main()
