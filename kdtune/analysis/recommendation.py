"""The recommendation: per condition, the alpha (and T) to use, how sure we are, and whether distilling pays.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 − alpha).

Reads only study folders (``study.json``, ``teachers.json``, ``results.parquet``, ``trials.parquet``) and
returns a JSON-ready dict whose schema ``docs/recommendation_schema.md`` documents (``SCHEMA_VERSION``).
No Ray, no Optuna, no W&B, no torch. The method, in short (the schema document has the details):

* runs are scored at their best validation epoch (:mod:`kdtune.analysis.scoring`); only COMPLETE trials count;
* the recommended alpha and T come from a smooth surface fitted to the search's configurations, with a
  parametric-bootstrap interval and the near-optimal range (:mod:`kdtune.analysis.alpha_fit`);
* verdicts (distil / hurts / no gain / inconclusive) come from confirmation runs only: the recommended
  configuration and alpha = 1 re-run on fresh paired seeds, judged with a repeated confidence interval that
  stays valid under adaptive confirmation and is Bonferroni-adjusted over the conditions
  (:mod:`kdtune.analysis.verdicts`, :mod:`kdtune.analysis.sequential`). Without them the verdict is ``unconfirmed`` and the
  search's own gain is shown as optimistic.

Every interval covers student-seed noise only: the data draw, the teacher and the validation set are fixed
inside a study.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from kdtune.analysis.alpha_fit import Fit
from kdtune.analysis.alpha_fit import Point
from kdtune.analysis.alpha_fit import fit_alpha
from kdtune.analysis.scoring import CONFIDENCE
from kdtune.analysis.scoring import METRICS
from kdtune.analysis.scoring import Metric
from kdtune.analysis.scoring import finite
from kdtune.analysis.scoring import score_runs
from kdtune.analysis.scoring import t_estimate
from kdtune.analysis.sequential import Design
from kdtune.analysis.sequential import seeds_to_resolve
from kdtune.analysis.verdicts import FAMILY_CONFIDENCE
from kdtune.analysis.verdicts import ConfirmedArm
from kdtune.analysis.verdicts import confirm
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write
from kdtune.spec.conditions import Condition
from kdtune.trial_io import SEARCH_PARAMS


SCHEMA_VERSION = 2
OUTPUT = "recommendation.json"
MEMORISATION_WARNING = 0.25  # share of flipped training labels the teacher predicts as the noisy label
#: Near-optimal tolerance on the validation objective where no margin applies (the linear task): 1% of it.
RELATIVE_TOLERANCE = 0.01
#: Spec sections that must agree for studies to be pooled. ``dataset.data_root`` and ``dataset.download``
#: only say where the same files are, so they may differ; ``budget`` (seeds, repeats) may differ too.
POOL_SECTIONS = ("dataset", "teacher", "student", "search", "objective", "default_temperature")
_LOCATION_FIELDS = ("data_root", "download")
SEARCH_PHASES = ("search", "baseline")


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

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"])

    def summary(self, group: str) -> dict[str, Any]:
        """Params, trial ids, and validation and test t-estimates over the runs of ``group``."""
        runs = list((self.confirm if group == "confirm" else self.search).values())
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


@dataclass(frozen=True)
class Context:
    """What every condition of one recommendation shares."""

    spec: Any  # the first study's StudySpec
    metric: Metric
    margin: float | None  # equivalence margin as a fraction of the test metric (None: no "no gain" verdict)
    design: Design
    conditions: int


# ------------------------------------------------------------------------------------------- entry points

def recommend(study_dirs: Sequence[str | os.PathLike[str]], *, margin: float | None = None) -> dict[str, Any]:
    """The recommendation for one study folder, or for several pooled per condition (see the module doc).

    ``margin`` (points of test accuracy) overrides the spec's ``recommend.margin``.
    """
    if not study_dirs:
        raise UsageError("recommend needs at least one study folder")
    spec = _read_spec(Path(study_dirs[0]))
    metric = METRICS[spec.objective_name]
    studies = [_read_study(Path(d), metric, label=_label(i, study_dirs)) for i, d in enumerate(study_dirs)]
    _check_poolable(studies)
    context = Context(spec=spec, metric=metric, margin=_margin(spec, margin), design=_design(studies),
                      conditions=len(studies[0].conditions))
    conditions = [recommend_condition(_pooled_arms(identity, studies), context, _info(identity, studies))
                  for identity in studies[0].conditions]
    return {
        "schema_version": SCHEMA_VERSION,
        "kdtune_version": _version(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "studies": [_study_summary(s) for s in studies],
        "objective": spec.objective_name,
        "mode": metric.mode,
        "test_metric": metric.test_column,
        "margin": context.margin,
        "method": _method(context),
        "conditions": conditions,
        "notes": [],
    }


def default_output(study_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """``recommendation.json`` inside the (first) study folder."""
    return Path(study_dirs[0]) / OUTPUT


def write_recommendation(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON under a temporary name, then rename (a reader never sees half a file)."""
    return atomic_write(path, json.dumps(report, indent=2) + "\n", mode=None)


