"""Driver-side Tune callbacks: record results as they arrive, and show progress (a live table on a terminal,
plain lines in a log).

Both pickle without their open state (Tune saves them in its experiment checkpoint and gives them back on
``kdtune resume``): the writers reopen the study folder's tables, which also tells them which rows exist, in
the folder being resumed (:func:`kdtune.records.folder.running_study`), not in the one Tune saved them from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from ray.tune import Callback

from kdtune.records.progress_lines import best_line
from kdtune.records.progress_lines import confirmation_line
from kdtune.records.progress_lines import locate_line
from kdtune.records.progress_lines import shortfall_lines
from kdtune.records.progress_lines import summary_line
from kdtune.records.progress_lines import transfer_line
from kdtune.records.progress_lines import trial_line
from kdtune.records.status import TrialView
from kdtune.records.status import render
from kdtune.records.status import summarise
from kdtune.records.status import teacher_summaries
from kdtune.spec.rules import confirmation_rounds
from kdtune.spec.rules import epochs_by_phase
from kdtune.spec.rules import trial_budget
from kdtune.spec.rules import trial_outcome
from kdtune.spec.workload import workload
from kdtune.tasks import task_for
from kdtune.trial_io import config_of
from kdtune.trial_io import last_result_of


if TYPE_CHECKING:
    from ray.tune.experiment import Trial
    from ray.tune.stopper import Stopper

    from kdtune.records.results import PartWriter
    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec

FLUSH_SECONDS = 2.0
SUMMARY_SECONDS = 30.0  # at most one progress summary line per this many seconds in a log


class ResultsRecorder(Callback):
    """Writes every reported epoch to ``results.parquet`` and every ended trial to ``trials.parquet``.

    Rows are buffered for at most ``FLUSH_SECONDS``, so a driver crash loses at most the epochs in flight.
    """

    def __init__(self, study_dir: Path, spec: StudySpec, conditions: list[Condition]) -> None:
        self.study_dir = Path(study_dir)
        self.study_name = spec.name
        self.epochs = epochs_by_phase(spec)
        self.conditions = {c.key: c.as_dict() for c in conditions}
        self.restarts: dict[str, int] = {}
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = 0.0
        self._results: PartWriter | None = None
        self._trials: PartWriter | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_buffer": [], "_results": None, "_trials": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from kdtune.records.folder import running_study

        self.__dict__.update(state)
        self.study_dir = running_study(self.study_dir)  # Tune saved the folder's path of the time: it may have moved

    def _writers(self) -> tuple[PartWriter, PartWriter]:
        from kdtune.records.results import results_writer
        from kdtune.records.results import trials_writer

        if self._results is None or self._trials is None:
            self._results, self._trials = results_writer(self.study_dir), trials_writer(self.study_dir)
        return self._results, self._trials

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[Any, Any],
                        **info: Any) -> None:
        """``result`` is what the trial reported (a :class:`kdtune.trial_io.TrialResult`), plus Tune's own keys."""
        config = config_of(trial)
        condition = self.conditions[config["condition"]]
        common = {"study": self.study_name, "condition": config["condition"], **condition,
                  "trial_id": trial.trial_id, "phase": config["phase"], **config["params"],
                  "node_id": result.get("node_id"), "attempt": self.restarts.get(trial.trial_id, 0),
                  "written_at": time.time()}
        self._buffer += [{**common, **row} for row in result.get("rows", [])]
        if time.time() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.restarts[trial.trial_id] = self.restarts.get(trial.trial_id, 0) + 1

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record_end(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record_end(trial, error=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Tune's loop ended, finished or interrupted: write what is buffered. Whether the study finished is
        the driver's to say (``kdtune.study.driver``): the trials that exist here may all have ended when a
        signal stopped the search before its next trial."""
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._writers()[0].append(self._buffer)
            self._buffer = []
        self._last_flush = time.time()

    def _record_end(self, trial: Trial, *, error: bool) -> None:
        import json

        self.flush()
        result = last_result_of(trial)
        state, reason = trial_outcome(result, error, self.epochs[config_of(trial)["phase"]])
        if error and trial.error_file:
            reason = _last_line(Path(trial.error_file)) or reason
        self._writers()[1].append([{
            "trial_id": trial.trial_id, "condition": config_of(trial)["condition"], "phase": config_of(trial)["phase"],
            "params": json.dumps(config_of(trial)["params"], sort_keys=True), "state": state,
            "objective": result.get("objective"), "epochs_done": result.get("epoch", 0),
            "restarts": self.restarts.get(trial.trial_id, 0), "node_id": result.get("node_id"), "error": reason,
            "ended_at": time.time(), "seconds": result.get("time_total_s"),
        }])


class Progress(Callback):
    """The study's progress, chosen when Tune starts (so a resumed study follows its new output): on a terminal a
    live table on stderr (per condition and phase: trials ended of those planned, complete / pruned / failed /
    running, best objective, time left); in a file or a pipe plain lines on stdout
    (:mod:`kdtune.records.progress_lines`), one per ended trial, one per confirmation round begun, a summary at
    most every ``SUMMARY_SECONDS``, and at the end why fewer trials ran than planned, if they did. Either way a
    confirmation round begun is said in a line: it adds trials the search did not announce."""

    def __init__(self, spec: StudySpec, conditions: list[str], teachers: dict[str, Any], *,
                 planned: tuple[float, float] | None = None) -> None:
        self.conditions = conditions
        self.planned = planned  # the plan's wall seconds per seed-epoch and per report (time_left's start)
        self.teachers = teacher_summaries(teachers)
        self.budget = trial_budget(spec)
        self.confirm_rounds = confirmation_rounds(spec)
        # each condition's confirmation rounds begun, by their first seed (a round has its own fresh seeds)
        self.rounds_begun: dict[str, list[int]] = {}
        self.locating: set[str] = set()  # conditions whose locate stage has begun
        self.transferring: set[str] = set()  # conditions whose transfer check has begun
        self.max_wall_s = None if spec.budget.max_wall_minutes is None else 60.0 * spec.budget.max_wall_minutes
        self.mode = spec.mode
        self.epochs = task_for(spec).epochs(spec)
        self.phase_epochs = epochs_by_phase(spec)
        self.work = workload(spec, epochs=self.epochs, asha=task_for(spec).by_epochs)
        self.repeats = spec.budget.repeats
        self.searched = list(spec.search)
        self.title = spec.name
        self.objective = spec.objective_name
        self._start = time.time()
        self._last = 0.0
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_live": None}

    def setup(self, stop: Stopper | None = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        import sys

        self._start = self._last = time.time()
        if sys.stdout.isatty() and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            self._live = Live(console=console, refresh_per_second=2, transient=False)
            self._live.start()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self._live is not None and time.time() - self._last > 1.0:
            self._last = time.time()
            self._live.update(render(self._summary(trials)))
        elif self._live is None and time.time() - self._last >= SUMMARY_SECONDS:
            self._last = time.time()
            _emit(summary_line(self._summary(trials)))

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """The first trial of a confirmation round (a condition's rounds run one after another), or of a condition's
        transfer check or locate stage, says it begins."""
        config = config_of(trial)
        seeds = list(config.get("seeds", ()))
        if config["phase"] == "transfer" and config["condition"] not in self.transferring:
            self.transferring.add(config["condition"])
            self._say(transfer_line(config["condition"], len(seeds)))
            return
        if config["phase"] == "locate" and config["condition"] not in self.locating:
            self.locating.add(config["condition"])
            self._say(locate_line(config["condition"], config["params"], len(seeds)))
            return
        begun = self.rounds_begun.setdefault(config["condition"], [])
        if config["phase"] != "confirm" or not seeds or seeds[0] in begun:
            return
        begun.append(seeds[0])
        rounds = max(self.confirm_rounds, len(begun))  # more when `kdtune resume` extends the confirmation
        self._say(confirmation_line(config["condition"], len(begun) - 1, rounds, seeds))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._trial_line(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._trial_line(trial, error=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        from kdtune.study.interrupts import received

        done = received() is None and all(t.status in ("TERMINATED", "ERROR") for t in trials)  # else interrupted
        summary = self._summary(trials, finished=done)
        if self._live is None:
            for line in [*shortfall_lines(summary), summary_line(summary), best_line(summary)]:
                _emit(line)
            return
        self._live.update(render(summary))
        self._live.stop()
        for line in shortfall_lines(summary):
            self._live.console.print(line, highlight=False)
        self._live.console.print()

    def _say(self, line: str) -> None:
        """A line above the live table on a terminal, a line of the log otherwise."""
        if self._live is not None:
            self._live.console.print(line, highlight=False)
        else:
            _emit(line)

    def _trial_line(self, trial: Trial, *, error: bool) -> None:
        if self._live is not None:
            return  # the table shows it
        result = last_result_of(trial)
        config = config_of(trial)
        epochs = self.phase_epochs[config["phase"]]
        state, _ = trial_outcome(result, error, epochs)
        phase = f"cheap {config['phase']}" if config.get("fidelity") else config["phase"]
        _emit(trial_line(config["condition"], config["params"], self.searched, phase,
                         state, result.get("objective"), self.objective, (int(result.get("epoch", 0)), epochs)))

    def _summary(self, trials: list[Trial], *, finished: bool = False) -> dict[str, Any]:
        views = []
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR"):
                state, _ = trial_outcome(last_result_of(trial), trial.status == "ERROR",
                                         self.phase_epochs[config_of(trial)["phase"]])
            else:
                state = "RUNNING" if trial.status == "RUNNING" else "PENDING"
            config = config_of(trial)
            seeds = tuple(config.get("seeds", ()))
            views.append(TrialView(config["condition"], config["phase"], state, last_result_of(trial).get("objective"),
                                   seeds if config["phase"] == "confirm" else (),
                                   int(last_result_of(trial).get("epoch", 0)), len(seeds)))
        elapsed = time.time() - self._start
        summary = summarise(views, conditions=self.conditions, budget=self.budget, confirm_rounds=self.confirm_rounds,
                            mode=self.mode, elapsed=elapsed, finished=finished, work=self.work, repeats=self.repeats,
                            planned=self.planned)
        summary.update(study=self.title, objective=self.objective,
                       cut_short=self.max_wall_s is not None and elapsed >= self.max_wall_s)
        for row in summary["conditions"]:
            row["teacher"] = self.teachers.get(row["condition"])
        return summary


def _emit(line: str) -> None:
    print(line, flush=True)


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:500] if lines else None
