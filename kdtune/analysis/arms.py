"""Study folders read into arms: each condition's configurations with their scored runs, pooled over studies.

The recommendation (:mod:`kdtune.analysis.recommendation`) and the study's confirmation step judge arms; this
module owns how they are made from ``results.parquet``, ``trials.parquet``, ``study.json`` and
``teachers.json``, and when several study folders may be pooled into one set of arms (same experiment, no
shared student seeds). No statistics here beyond scoring each run at its best validation epoch.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from kdtune.analysis.scoring import Metric
from kdtune.analysis.scoring import ScoredRun
from kdtune.analysis.scoring import score_runs
from kdtune.analysis.scoring import t_estimate
from kdtune.analysis.verdicts import ConfirmedArm
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.spec.conditions import Condition
from kdtune.trial_io import SEARCH_PARAMS


#: Spec sections that must agree for studies to be pooled. ``dataset.data_root`` and ``dataset.download``
#: only say where the same files are, so they may differ; ``budget`` (seeds, repeats) may differ too.
POOL_SECTIONS = ("dataset", "teacher", "student", "search", "objective", "default_temperature")
_LOCATION_FIELDS = ("data_root", "download")


@dataclass(frozen=True)
class Run:
    """One seed of one COMPLETE trial, scored at its best validation epoch."""

    trial_id: str
    phase: str
    seed: tuple[str, int]  # (study label, student seed): seeds of different studies are different runs
    objective: float
    test: float


@dataclass
class Arm:
    """One configuration of a condition with all its runs, over trials, phases and pooled studies."""

    params: dict[str, Any]
    trial_ids: list[str] = field(default_factory=list)
    phases: set[str] = field(default_factory=set)
    search: dict[tuple[str, int], Run] = field(default_factory=dict)  # phases search and baseline
    confirm: dict[tuple[str, int], Run] = field(default_factory=dict)
    locate: dict[tuple[str, int], Run] = field(default_factory=dict)  # the locate stage (kdtune.analysis.locate)
    transfer: dict[tuple[str, int], Run] = field(default_factory=dict)  # full-fidelity reruns (kdtune.analysis.transfer)

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"])

    def summary(self, group: str) -> dict[str, Any]:
        """Params, trial ids, and validation and test t-estimates over the runs of ``group``."""
        runs = list(runs_of(self, group).values())
        return {"params": self.params, "trial_ids": sorted(self.trial_ids), "source": group,
                "validation": t_estimate(r.objective for r in runs), "test": t_estimate(r.test for r in runs)}

    def confirmed(self) -> ConfirmedArm:
        return ConfirmedArm(params=self.params, runs={s: (r.objective, r.test) for s, r in self.confirm.items()})


@dataclass
class Study:
    """One study folder, read."""

    path: Path
    label: str
    meta: dict[str, Any]
    teachers: dict[str, Any]
    conditions: dict[str, dict[str, Any]]  # identity -> condition dict (with its key)
    arms: dict[str, dict[tuple[Any, ...], Arm]]  # identity -> configuration -> arm
    states: dict[str, Counter[str]]  # identity -> trial states



# ------------------------------------------------------------------------------------------------ reading

def read_spec(path: Path) -> Any:
    """The study's spec (a :class:`~kdtune.spec.schema.StudySpec`), as its folder saved it."""
    return StudyFolder(path).spec()