def _margin(spec: Any, points: float | None) -> float | None:
    if points is None:
        return spec.margin
    if not (math.isfinite(points) and 0 < points <= 100):
        raise UsageError(f"--margin = {points!r}: must be a number of points of test accuracy in (0, 100]")
    if spec.task == "regression":
        raise UsageError(f"--margin = {points!r}: is in points of test accuracy; the linear task's test metric "
                         "(excess MSE) has no such unit")
    return points / 100


def _design(studies: list[Study]) -> Design:
    """The confirmation looks: each study's rounds; pooled studies add their seeds look by look."""
    from kdtune.spec.schema import StudySpec

    budgets = [StudySpec.model_validate(s.meta["spec"]).budget for s in studies]
    return Design(round_size=sum(b.confirm_repeats for b in budgets),
                  max_n=sum(b.confirm_max_repeats for b in budgets))


# ------------------------------------------------------------------------------------------------ reading

def _read_spec(path: Path) -> Any:
    return StudyFolder(path).spec()


def _label(index: int, study_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """A study's name in seed keys and prefixed trial ids: its folder name, numbered when two agree."""
    names = [Path(d).resolve().name for d in study_dirs]
    return names[index] if names.count(names[index]) == 1 else f"{names[index]}#{index + 1}"


def _read_study(path: Path, metric: Metric, *, label: str) -> Study:
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
        arm = arms[by_key[run.condition]].setdefault(run.params, Arm(params=run.param_dict()))
        if run.trial_id not in arm.trial_ids:
            arm.trial_ids.append(run.trial_id)
        arm.phases.add(run.phase)
        scored = Run(trial_id=run.trial_id, phase=run.phase, seed=(label, run.seed), objective=run.objective,
                     test=run.test)
        (arm.confirm if run.phase == "confirm" else arm.search)[scored.seed] = scored
    teachers = folder.teachers()
    return Study(path=path, label=label, meta=meta, teachers=teachers, conditions=conditions, arms=arms,
                 states=_trial_states(path, table, by_key))


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

def _check_poolable(studies: list[Study]) -> None:
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
            for _, seed in (*arm.search, *arm.confirm)}


def _pooled_arms(identity: str, studies: list[Study]) -> dict[tuple[Any, ...], Arm]:
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
    return merged


def _info(identity: str, studies: list[Study]) -> dict[str, Any]:
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
            keys = ("test_accuracy", "val_accuracy", "correction_rate", "memorisation_rate", "ece")
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


# ------------------------------------------------------------------------------------------ one condition

