"""What runs inside one Ray Tune trial: one configuration, all its repeat seeds, in lockstep.

The seeds of a configuration are trained one epoch at a time each, so that after every epoch the trial
reports the mean over seeds of the objective, the number ASHA and Optuna decide on (``docs/architecture.md``).
Every student of a condition reads the same data and teacher logits from Ray's object store (zero-copy,
read-only numpy views); the teacher never runs here. The trial checkpoints all its students after every
epoch, so a retried trial continues where it stopped.

The objective of one seed is its validation objective at its best validation epoch so far (the earliest on
ties, as :mod:`kdtune.analysis.scoring` scores a run); the trial's is the mean over seeds. Each report also carries
``scores``, every seed's (seed, objective, test metric at that epoch): the searcher's adaptive confirmation
judges its rounds on them. A NaN loss ends the trial at once with ``nan: True`` (recorded as FAIL, not retried).
The checkpoint also carries every result row so far; the first report after a restore replays them, so rows
a crashed driver never wrote are not lost (the writer skips the ones it has). A restore whose checkpoint Tune
already deleted continues from the trial's newest one (:class:`RestoreNewestCheckpoint`).
"""

from __future__ import annotations

import logging
import math
import posixpath
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import torch

from kdtune.core.data import DataBundle
from kdtune.core.data import LinearTruth
from kdtune.core.data import Split
from kdtune.core.train import TeacherLogits
from kdtune.trial_io import TrialConfig
from kdtune.trial_io import TrialResult


logger = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
CHECKPOINT_FILE = "students.pt"
CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")  # Tune's names for a trial's checkpoint folders


def pack_payload(data: DataBundle, logits: TeacherLogits | None, teacher_weights: np.ndarray | None) -> dict[str, Any]:
    """Everything a trial needs about its condition, as numpy arrays (Ray stores them once, zero-copy)."""
    payload: dict[str, Any] = {
        "name": data.name, "task": data.task, "num_classes": data.num_classes,
        "input_shape": tuple(data.input_shape), "description": data.description,
        "teacher_weights": teacher_weights,
        "linear_truth": None if data.linear_truth is None else (data.linear_truth.weights, data.linear_truth.noise_std),
    }
    for name in SPLITS:
        split: Split = getattr(data, name)
        payload[name] = {k: getattr(split, k).numpy() for k in ("x", "y", "clean", "flipped")}
        payload[f"logits_{name}"] = None if logits is None else getattr(logits, name).numpy()
    return payload


def unpack_payload(payload: dict[str, Any]) -> tuple[DataBundle, TeacherLogits | None]:
    with warnings.catch_warnings():
        # The arrays live read-only in Ray's object store; training never writes to its inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        splits = {n: Split(**{k: torch.from_numpy(v) for k, v in payload[n].items()}) for n in SPLITS}
        logits = None
        if payload["logits_train"] is not None:
            logits = TeacherLogits(*(torch.from_numpy(payload[f"logits_{n}"]) for n in SPLITS))
    truth = payload["linear_truth"]
    data = DataBundle(name=payload["name"], task=payload["task"], num_classes=payload["num_classes"],
                      input_shape=payload["input_shape"], description=payload["description"],
                      linear_truth=None if truth is None else LinearTruth(weights=truth[0], noise_std=truth[1]),
                      **splits)
    return data, logits


