"""What runs inside one Ray Tune trial: one configuration, all its repeat seeds, in lockstep.

The seeds of a configuration are trained one epoch at a time each, so that after every epoch the trial
reports the mean over seeds of the objective, the number ASHA and Optuna decide on (``docs/architecture.md``).
The trial keeps Tune's side (reports, checkpoints, the running best in the objective's direction); the study's
task (:mod:`kdtune.tasks`) builds and trains the students, and says how many epochs a run has (the linear
task: one closed-form step, never checkpointed).
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
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import torch

from kdtune.trial_io import TrialConfig
from kdtune.trial_io import TrialResult


logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "students.pt"
CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")  # Tune's names for a trial's checkpoint folders


def run_trial(config: TrialConfig, *, payloads: dict[str, Any], study: dict[str, Any]) -> None:
    """The Tune function trainable. ``study`` holds the task's name and the objective, the student section,
    each condition's student architecture and kwargs (its size's merged in) and the trial resources
    (``kdtune.study.driver``)."""
    import ray
    from ray import tune

    from kdtune.tasks import TASKS

    threads = max(1, int(study["cpus_per_trial"]))
    torch.set_num_threads(threads)
    task = TASKS[study["task"]]
    objective = task.objective(study["objective"])
    payload = ray.get(payloads[config["condition"]])
    node_id = ray.get_runtime_context().get_node_id()
    student = {**study["student"], **study["students"][config["condition"]]}  # the condition's arch and kwargs
    params, student = cheapened(task, config["params"], student, config.get("fidelity"))
    runs = task.train_seeds(payload, params, config["seeds"], student=student, arch=student["arch"], threads=threads)
    best = [objective.worst] * len(config["seeds"])  # each seed's objective at its best validation epoch so far
    best_test = [math.nan] * len(best)  # the test metric at that epoch
    history: list[dict[str, Any]] = []  # every row so far: replayed after a restore (the driver de-duplicates)
    replay: list[dict[str, Any]] = []
    state = _load_checkpoint(tune.get_checkpoint())
    if state is not None:
        runs.load_state(state["students"])
        best, history = state["best"], state["rows"]
        best_test = state.get("best_test", best_test)
        replay = list(history)  # rows the driver may have lost if it crashed before writing them
    epochs = int(params["epochs"])
    while runs.epoch < epochs:
        rows = [{"seed": seed, **row} for seed, row in zip(config["seeds"], runs.step())]
        for i, row in enumerate(rows):
            if objective.better(row[objective.column], best[i]):  # the earliest best epoch on ties
                best[i], best_test[i] = row[objective.column], row[objective.test_column]
        nan = any(_diverged(row, objective.column) for row in rows)
        history += rows
        result: TrialResult = {"objective": float(np.mean(best)), "epoch": runs.epoch, "rows": replay + rows,
                               "node_id": node_id, "nan": nan, "scores": _scores(config["seeds"], best, best_test)}
        replay = []
        students = runs.state()
        if nan or students is None:  # a diverged trial ends here; a one-step run has nothing to continue
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            state = {"students": students, "best": best, "best_test": best_test, "rows": history}
            torch.save(state, Path(folder) / CHECKPOINT_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
    if replay:  # restored from a checkpoint of the last epoch: nothing left to train, but the rows must reach
        # the driver, which may have died before writing them
        tune.report({"objective": float(np.mean(best)), "epoch": runs.epoch, "rows": replay,
                     "node_id": node_id, "nan": False, "scores": _scores(config["seeds"], best, best_test)})


def cheapened(task: Any, params: dict[str, Any], student: dict[str, Any],
              fidelity: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The configuration and student a trial trains: as handed out at full fidelity; in a cheap search
    (:mod:`kdtune.spec.fidelity`) with its epochs and share of the data, and its other or narrower student."""
    if not fidelity:
        return params, student
    params = {**params, "epochs": fidelity["epochs"], "data_fraction": fidelity["data_fraction"]}
    if fidelity["student"] is not None:
        student = {**student, "arch": fidelity["student"], "kwargs": dict(fidelity["student_kwargs"])}
    if fidelity["width_factor"] is not None:
        student = {**student, "kwargs": task.narrower(student["arch"], dict(student["kwargs"]), fidelity["width_factor"])}
    return params, student


def _diverged(row: dict[str, Any], column: str) -> bool:
    """A run's loss or objective is NaN or infinite: the trial stops (recorded as FAIL, not retried)."""
    return not all(math.isfinite(float(row[c])) for c in ("train_loss", column) if c in row)


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