def recommend_condition(arms: dict[tuple[Any, ...], Arm], context: Context, info: dict[str, Any]) -> dict[str, Any]:
    """One condition's entry from its arms. Pure: ``benchmarks/recommend_calibration.py`` calls it on
    simulated studies."""
    entry: dict[str, Any] = {
        **{k: v for k, v in info.items() if k != "unfinished_studies"},
        "recommended": None, "best_observed": None, "confirmed": None, "no_distillation": None,
        "pure_distillation": None, "gain": None, "verdict": None, "notes": [],
    }
    searched = [a for a in arms.values() if a.search]
    if not searched:
        entry["verdict"] = {"kind": "undetermined", "text": f"{entry['description']}: no completed trials."}
        return entry
    sign = context.metric.sign
    fit = fit_search(searched, context)
    best = best_observed(searched, sign)
    no_kd = _baseline(arms, 1.0, context.spec.default_temperature)
    pure = _baseline(arms, 0.0, context.spec.default_temperature)
    entry["best_observed"] = best.summary("search")
    entry["pure_distillation"] = pure.summary("confirm" if pure and pure.confirm else "search") if pure else None
    candidates = [a for a in arms.values() if a.confirm and a.alpha != 1.0]
    if candidates and no_kd is not None and no_kd.confirm:
        outcome = confirm([a.confirmed() for a in candidates], no_kd.confirmed(), sign=sign, design=context.design,
                          conditions=context.conditions, margin=context.margin)
        chosen = next(a for a in candidates if a.params == outcome.chosen.params)
        entry["confirmed"] = chosen.summary("confirm")
        entry["no_distillation"] = no_kd.summary("confirm")
        entry["gain"] = _confirmed_gain(outcome, chosen, context)
        kind = outcome.kind
    else:
        chosen = None
        entry["no_distillation"] = no_kd.summary("search") if no_kd else None
        distilled = [a for a in searched if a.alpha != 1.0]
        if no_kd is not None and distilled:
            entry["gain"] = _search_gain(best_observed(distilled, sign), no_kd, sign)
        kind = "unconfirmed" if entry["gain"] and entry["gain"]["low"] is not None else "undetermined"
    entry["recommended"] = _recommended(fit, best, chosen if kind == "distil" else None,
                                        _best_set(searched, best, sign))
    entry["notes"] = _notes(entry, info, fit)
    entry["verdict"] = {"kind": kind, "text": _verdict_text(kind, entry, info, context)}
    return entry


def fit_search(searched: list[Arm], context: Context) -> Fit:
    """The smooth fit over the search's configurations (see :mod:`kdtune.analysis.alpha_fit`); shared with the study's
    confirmation, which confirms its maximum."""
    spec = context.spec
    means = _seed_adjusted_means(searched)
    points = [Point(alpha=a.alpha, temperature=_float(a.params.get("temperature")), objective=m)
              for a, m in zip(searched, means)]
    alpha_bounds = _bounds(spec.search["alpha"])
    t_space = spec.search.get("temperature")
    log_t = None if t_space is None or spec.task == "regression" else tuple(math.log(v) for v in _bounds(t_space))
    if context.margin is not None:
        tolerance = context.margin
    else:
        tolerance = RELATIVE_TOLERANCE * abs(float(np.mean(means)))
    return fit_alpha(points, sign=context.metric.sign, alpha_bounds=alpha_bounds, log_t_bounds=log_t,
                     tolerance=tolerance)


def confirmation_candidates(searched: list[Arm], context: Context, k: int) -> list[dict[str, Any]]:
    """The ``k`` configurations a study confirms against alpha = 1 once its search has ended: its best observed
    distilled configurations on validation (seed-adjusted means; ties to the larger alpha).

    They are configurations that really ran, not the fitted optimum: in the calibration simulations the fitted
    optimum of a small search (the quickstart's 8 proposals) was often a worse configuration (true gain +0.37
    points on average against +0.69 for the best observed one, for a true +1-point curve), because a smooth
    surface bends towards where the sampler did not look.
    """
    sign = context.metric.sign
    distilled = [a for a in searched if a.alpha != 1.0]
    means = dict(zip((id(a) for a in distilled), _seed_adjusted_means(distilled))) if distilled else {}
    ordered = sorted(distilled, key=lambda a: (-round(sign * means[id(a)], 12), -a.alpha))
    return [dict(a.params) for a in ordered[:k]]