def run_trial(config: TrialConfig, *, payloads: dict[str, Any], study: dict[str, Any]) -> None:
    """The Tune function trainable. ``study`` holds the student section, each condition's student
    architecture and the trial resources."""
    import ray
    from ray import tune

    threads = max(1, int(study["cpus_per_trial"]))
    torch.set_num_threads(threads)
    payload = ray.get(payloads[config["condition"]])
    data, logits = unpack_payload(payload)
    node_id = ray.get_runtime_context().get_node_id()
    params = config["params"]
    if data.task == "regression":
        tune.report(_linear_result(data, payload["teacher_weights"], params, config["seeds"], node_id))
        return
    from kdtune.tasks.image.views import unpack_views

    views = unpack_views(payload.get("views"))  # the teacher's logits per augmented view, or None
    trainers, best = _students(data, logits, config, study, threads, views)
    best_test = [math.nan] * len(trainers)  # test accuracy at each seed's best validation epoch
    history: list[dict[str, Any]] = []  # every row so far: replayed after a restore (the driver de-duplicates)
    replay: list[dict[str, Any]] = []
    state = _load_checkpoint(tune.get_checkpoint())
    if state is not None:
        for trainer, s in zip(trainers, state["students"]):
            trainer.load_state_dict(s)
        best, history = state["best"], state["rows"]
        best_test = state.get("best_test", best_test)
        replay = list(history)  # rows the driver may have lost if it crashed before writing them
    epochs = int(params["epochs"])
    while trainers[0].epoch < epochs:
        metrics = [trainer.step() for trainer in trainers]
        nan = any(not math.isfinite(m.train_loss) for m in metrics)
        for i, m in enumerate(metrics):
            if m.val_accuracy > best[i]:
                best[i], best_test[i] = m.val_accuracy, m.test_accuracy
        rows = [{"seed": seed, **m.as_dict()} for seed, m in zip(config["seeds"], metrics)]
        history += rows
        result: TrialResult = {"objective": float(np.mean(best)), "epoch": trainers[0].epoch, "rows": replay + rows,
                  "node_id": node_id, "nan": nan, "scores": _scores(config["seeds"], best, best_test)}
        replay = []
        if nan:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            state = {"students": [t.state_dict() for t in trainers], "best": best, "best_test": best_test,
                     "rows": history}
            torch.save(state, Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    if replay:  # restored from a checkpoint of the last epoch: nothing left to train, but the rows must reach
        # the driver, which may have died before writing them
        tune.report({"objective": float(np.mean(best)), "epoch": trainers[0].epoch, "rows": replay,
                     "node_id": node_id, "nan": False, "scores": _scores(config["seeds"], best, best_test)})


def _scores(seeds: list[int], objectives: list[float], tests: list[float]) -> list[list[float]]:
    """[seed, objective, test] per seed, as plain floats (Tune's results are JSON)."""
    return [[int(s), float(o), float(t)] for s, o, t in zip(seeds, objectives, tests)]


class RestoreNewestCheckpoint:
    """Mixed into the trial's Tune trainable: a restore whose checkpoint is gone uses the trial's newest one.

    `kdtune resume` restores Tune's experiment snapshot. When the driver registers a trial's new checkpoint,
    ``CheckpointConfig(num_to_keep=1)`` deletes the previous one at once, and the snapshot that names the new
    one is written only afterwards, so a driver killed in between leaves a snapshot naming a deleted
    checkpoint, and Tune fails the trial on every retry ("does not exist on storage anymore"). The newer
    checkpoint is beside it in the trial's folder; with none there the trial trains again from epoch 0 (the
    same epochs, since each seed fixes its initial weights and batch order).
    """

    def restore(self, checkpoint_result: Any) -> None:
        named = checkpoint_result.checkpoint
        fs = named.filesystem
        if fs.get_file_info(named.path).type != pyarrow.fs.FileType.NotFound:
            super().restore(checkpoint_result)  # type: ignore[misc]
            return
        newest = newest_checkpoint(fs, posixpath.dirname(named.path.rstrip("/")))
        # The driver still tracks the named folder and deletes it once the trial reports a newer checkpoint;
        # an empty stand-in lets it do so (deleting a missing folder raises inside Tune's bookkeeping).
        fs.create_dir(named.path)
        if newest is None:
            logger.warning("trial checkpoint %s is gone and the trial has no other; training it again from epoch 0",
                           named.path)
            return
        logger.warning("trial checkpoint %s is gone; restoring the trial's newest, %s", named.path, newest.path)
        super().restore(type(checkpoint_result)(checkpoint=newest, metrics=checkpoint_result.metrics))  # type: ignore[misc]


def newest_checkpoint(fs: Any, trial_dir: str) -> Any:
    """The ``checkpoint_N`` folder with the largest N in a trial's folder on ``fs``, or None."""
    from ray import tune

    found = fs.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True))
    folders = [f for f in found if f.type == pyarrow.fs.FileType.Directory and CHECKPOINT_DIR.fullmatch(f.base_name)]
    if not folders:
        return None
    newest = max(folders, key=lambda f: int(f.base_name.rsplit("_", 1)[1]))
    return tune.Checkpoint(path=newest.path, filesystem=fs)


run_trial.__mixins__ = (RestoreNewestCheckpoint,)  # type: ignore[attr-defined]  # read by Tune's wrap_function


def _load_checkpoint(checkpoint: Any) -> dict[str, Any] | None:
    """The trial's last checkpoint, or None to start from epoch 0.

    A crash can leave the newest checkpoint torn (processes killed while it was copied). Starting over is
    then safe: each seed fixes its initial weights and batch order, so the epochs are trained again
    identically, and the results writer skips the rows it already has.
    """
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means the same thing: start over
        logger.warning("unreadable trial checkpoint (%s); training this trial again from epoch 0", exc)
        return None


def _students(data: DataBundle, logits: TeacherLogits | None, config: TrialConfig, study: dict[str, Any],
              threads: int, views: Any = None) -> tuple[list[Any], list[float]]:
    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.core.train import student_recipe
    from kdtune.tasks.image.models import build_model

    params = config["params"]
    student = study["student"]
    trainers = []
    for seed in config["seeds"]:
        model = build_model(study["student_arch"][config["condition"]], input_shape=data.input_shape,
                            num_classes=data.num_classes, kwargs=student["kwargs"], field="student.arch", seed=seed)
        train_config = TrainConfig(epochs=int(params["epochs"]), lr=float(params["lr"]),
                                   batch_size=int(params["batch_size"]), alpha=float(params["alpha"]),
                                   temperature=float(params["temperature"]), seed=seed, **student_recipe(student))
        trainers.append(Trainer(model, data, train_config, teacher=logits, views=views, threads=threads))
    return trainers, [-math.inf] * len(trainers)


def _linear_result(data: DataBundle, teacher_weights: np.ndarray, params: dict[str, Any], seeds: list[int],
                   node_id: str) -> TrialResult:
    """The linear task has no epochs: each seed's least-squares student is solved in closed form."""
    from kdtune.tasks.linear.closed_form import fit_student

    rows = []
    for seed in seeds:
        fit = fit_student(data, teacher_weights, float(params["alpha"]), seed)
        rows.append({"seed": seed, "epoch": 1, **fit})
    objective = float(np.mean([r["val_loss"] for r in rows]))
    return {"objective": objective, "epoch": 1, "rows": rows, "node_id": node_id, "nan": not math.isfinite(objective),
            "scores": _scores(seeds, [r["val_loss"] for r in rows], [r["test_excess_mse"] for r in rows])}

