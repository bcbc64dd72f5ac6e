"""A kdtune study against the same trials run the way the tutorials teach, on the same machine, in one run.

Both sides train the same configurations (alpha, temperature, seeds, epochs, batch size) with the same
concurrency, on the same data, from the same teacher:

* kdtune: ``run_study`` with the teacher's logits from the cache, data pre-loaded as tensors, seeds in
  lockstep inside one trial, one torch thread per trial, channels_last.
* naive: a straightforward Ray Tune + ``OptunaSearch`` script: a torchvision-style per-item ``Dataset``
  (PIL image -> ``ToTensor`` -> ``Normalize``) through a ``DataLoader``, the teacher run inline at every
  step as in the Keras KD tutorial, models in PyTorch's default NCHW layout, Tune's default of a fresh
  actor per trial.

The teacher is trained (or taken from the cache) once before both runs and is not timed, unless ``--cold``:
then kdtune's study starts from an empty cache (its teacher preparation is part of its wall time) and the naive
side first trains its teacher the tutorials' way (``teacher_preparation.plain_teacher``: ``DataLoader``, NCHW,
torch's default threads), timed within its wall time. Both sides use a FIFO scheduler, so every trial runs every
epoch, unless ``--scheduler asha`` (ASHA on both: kdtune's per condition, grace period 1; Tune's
``ASHAScheduler`` on the naive side, over its per-seed-epoch reports); the per-seed-epoch line then compares
what each side ran. The last lines print each side's peak memory, the wall-time
ratio, the machine's CPU utilisation during each run and Ray Tune's overhead per trial (wall time x concurrency minus the trials'
own compute time, per trial; for kdtune over the search itself, after the teachers are loaded, so idle slots
while the last trials of a condition finish count as overhead too).

    python benchmarks/study_throughput.py --data-root DIR     # DIR/MNIST/raw/*.gz; about 10 minutes on 2 cores
    python benchmarks/study_throughput.py --data-root DIR --cold --scheduler asha --train-size 10000 --trials 8 \
        --repeats 1 --teacher-epochs 2      # the cold study of issue 16, end to end
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import load_average
from machine import process_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("KDTUNE_DATA_ROOT"),
                        help="folder with MNIST/raw/*.gz (default: $KDTUNE_DATA_ROOT)")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4, help="searched configurations per noise level")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--cold", action="store_true",
                        help="time the teachers too: kdtune from an empty cache, the naive side training its own")
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("--data-root is required (a folder with MNIST/raw/*.gz); this benchmark uses real MNIST")

    import ray

    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials
    from kdtune.spec.schema import parse_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study
    from kdtune.study.ray_runtime import init_ray

    work = Path(tempfile.mkdtemp(prefix="kdtune-bench-"))
    data_root = _writable_copy(Path(args.data_root), work / "data")
    spec = parse_spec({
        "name": "throughput",
        "dataset": {"name": "mnist", "train_size": args.train_size, "data_root": str(data_root)},
        "teacher": {"arch": "reference_teacher", "epochs": args.teacher_epochs},
        "student": {"arch": "reference_student", "epochs": args.epochs},
        "conditions": {"noise_level": [0.05]},
        "sampler": "random",
        "budget": {"trials_per_condition": args.trials, "repeats": args.repeats},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2} if args.scheduler == "asha"
        else {"type": "fifo"},
        "tracking": "none",
    })
    init_ray(num_cpus=args.concurrency)
    cache = str(work / "cache") if args.cold else None  # cold: an empty cache, the teacher is trained in the study
    if not args.cold:
        _warm_teacher_cache(spec)
    print(f"load before: {load_average()}", flush=True)

    cpu0, start = _cpu_busy(), time.time()
    with PeakMemory() as kdtune_memory:
        study_dir = run_study(spec, RunOptions(out=work / "study", progress=False, max_concurrent=args.concurrency,
                                               cache_dir=cache))
    kdtune_wall, kdtune_cpu = time.time() - start, _utilisation(cpu0)
    trials = read_trials(study_dir).to_pylist()
    rows = read_results(study_dir).to_pylist()
    configs = [json.loads(t["params"]) for t in trials]
    kdtune_compute = sum(r["seconds"] for r in rows)

    cpu0, start = _cpu_busy(), time.time()
    with PeakMemory() as naive_memory:
        teacher_s, teacher_state = _naive_teacher(spec, args, data_root)
        naive_start = time.time()
        naive_compute, naive_trial_epochs = _naive_study(spec, configs, args, teacher_state, work)
        naive_trials_wall = time.time() - naive_start
    naive_wall, naive_cpu = time.time() - start, _utilisation(cpu0)
    ray.shutdown()

    n = len(configs)
    meta = json.loads((study_dir / "study.json").read_text())
    search_wall = meta["finished_at"] - meta["trials_started_at"]
    overhead = (search_wall * args.concurrency - kdtune_compute) / n
    inside = (sum(t["seconds"] for t in trials) - kdtune_compute) / n  # set-up and report round trips
    print(f"trials: {n} configurations x {args.repeats} seeds x {args.epochs} epochs on {args.train_size} MNIST "
          f"images, concurrency {args.concurrency}")
    print(f"kdtune: {kdtune_wall:.1f} s wall ({kdtune_wall - search_wall:.1f} s of start-up and teacher loading), "
          f"CPU utilisation {kdtune_cpu:.0%}, Tune overhead {overhead:.2f} s per trial "
          f"({overhead / (overhead + kdtune_compute / n):.0%} of trial time): {inside:.2f} s inside trials (set-up, "
          f"waiting on reports), {overhead - inside:.2f} s between trials and in idle slots")
    print(f"naive:  {naive_wall:.1f} s wall, CPU utilisation {naive_cpu:.0%}, Tune overhead "
          f"{(naive_wall * args.concurrency - naive_compute) / n:.2f} s per trial (start-up included)")
    print(f"peak memory of the study (PSS of this process and every Ray process): kdtune {kdtune_memory.peak_gib:.2f} "
          f"GiB, naive {naive_memory.peak_gib:.2f} GiB, ratio {naive_memory.peak_gib / kdtune_memory.peak_gib:.2f}")
    # Per seed-epoch, not per trial-epoch: kdtune's confirmation trials train more seeds than its search trials
    # (confirm_repeats), which the naive side, given the same configurations at `repeats` seeds, never runs.
    kdtune_seed_epochs, naive_seed_epochs = len(rows), naive_trial_epochs * args.repeats
    kdtune_per, naive_per = search_wall / kdtune_seed_epochs, naive_trials_wall / naive_seed_epochs
    print(f"per seed-epoch: kdtune {kdtune_per:.2f} s over {kdtune_seed_epochs}, naive {naive_per:.2f} s over "
          f"{naive_seed_epochs:g} (trial phases' wall / seed-epochs trained): {naive_per / kdtune_per:.1f}x")
    if args.cold:
        teachers = json.loads((study_dir / "teachers.json").read_text())
        print(f"teacher preparation: kdtune {meta['trials_started_at'] - meta['created_at']:.1f} s (threads "
              f"{', '.join(str(t.get('threads')) for t in teachers.values())}), naive teacher training + evaluation "
              f"{teacher_s:.1f} s")
    print(f"load after: {load_average()}")
    print(f"study wall-time ratio (naive / kdtune){' from cold' if args.cold else ''}: {naive_wall / kdtune_wall:.1f}x")


def _warm_teacher_cache(spec: Any) -> None:
    """Train the teacher and cache its logits before timing anything (both sides use this teacher)."""
    from kdtune.cache import LogitCache
    from kdtune.spec.conditions import expand

    for condition in expand(spec):
        LogitCache().prepare(condition.teacher_spec(spec), condition.load_data(spec), threads=os.cpu_count())


def _naive_teacher(spec: Any, args: argparse.Namespace, data_root: Path) -> tuple[float, dict[str, Any]]:
    """The naive side's teacher: trained the tutorials' way when ``--cold`` (seconds, weights), else the cached
    one kdtune used (0 s)."""
    from kdtune.cache import LogitCache
    from kdtune.spec.conditions import expand

    if args.cold:
        from teacher_preparation import plain_teacher

        seconds, _, model = plain_teacher(data_root, train_size=args.train_size, epochs=args.teacher_epochs)
        return seconds, {k: v.clone() for k, v in model.state_dict().items()}
    condition = expand(spec)[0]
    prepared = LogitCache().prepare(condition.teacher_spec(spec), condition.load_data(spec))
    return 0.0, {k: v.clone() for k, v in prepared.teacher.model.state_dict().items()}


def _naive_study(spec: Any, configs: list[dict[str, Any]], args: argparse.Namespace, teacher_state: dict[str, Any],
                 work: Path) -> tuple[float, float]:
    """The tutorial way; returns the trials' own compute time (seconds, summed over trials) and the trial-epochs
    run (seed-epochs / seeds)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    repeats, concurrency = args.repeats, args.concurrency
    scheduler = None
    if args.scheduler == "asha":  # every report is one seed's epoch: rungs in seed-epochs
        scheduler = ASHAScheduler(time_attr="training_iteration", metric="val_accuracy", mode="max",
                                  max_t=repeats * spec.student.epochs, grace_period=repeats, reduction_factor=2)
    space = {k: tune.uniform(0, 1) if k == "alpha" else tune.loguniform(1, 20) for k in ("alpha", "temperature")}
    searcher = OptunaSearch(metric="val_accuracy", mode="max", points_to_evaluate=[
        {"alpha": c["alpha"], "temperature": c["temperature"]} for c in configs])
    trainable = tune.with_parameters(_naive_trial, teacher_state=teacher_state, spec_dict=spec.to_dict(),
                                     repeats=repeats)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=len(configs), max_concurrent_trials=concurrency,
                                    scheduler=scheduler),
        run_config=tune.RunConfig(name="naive", storage_path=str(work / "naive"), verbose=0),
    )
    results = tuner.fit()
    compute = sum(r.metrics.get("compute_seconds", 0.0) for r in results)
    return compute, sum(r.metrics.get("training_iteration", 0) for r in results) / repeats