def best_observed(arms: list[Arm], sign: float) -> Arm:
    """The configuration with the best mean validation objective over its search runs (ties: larger alpha)."""
    means = _seed_adjusted_means(arms)
    return max(zip(arms, means), key=lambda pair: (round(sign * pair[1], 12), pair[0].alpha))[0]


def _seed_adjusted_means(arms: list[Arm]) -> list[float]:
    """Each configuration's mean search objective with the seeds' shared effects removed.

    Every configuration of one study trains the same student seeds, so its plain means are already paired. Pooled
    studies (different seeds) and configurations with missing runs are not: an additive two-way fit
    (configuration + seed effects, by alternating least squares) puts them on one footing. For a complete
    design it returns the plain means.
    """
    seeds = sorted({s for a in arms for s in a.search})
    index = {s: j for j, s in enumerate(seeds)}
    y = np.full((len(arms), len(seeds)), np.nan)
    for i, arm in enumerate(arms):
        for s, run in arm.search.items():
            y[i, index[s]] = run.objective
    present = ~np.isnan(y)
    if present.all():
        return [float(v) for v in y.mean(axis=1)]
    seed_effect = np.zeros(len(seeds))
    for _ in range(50):
        config = np.nanmean(y - seed_effect, axis=1)
        seed_effect = np.nanmean(y - config[:, None], axis=0)
        seed_effect -= seed_effect.mean()
    return [float(v) for v in config]


def _bounds(distribution: Any) -> tuple[float, float]:
    if distribution.type == "categorical":
        values = [float(v) for v in distribution.choices]
        return min(values), max(values)
    return float(distribution.low), float(distribution.high)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _best_set(searched: list[Arm], best: Arm, sign: float) -> list[Arm]:
    """The configurations that the search cannot tell from its best one: multiple comparisons with the best
    (Hsu 1984, Annals of Statistics 12:1136-1144), in its conservative Bonferroni form. A configuration stays
    unless its paired validation deficit to the best is significant at one-sided 5% / (configurations - 1)."""
    from scipy import stats

    kept = []
    others = [a for a in searched if a is not best]
    for arm in others:
        common = sorted(set(arm.search) & set(best.search))
        d = np.array([sign * (best.search[s].objective - arm.search[s].objective) for s in common])
        if len(d) < 2 or d.std(ddof=1) == 0:
            kept.append(arm)
            continue
        q = float(stats.t.ppf(1 - (1 - CONFIDENCE) / max(1, len(others)), len(d) - 1))
        if d.mean() - q * d.std(ddof=1) / math.sqrt(len(d)) <= 0:
            kept.append(arm)
    return [best, *kept]


def _recommended(fit: Fit, best: Arm, confirmed: Arm | None, best_set: list[Arm]) -> dict[str, Any]:
    """The fit's optimum (other searched parameters from the best observed configuration); when a confirmed
    configuration earned "distil", that configuration. The alpha interval joins the fit's bootstrap interval
    and the alphas of the configurations the search cannot tell from its best (:func:`_best_set`): the fit
    alone undercovers where the curve is not polynomial (measured by benchmarks/recommend_calibration.py)."""
    if confirmed is not None:
        params = dict(confirmed.params)
    else:
        params = {**best.params, "alpha": fit.alpha}
        if fit.temperature is not None:
            params["temperature"] = fit.temperature
    distilling = params["alpha"] != 1.0 and params.get("temperature") is not None
    temperature = None
    if distilling:
        value = float(params["temperature"])
        low_t = None if fit.temperature_low is None else min(fit.temperature_low, value)
        high_t = None if fit.temperature_high is None else max(fit.temperature_high, value)
        temperature = {"value": value, "low": low_t, "high": high_t}
    alphas = [a.alpha for a in best_set]
    low, high = min([fit.alpha_low, params["alpha"], *alphas]), max([fit.alpha_high, params["alpha"], *alphas])
    return {"params": params, "source": "confirm" if confirmed is not None else "fit",
            "fitted": {"alpha": fit.alpha, "temperature": fit.temperature},
            "alpha": {"value": params["alpha"], "low": low, "high": high},
            "indistinguishable_from_best": len(best_set),
            "temperature": temperature, **fit.as_dict()}


