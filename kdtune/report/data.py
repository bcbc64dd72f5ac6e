"""A study folder read for the report: each run scored (:mod:`kdtune.analysis.scoring`), the trials, each trial's
learning curve, and each configuration's runs (:class:`Configuration`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.scoring import ParamsView
from kdtune.analysis.scoring import ScoredRun as Run
from kdtune.analysis.scoring import finite
from kdtune.analysis.scoring import score_runs
from kdtune.tasks import Objective
from kdtune.tasks import Task
from kdtune.tasks import objective_of
from kdtune.tasks import task_for


if TYPE_CHECKING:

    from kdtune.spec.schema import StudySpec


@dataclass
class Configuration(ParamsView):
    """One point of the search space in one condition, with its runs."""

    condition: str
    params: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)

    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.state == "COMPLETE"]

    def mean(self, attr: str = "objective") -> float:
        values = [getattr(r, attr) for r in self.complete() if finite(getattr(r, attr))]
        return sum(values) / len(values) if values else math.nan

    def describe(self) -> str:
        words = [f"alpha {self.alpha:.3g}"]
        if self.temperature is not None and self.alpha != 1.0:
            words.append(f"T {self.temperature:.3g}")
        return ", ".join(words)


@dataclass
class StudyData:
    path: Path
    meta: dict[str, Any]
    spec: StudySpec
    conditions: list[str]
    teachers: dict[str, Any]
    runs: list[Run]
    trials: list[dict[str, Any]]
    running_trials: int
    #: trial id -> (condition, state, phase, [(epoch, mean validation objective over the trial's seeds)])
    curves: dict[str, tuple[str, str, str, list[tuple[int, float]]]] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return task_for(self.spec)

    @property
    def objective(self) -> Objective:
        return self.task.objective(self.spec.objective)

    @property
    def sign(self) -> float:
        return self.objective.sign

    @property
    def objective_label(self) -> str:
        return f"{self.objective.label} (objective)"

    @property
    def finished(self) -> bool:
        return self.meta.get("finished_at") is not None

    def configurations(self, condition: str) -> list[Configuration]:
        configs: dict[tuple[Any, ...], Configuration] = {}
        for run in self.runs:
            if run.condition == condition:
                configs.setdefault(run.params, Configuration(condition, run.params)).runs.append(run)
        return sorted(configs.values(), key=lambda c: (c.alpha, c.temperature or 0.0))

    def best(self, condition: str) -> Configuration | None:
        """The configuration with the best mean objective over its complete runs (ties: larger alpha)."""
        scored = [c for c in self.configurations(condition) if finite(c.mean())]
        if not scored:
            return None
        return max(scored, key=lambda c: (self.sign * c.mean(), c.alpha))

    def no_distillation(self, condition: str) -> Configuration | None:
        """The alpha = 1 baseline (phase ``baseline``) with complete runs."""
        for config in self.configurations(condition):
            runs = [r for r in config.complete() if r.phase == "baseline"]
            if config.alpha == 1.0 and runs:
                return Configuration(condition, config.params, runs)
        return None


def load_study(study_dir: Path) -> StudyData:
    """Read a study folder (finished, or a snapshot of one still running)."""
    from kdtune.records.folder import StudyFolder
    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials

    study_dir = Path(study_dir)
    folder = StudyFolder(study_dir)
    meta = folder.meta()
    spec = folder.spec()
    teachers = folder.teachers()
    rows = read_results(study_dir).to_pylist()
    metric = objective_of(spec)
    runs = score_runs(rows, metric)
    trials = read_trials(study_dir).to_pylist()
    ended = {t["trial_id"] for t in trials}
    running = len({r["trial_id"] for r in rows if r["trial_id"] not in ended})
    return StudyData(path=study_dir, meta=meta, spec=spec, conditions=[c["key"] for c in meta["conditions"]],
                     teachers=teachers, runs=runs, trials=trials, running_trials=running,
                     curves=_curves(rows, metric.column))


def _curves(rows: list[dict[str, Any]], select: str) -> dict[str, tuple[str, str, str, list[tuple[int, float]]]]:
    """Each trial's validation objective per epoch, the mean over its seeds (what ASHA compares at its rungs)."""
    by_epoch: dict[str, dict[int, list[float]]] = {}
    about: dict[str, tuple[str, str, str]] = {}
    for row in rows:
        if finite(row[select]):
            by_epoch.setdefault(row["trial_id"], {}).setdefault(int(row["epoch"]), []).append(float(row[select]))
            about[row["trial_id"]] = (row["condition"], row["trial_state"], row["phase"])
    return {t: (*about[t], [(e, sum(v) / len(v)) for e, v in sorted(epochs.items())]) for t, epochs in by_epoch.items()}