def _naive_trial(config: dict[str, Any], *, teacher_state: dict[str, Any], spec_dict: dict[str, Any],
                 repeats: int) -> None:
    import torch
    import torch.nn.functional as F
    import torchvision
    from ray import tune
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from kdtune.core.distill import kd_loss
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks.image.models import build_model

    spec = StudySpec.model_validate(spec_dict)
    root = spec.dataset.data_root
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.0,), (1.0,))])
    full = torchvision.datasets.MNIST(root, train=True, download=True, transform=transform)
    train = torch.utils.data.Subset(full, range(spec.dataset.train_size or len(full)))
    test = torchvision.datasets.MNIST(root, train=False, download=True, transform=transform)
    # The tutorials' models run in PyTorch's default NCHW layout (kdtune's build_model returns channels_last).
    teacher = build_model("reference_teacher", input_shape=(1, 28, 28), num_classes=10)
    teacher.load_state_dict(teacher_state)
    teacher.to(memory_format=torch.contiguous_format).eval()
    compute = 0.0
    for seed in range(repeats):
        torch.manual_seed(seed)
        student = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10)
        student.to(memory_format=torch.contiguous_format)
        optimizer = torch.optim.Adam(student.parameters(), lr=spec.student.lr)
        loader = DataLoader(train, batch_size=spec.student.batch_size, shuffle=True)
        for epoch in range(spec.student.epochs):
            start = time.perf_counter()
            student.train()
            for x, y in loader:
                with torch.no_grad():
                    t = teacher(x)  # the teacher runs at every step
                loss = kd_loss(student(x), t, y, alpha=config["alpha"], temperature=config["temperature"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            student.eval()
            correct = 0
            with torch.no_grad():
                for x, y in DataLoader(test, batch_size=1000):
                    correct += int((student(x).argmax(1) == y).sum())
            compute += time.perf_counter() - start
            tune.report({"val_accuracy": correct / len(test), "compute_seconds": compute,
                         "loss": float(F.cross_entropy(student(x), y))})


def _writable_copy(source: Path, target: Path) -> Path:
    """torchvision extracts the .gz files next to them: work on a copy, never in a read-only shared folder."""
    import shutil

    (target / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
    for f in (source / "MNIST" / "raw").glob("*.gz"):
        shutil.copyfile(f, target / "MNIST" / "raw" / f.name)
    return target


class PeakMemory:
    """Samples, twice a second, the summed proportional set size (PSS: shared pages split between the processes
    that map them, so Ray's shared object store counts once) of this process and its descendants, which include
    the local Ray's raylet, object store and workers."""

    def __init__(self) -> None:
        import threading

        self.peak_gib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_gib = max(self.peak_gib, sum(_pss_kib(pid) for pid in process_tree(os.getpid())) / 2**20)




def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass  # ended, or not ours to read
    return 0


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)




def _utilisation(before: tuple[float, float]) -> float:
    busy, total = _cpu_busy()
    return (busy - before[0]) / max(1.0, total - before[1])


if __name__ == "__main__":
    main()