def _baseline(arms: dict[tuple[Any, ...], Arm], alpha: float, default_temperature: float) -> Arm | None:
    """The alpha = 1 (or 0) arm: the enqueued baseline, else a searched point at that alpha (a grid may hold
    it), preferring the default temperature, then the most runs."""
    candidates = [a for a in arms.values() if a.alpha == alpha]
    if not candidates:
        return None
    return min(candidates, key=lambda a: ("baseline" not in a.phases,
                                          a.params.get("temperature") != default_temperature,
                                          -len(a.search) - len(a.confirm)))


def _confirmed_gain(outcome: Any, chosen: Arm, context: Context) -> dict[str, Any]:
    interval = outcome.interval
    block: dict[str, Any] = {"params": chosen.params, "source": "confirm", "family_level": outcome.level,
                             "mean": None, "low": None, "high": None, "n_pairs": 0, "seeds_to_resolve": None}
    if interval is not None:
        block.update(interval.as_dict())
        if outcome.kind == "inconclusive":
            block["seeds_to_resolve"] = seeds_to_resolve(interval, context.margin)
    return block


def _search_gain(distilled: Arm, baseline: Arm, sign: float) -> dict[str, Any]:
    """The search's gain of the best distilled configuration over alpha = 1, paired by seed: optimistic,
    since that configuration won the validation selection on these very seeds."""
    a, b = distilled.search, baseline.search
    common = sorted(s for s in set(a) & set(b) if finite(a[s].test) and finite(b[s].test))
    estimate = t_estimate(sign * (a[s].test - b[s].test) for s in common)
    return {"params": distilled.params, "source": "search", "mean": estimate["mean"], "low": estimate["low"],
            "high": estimate["high"], "n_pairs": estimate["n"], "confidence": CONFIDENCE}


# ------------------------------------------------------------------------------------------------- words

def _notes(entry: dict[str, Any], info: dict[str, Any], fit: Fit) -> list[str]:
    """Caveats the numbers carry (cut-short and unfinished studies end the verdict itself)."""
    notes = []
    if fit.method == "best observed":
        notes.append(f"only {fit.configurations} completed configurations: too few for the smooth fit, so the "
                     "best observed one is recommended, without an interval")
    confirmed = entry["confirmed"]
    if confirmed is not None and confirmed["params"]["alpha"] != entry["recommended"]["alpha"]["value"]:
        notes.append(f"the confirmed configuration ({_config(confirmed['params'])}) is not the fitted optimum "
                     f"(alpha ≈ {_fmt(entry['recommended']['alpha']['value'])}): the fit put its optimum at "
                     "alpha = 1, so the search's best distilled configuration was confirmed instead")
    if entry["no_distillation"] is None:
        notes.append("no completed alpha = 1 (no distillation) runs: the gain cannot be measured")
    if entry["pure_distillation"] is None:
        notes.append("no completed alpha = 0 (pure distillation) runs (pruned, failed or not run)")
    teacher = info["teacher"] or {}
    memorised = teacher.get("memorisation_rate")
    if memorised is not None and memorised >= MEMORISATION_WARNING:
        advice = ("; a validation-selected teacher is available with `teacher.select: best_val`"
                  if teacher.get("select") == "final" else "")
        notes.append(f"the teacher predicts the noisy label on {memorised:.0%} of the flipped training labels "
                     f"(memorisation){advice}")
    if info["unfinished_studies"]:
        notes.append(f"not finished: {', '.join(info['unfinished_studies'])} (still running, or interrupted: "
                     "`kdtune resume` finishes it)")
    return notes