def study_label(index: int, study_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """A study's name in seed keys and prefixed trial ids: its folder name, numbered when two agree."""
    names = [Path(d).resolve().name for d in study_dirs]
    return names[index] if names.count(names[index]) == 1 else f"{names[index]}#{index + 1}"


def read_study(path: Path, metric: Metric, *, label: str) -> Study:
    from kdtune.records.results import read_results

    folder = StudyFolder(path)
    meta = folder.meta()
    conditions = {_identity(c): c for c in meta.get("conditions", [])}
    by_key = {c["key"]: ident for ident, c in conditions.items()}
    columns = ["condition", "trial_id", "phase", *SEARCH_PARAMS, "seed", "epoch", metric.column, metric.test_column,
               "trial_state"]
    table = [r for r in read_results(path).select(columns).to_pylist() if r["condition"] in by_key]
    complete = [r for r in table if r["trial_state"] == "COMPLETE"]
    if not complete:
        raise StudyError(f"{path}: no completed trials yet (nothing to recommend from)")
    arms: dict[str, dict[tuple[Any, ...], Arm]] = {ident: {} for ident in conditions}
    for run in score_runs(complete, metric):
        add_run(arms[by_key[run.condition]], run, label)
    teachers = folder.teachers()
    return Study(path=path, label=label, meta=meta, teachers=teachers, conditions=conditions, arms=arms,
                 states=_trial_states(path, table, by_key))


def add_run(arms: dict[tuple[Any, ...], Arm], run: ScoredRun, label: str) -> None:
    """File one scored run of study ``label`` into its configuration's arm (made on first sight): the one way
    runs become arms, for study folders here and for the simulated studies of
    ``benchmarks/calibration_sim.py``."""
    arm = arms.setdefault(run.params, Arm(params=run.param_dict()))
    if run.trial_id not in arm.trial_ids:
        arm.trial_ids.append(run.trial_id)
    arm.phases.add(run.phase)
    scored = Run(trial_id=run.trial_id, phase=run.phase, seed=(label, run.seed), objective=run.objective, test=run.test)
    runs_of(arm, run.phase)[scored.seed] = scored


def runs_of(arm: Arm, phase: str) -> dict[tuple[str, int], Run]:
    """Where an arm keeps its runs of ``phase``: confirmation, locate and transfer runs apart, search and baselines
    together."""
    return {"confirm": arm.confirm, "locate": arm.locate, "transfer": arm.transfer}.get(phase, arm.search)


def _trial_states(path: Path, table: list[dict[str, Any]], by_key: dict[str, str]) -> dict[str, Counter[str]]:
    """Ended trials per state (``trials.parquet``: also those that wrote no rows), plus never-ended ones."""
    from kdtune.records.results import read_trials

    states: dict[str, Counter[str]] = {ident: Counter() for ident in by_key.values()}
    for trial in read_trials(path).select(["condition", "state"]).to_pylist():
        if trial["condition"] in by_key:
            states[by_key[trial["condition"]]][trial["state"]] += 1
    for condition, _ in {(r["condition"], r["trial_id"]) for r in table if r["trial_state"] == "RUNNING"}:
        states[by_key[condition]]["RUNNING"] += 1
    return states


def _identity(condition: dict[str, Any]) -> str:
    """A condition's identity for pooling: its axes, not its key (a key names only the varying axes)."""
    return json.dumps({k: v for k, v in condition.items() if k != "key"}, sort_keys=True)


# ------------------------------------------------------------------------------------------------ pooling

def check_poolable(studies: list[Study]) -> None:
    """Refuse, naming the first difference, studies whose runs are not of the same experiment, or that repeat
    each other's runs (the same student seeds on the same data and teacher: pseudo-replication)."""
    first = studies[0]
    for other in studies[1:]:
        pair = f"cannot pool {first.path} and {other.path}"
        for section in POOL_SECTIONS:
            a, b = (_pool_view(s.meta["spec"].get(section)) for s in (first, other))
            difference = _first_difference(a, b, f"spec.{section}")
            if difference is not None:
                where, va, vb = difference
                raise UsageError(f"{pair}: {where} differs ({va!r} vs {vb!r})")
        only = set(first.conditions) ^ set(other.conditions)
        if only:
            ident = sorted(only)[0]
            holder = first if ident in first.conditions else other
            raise UsageError(f"{pair}: condition {holder.conditions[ident]['key']} ({ident}) "
                             f"is only in {holder.path}")
    for i, a in enumerate(studies):
        for b in studies[i + 1:]:
            shared = sorted(_student_seeds(a) & _student_seeds(b))
            if shared:
                listed = ", ".join(map(str, shared[:5])) + (", ..." if len(shared) > 5 else "")
                raise UsageError(f"cannot pool {a.path} and {b.path}: they share student seeds {listed}, so their "
                                 "runs repeat each other (the same initialisation and batch order on the same data "
                                 "and teacher); give each study its own budget.seed")


def _pool_view(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: v for k, v in section.items() if k not in _LOCATION_FIELDS}
    return section


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found is not None:
                return found
        return None
    return None if a == b else (where, a, b)


def _student_seeds(study: Study) -> set[int]:
    return {seed for arms in study.arms.values() for arm in arms.values()
            for _, seed in (*arm.search, *arm.confirm, *arm.locate, *arm.transfer)}


def pooled_arms(identity: str, studies: list[Study]) -> dict[tuple[Any, ...], Arm]:
    """Every study's arms of this condition merged per configuration (trial ids prefixed when pooling)."""
    merged: dict[tuple[Any, ...], Arm] = {}
    for study in studies:
        prefix = f"{study.label}/" if len(studies) > 1 else ""
        for key, arm in study.arms[identity].items():
            into = merged.setdefault(key, Arm(params=dict(arm.params)))
            into.trial_ids += [prefix + t for t in arm.trial_ids]
            into.phases |= arm.phases
            into.search.update(arm.search)
            into.confirm.update(arm.confirm)
            into.locate.update(arm.locate)
            into.transfer.update(arm.transfer)
    return merged


def condition_info(identity: str, studies: list[Study]) -> dict[str, Any]:
    """What a condition's entry says besides its runs: axes, trial states, teacher, closed form."""
    condition = studies[0].conditions[identity]
    states: Counter[str] = sum((s.states[identity] for s in studies), Counter())
    return {
        "key": condition["key"], "condition": condition, "description": _describe(condition),
        "trials": {"complete": states["COMPLETE"], "pruned": states["PRUNED"], "failed": states["FAIL"],
                   "unfinished": states["RUNNING"]},
        "cut_short": any(s.meta.get("cut_short", False) for s in studies),
        "unfinished_studies": [s.label for s in studies if s.meta.get("finished_at") is None],
        "teacher": _teacher(identity, studies), "closed_form": _closed_form(identity, studies),
    }


def _describe(condition: dict[str, Any]) -> str:
    if condition["dataset"] == "linear":
        return (f"linear task, teacher error B = {condition['teacher_error']:g} "
                f"(teacher seed {condition['teacher_seed']})")
    return Condition(**condition).describe()


def _teacher(identity: str, studies: list[Study]) -> dict[str, Any] | None:
    """The teacher's diagnostics (from the first study holding them: pooled studies share the teacher)."""
    for study in studies:
        condition = study.conditions[identity]
        info = study.teachers.get(condition["key"])
        if info is not None:
            d = info.get("diagnostics") or {}
            keys = ("test_accuracy", "val_accuracy", "correction_rate", "memorisation_rate", "ece", "test_loss",
                    "val_loss", "test_perplexity", "val_perplexity")
            return {**{k: d.get(k) for k in keys}, "selected_epoch": info.get("selected_epoch"),
                    "select": condition["teacher_select"], "cache_key": info.get("cache_key")}
    return None


def _closed_form(identity: str, studies: list[Study]) -> dict[str, float] | None:
    """The linear task's B, V and α* as the study engine recorded them in ``teachers.json``."""
    for study in studies:
        info = study.teachers.get(study.conditions[identity]["key"]) or {}
        linear = info.get("linear") or (info.get("diagnostics") or {}).get("linear")
        if linear:
            return {k: float(linear[k]) for k in ("B", "V", "alpha_star")}
    return None
