"""A study folder read for the report: each run scored (:mod:`kdtune.analysis.scoring`), the trials, each trial's
learning curve, each configuration's runs (:class:`Configuration`) and the study's recommendation
(:func:`kdtune.analysis.recommendation.recommend`, the one answer every table and figure shows).

The search's aggregates (configuration means, the best search configuration, the heatmap, the progress) read
the phases ``search`` and ``baseline`` only: confirmation runs, on fresh seeds, are kept apart
(:meth:`StudyData.confirmations`), so that they never mix into a search mean."""

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
from kdtune.errors import MAX_NOTE
from kdtune.errors import one_line
from kdtune.tasks import Objective
from kdtune.tasks import Task
from kdtune.tasks import objective_of
from kdtune.tasks import task_for


if TYPE_CHECKING:

    from kdtune.spec.schema import StudySpec


SEARCH_PHASES = ("search", "baseline")


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

    def param_dict_matches(self, params: dict[str, Any]) -> bool:
        """The same configuration as a recommendation's ``params`` (which leave out parameters that do not apply)."""
        from kdtune.trial_io import SEARCH_PARAMS

        mine = {k: v for k, v in zip(SEARCH_PARAMS, self.params) if v is not None}
        return mine == {k: v for k, v in params.items() if v is not None}

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
    #: trial id -> (condition, state, phase, [(epoch, mean over the trial's seeds of each seed's best so far)])
    curves: dict[str, tuple[str, str, str, list[tuple[int, float]]]] = field(default_factory=dict)
    #: :func:`kdtune.analysis.recommendation.recommend` of this study alone (None: none yet, ``recommendation_note``
    #: says why)
    recommendation: dict[str, Any] | None = None
    recommendation_note: str | None = None

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

    def configurations(self, condition: str, phases: tuple[str, ...] = SEARCH_PHASES) -> list[Configuration]:
        """The condition's configurations with their runs of ``phases`` (default: the search's, never the
        confirmation's)."""
        configs: dict[tuple[Any, ...], Configuration] = {}
        for run in self.runs:
            if run.condition == condition and run.phase in phases:
                configs.setdefault(run.params, Configuration(condition, run.params)).runs.append(run)
        return sorted(configs.values(), key=lambda c: (c.alpha, c.temperature or 0.0))

    def confirmations(self, condition: str) -> list[Configuration]:
        """The configurations re-run on fresh seeds (phase ``confirm``), with those runs only."""
        return self.configurations(condition, ("confirm",))

    def search_runs(self, condition: str) -> list[Run]:
        return [r for r in self.runs if r.condition == condition and r.phase in SEARCH_PHASES]

    def best(self, condition: str) -> Configuration | None:
        """The search configuration with the best mean objective over its complete search runs (ties: larger
        alpha)."""
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

    def entry(self, condition: str) -> dict[str, Any] | None:
        """The condition's entry of the recommendation (``docs/recommendation_schema.md``)."""
        for entry in (self.recommendation or {}).get("conditions", []):
            if entry["key"] == condition:
                return dict(entry)
        return None

    def compared(self, condition: str) -> tuple[Configuration, Configuration, str] | None:
        """The two configurations the condition's gain compares, with the runs it is measured on: the distilled
        configuration and alpha = 1, on their confirmation runs (fresh paired seeds) when the verdict is
        confirmed, else on their search runs, or on the transfer check's full-fidelity runs in a study that searched
        cheap; and that source (``confirm``, ``search`` or ``transfer``). None without a gain."""
        entry = self.entry(condition) or {}
        gain, base = entry.get("gain") or {}, entry.get("no_distillation") or {}
        if gain.get("params") is None or base.get("params") is None:
            return None
        source = gain_source(entry)
        configs = self.configurations(condition, {"confirm": ("confirm",), "transfer": ("transfer",)}.get(
            source, SEARCH_PHASES))
        distilled = next((c for c in configs if c.param_dict_matches(gain["params"]) and c.complete()), None)
        alone = next((c for c in configs if c.param_dict_matches(base["params"]) and c.complete()), None)
        return None if distilled is None or alone is None else (distilled, alone, source)


def gain_source(entry: dict[str, Any]) -> str:
    """Whose runs a condition's gain is measured on: ``confirm``, ``search``, or ``transfer`` where the search ran
    cheap and nothing was confirmed (the transfer check's full-fidelity runs, never the cheap ones)."""
    return str((entry.get("gain") or {}).get("source"))


def load_study(study_dir: Path) -> StudyData:
    """Read a study folder (finished, or a snapshot of one still running) and its recommendation."""
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
    recommendation, note = _recommendation(study_dir)
    return StudyData(path=study_dir, meta=meta, spec=spec, conditions=[c["key"] for c in meta["conditions"]],
                     teachers=teachers, runs=runs, trials=trials, running_trials=running,
                     curves=_curves(rows, metric.column, metric.mode), recommendation=recommendation,
                     recommendation_note=note)


def _recommendation(study_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`kdtune.analysis.recommendation.recommend` on this study alone, or a note why there is none."""
    from kdtune.analysis.recommendation import recommend
    from kdtune.errors import KdtuneError

    try:
        return recommend([study_dir]), None
    except KdtuneError as exc:
        return None, f"No recommendation yet: {exc}"
    except Exception as exc:  # the report stands without verdicts
        return None, (f"No recommendation: kdtune.analysis.recommendation failed ({type(exc).__name__}: "
                      f"{one_line(exc, MAX_NOTE)})")


def _curves(rows: list[dict[str, Any]], select: str, mode: str) -> dict[str, tuple[str, str, str, list[tuple[int, float]]]]:
    """Each trial's validation objective per epoch as ASHA compares it: the mean over its seeds of each seed's
    best so far (in the objective's direction)."""
    by_seed: dict[str, dict[int, list[tuple[int, float]]]] = {}
    about: dict[str, tuple[str, str, str]] = {}
    for row in rows:
        if finite(row[select]):
            by_seed.setdefault(row["trial_id"], {}).setdefault(int(row["seed"]), []).append(
                (int(row["epoch"]), float(row[select])))
            about[row["trial_id"]] = (row["condition"], row["trial_state"], row["phase"])
    better = max if mode == "max" else min
    curves = {}
    for trial_id, seeds in by_seed.items():
        running: dict[int, list[float]] = {}
        for points in seeds.values():
            best = None
            for epoch, value in sorted(points):
                best = value if best is None else better(best, value)
                running.setdefault(epoch, []).append(best)
        # epochs every seed reached (a seed's rows may still be arriving in a running study)
        full = [(e, sum(v) / len(v)) for e, v in sorted(running.items()) if len(v) == len(seeds)]
        curves[trial_id] = (*about[trial_id], full)
    return curves