def _verdict_text(kind: str, entry: dict[str, Any], info: dict[str, Any], context: Context) -> str:
    where = entry["description"]
    closed = entry["closed_form"]
    star = f"; closed-form α* = {_fmt(closed['alpha_star'])}" if closed else ""
    gain = entry["gain"]
    test = context.metric.test_column
    optimum = ("the fitted optimum" if entry["recommended"]["method"] == "polynomial surface"
               else "the best configuration on validation")
    fitted = f"{optimum} is {_alpha_words(entry['recommended'])}{star}"
    if kind == "undetermined":
        text = f"{where}: cannot tell whether distillation helps ({_missing(entry)}); {fitted}"
    elif kind == "unconfirmed":
        text = (f"{where}: unconfirmed: {fitted}; the search's best distilled configuration "
                f"({_config(gain['params'])}) is {_gain_words(gain, test)}, measured on the runs that won the "
                "validation selection, so it is optimistic (winner's curse). Confirmation on fresh seeds "
                "(budget.confirm_top_k ≥ 1) gives a verdict")
    else:
        confirmed = f"{_config(gain['params'])} vs no distillation on {gain['n_pairs']} fresh paired seeds"
        if kind == "distil":
            text = f"{where}: distil: {confirmed}: {_gain_words(gain, test)}; {fitted}"
            if context.margin is not None and gain["high"] < context.margin:
                text += f" (the gain is real but smaller than the {_points(context.margin)}-point margin)"
        elif kind == "hurts":
            text = f"{where}: distillation hurts here: {confirmed}: {_gain_words(gain, test)}; use alpha = 1"
        elif kind == "no_gain":
            text = (f"{where}: no gain: any gain or loss is within ±{_points(context.margin)} points: {confirmed}: "
                    f"{_gain_words(gain, test)}; alpha = 1 does as well")
        else:
            margin = "" if context.margin is None else f" and reaches beyond the ±{_points(context.margin)}-point margin"
            need = gain.get("seeds_to_resolve")
            more = "" if need is None else (f"; at this spread about {need} paired seeds would resolve it "
                                            "(budget.confirm_max_repeats)")
            text = (f"{where}: inconclusive (can't tell yet, which is not the same as no effect): {confirmed}: "
                    f"{_gain_words(gain, test)}: the interval crosses 0{margin}{more}")
    return _status_words(entry, text + _teacher_words(entry, info))


def _missing(entry: dict[str, Any]) -> str:
    if entry["no_distillation"] is None:
        return "no alpha = 1 baseline to compare with"
    if entry["gain"] is None:
        return "no distilled configuration completed"
    return f"only {entry['gain']['n_pairs']} paired seed(s); raise budget.repeats"


def _teacher_words(entry: dict[str, Any], info: dict[str, Any]) -> str:
    """The teacher's test accuracy beside the student's own interval: shown, not used as a cause."""
    accuracy = (info["teacher"] or {}).get("test_accuracy")
    student = (entry["no_distillation"] or {}).get("test") or {}
    if accuracy is None or student.get("mean") is None:
        return ""
    alone = f"{student['mean']:.1%}"
    if student.get("low") is not None:
        alone += f" (95% CI {student['low']:.1%}–{student['high']:.1%})"
    return f". Teacher: {accuracy:.1%} test accuracy; the student alone: {alone}"


def _status_words(entry: dict[str, Any], text: str) -> str:
    """End the verdict, saying when it rests on a cut-short or unfinished study."""
    trials = entry["trials"]
    if entry["cut_short"]:
        text += (f". The study was cut short ({trials['complete']} trials of this condition completed): "
                 "this may change")
    if trials["unfinished"]:
        text += f". {trials['unfinished']} trial(s) had not ended (still running, or interrupted)"
    return text + "."


def _alpha_words(recommended: dict[str, Any]) -> str:
    """The fitted optimum with the intervals, e.g. ``alpha ≈ 0.3 (0.2–0.45; weight on the true labels,
    1 = no distillation), T ≈ 4 (3–6)``."""
    fitted = recommended["fitted"]
    inside = "; ".join(filter(None, [_range(recommended["alpha"]), "weight on the true labels, 1 = no distillation"]))
    words = f"alpha ≈ {_fmt(fitted['alpha'])} ({inside})"
    temperature = recommended["temperature"]
    if temperature is None or fitted["temperature"] is None or fitted["alpha"] == 1.0:
        return words
    t_range = _range(temperature)
    return f"{words}, T ≈ {_fmt(fitted['temperature'])}" + (f" ({t_range})" if t_range else "")


def _range(interval: dict[str, Any]) -> str:
    if interval["low"] is None or interval["low"] == interval["high"]:
        return ""
    return f"{_fmt(interval['low'])}–{_fmt(interval['high'])}"


def _gain_words(gain: dict[str, Any], test_metric: str) -> str:
    """E.g. ``+0.8 points test accuracy vs no distillation (repeated 98.3% CI +0.5 to +1.1, 12 paired seeds)``;
    for the linear task a (signed) reduction of the test excess MSE."""
    what = "points test accuracy" if test_metric == "test_accuracy" else f"reduction of {test_metric}"
    if gain["low"] is None:
        return f"{_signed(gain['mean'], test_metric)} {what} vs no distillation ({gain['n_pairs']} paired seed(s))"
    if gain["source"] == "confirm":
        name = f"repeated {gain['confidence']:.1%} CI"
    else:
        name = f"{gain['confidence']:.0%} CI"
    ci = f"{name} {_signed(gain['low'], test_metric)} to {_signed(gain['high'], test_metric)}"
    return f"{_signed(gain['mean'], test_metric)} {what} vs no distillation ({ci}, {gain['n_pairs']} paired seeds)"


def _signed(value: float, test_metric: str) -> str:
    return f"{100 * value:+.1f}" if test_metric == "test_accuracy" else f"{value:+.3g}"


def _points(margin: float | None) -> str:
    return "-" if margin is None else f"{100 * margin:.2g}"


def _config(params: dict[str, Any]) -> str:
    words = [f"alpha {_fmt(params['alpha'])}"]
    if params.get("temperature") is not None and params["alpha"] != 1.0:
        words.append(f"T {_fmt(params['temperature'])}")
    return ", ".join(words)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


# ------------------------------------------------------------------------------------------- header parts

def _study_summary(study: Study) -> dict[str, Any]:
    return {"path": str(study.path), "label": study.label, "name": study.meta["spec"].get("name"),
            "cut_short": bool(study.meta.get("cut_short", False)),
            "finished": study.meta.get("finished_at") is not None}


def _method(context: Context) -> dict[str, Any]:
    return {
        "scoring": "each run at its best validation epoch (earliest on ties); COMPLETE trials only",
        "recommended": "maximum of a surface fitted to the search configurations' mean validation objectives "
                       "(quadratic in 1 - alpha, with log T terms inside the distillation term); interval: "
                       "parametric bootstrap of the fit",
        "verdict": "confirmation runs only: the chosen confirmed configuration vs alpha = 1 on fresh paired "
                   "seeds; repeated confidence interval (Jennison & Turnbull 1989) with a Pocock-type constant "
                   "nominal level, valid under adaptive confirmation",
        "multiplicity": f"Bonferroni over the {context.conditions} condition(s) and each condition's confirmed "
                        f"candidates: family-wise confidence {FAMILY_CONFIDENCE:.0%}",
        "equivalence": "no gain when the interval lies inside ± margin (interval form of TOST, Schuirmann 1987)",
        "looks": list(context.design.looks),
        "confidence": FAMILY_CONFIDENCE,
        "coverage": "student-seed noise only: the data draw, the teacher and the validation set are fixed",
    }


def _version() -> str:
    from kdtune._version import __version__

    return __version__
