"""The recommendation: per condition, the alpha (and T) to use, how sure we are, and what it gains.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 − alpha).

Reads only study folders (``study.json``, ``teachers.json``, ``results.parquet``, ``trials.parquet``) and
returns a JSON-ready dict whose schema ``docs/recommendation_schema.md`` documents (``SCHEMA_VERSION``).
Pure numpy/scipy: no Ray, no Optuna, no W&B. The method, in short (the schema document has the details):

* a *run* (one seed of a COMPLETE trial) scores the validation objective at its best validation epoch and
  reports the test metric at that epoch; PRUNED, FAILED and unfinished trials are not used;
* selection uses validation only: the configuration with the best mean objective over its paired seeds
  (ties go to the larger alpha, i.e. less distillation). With confirmation runs (phase ``confirm``, fresh
  seeds) the choice is made among the confirmed configurations on all their runs, and the numbers reported
  for them come from the confirmation runs only (free of the search's selection bias);
* uncertainty of the choice: a percentile bootstrap over seeds (paired: a resample keeps the runs of one seed
  together across configurations; stratified by study when pooling), re-selecting in every resample; it gives
  the interval of alpha and T and the near-optimal set (the most often chosen configurations covering 95%);
* the gain over no distillation: per seed, the best distilled configuration minus the alpha = 1 baseline on
  the test metric (paired), with a t-interval, a paired t-test and a Wilcoxon signed-rank test;
* a verdict in plain words that uses the teacher's diagnostics to say why distillation does not help.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.plan import Condition


SCHEMA_VERSION = 1
OUTPUT = "recommendation.json"
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
NEAR_OPTIMAL_COVERAGE = 0.95
MEMORISATION_WARNING = 0.25  # share of flipped training labels the teacher predicts as the noisy label
FEW_SEEDS = 5
TIE_DECIMALS = 12  # means equal to this many decimals tie (sums in another order differ in the last bits)
PARAMS = ("alpha", "temperature", "lr", "batch_size", "epochs")
#: Spec sections that must agree for studies to be pooled. ``dataset.data_root`` and ``dataset.download``
#: only say where the same files are, so they may differ; ``budget`` (seeds, repeats) may differ too.
POOL_SECTIONS = ("dataset", "teacher", "student", "search", "objective", "default_temperature")
_LOCATION_FIELDS = ("data_root", "download")


@dataclass(frozen=True)
class Metric:
    """What is selected on (a validation column of the results) and what is reported (a test column)."""

    column: str
    mode: str  # max | min, for both columns
    test_column: str

    @property
    def sign(self) -> float:
        """+1 when larger is better."""
        return 1.0 if self.mode == "max" else -1.0


#: The linear task reports the test MSE against the noise-free targets: the excess risk that α* minimises.
METRICS = {
    "val_accuracy": Metric("val_accuracy", "max", "test_accuracy"),
    "val_mse": Metric("val_loss", "min", "test_excess_mse"),
}


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

    def runs(self, group: str) -> dict[tuple[str, int], Run]:
        """The runs of ``group``: ``search`` (phases search and baseline), ``confirm``, or ``all``."""
        if group == "all":
            return {**self.search, **self.confirm}
        return self.confirm if group == "confirm" else self.search

    def source(self) -> str:
        """The runs its reported numbers come from: confirmation runs when there are any."""
        return "confirm" if self.confirm else "search"


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


# ------------------------------------------------------------------------------------------- entry points

def recommend(study_dirs: Sequence[str | os.PathLike[str]], *, resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """The recommendation for one study folder, or for several pooled per condition (see the module doc)."""
    if not study_dirs:
        raise UsageError("recommend needs at least one study folder")
    spec = _read_spec(Path(study_dirs[0]))
    metric = METRICS[spec.objective_name]
    studies = [_read_study(Path(d), metric, label=_label(i, study_dirs)) for i, d in enumerate(study_dirs)]
    _check_poolable(studies)
    conditions = [_recommend_condition(identity, studies, metric, spec.default_temperature, resamples, seed)
                  for identity in studies[0].conditions]
    return {
        "schema_version": SCHEMA_VERSION,
        "kdtune_version": _version(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "studies": [_study_summary(s) for s in studies],
        "objective": spec.objective_name,
        "mode": metric.mode,
        "test_metric": metric.test_column,
        "method": _method(resamples, seed),
        "conditions": conditions,
        "notes": _pool_notes(studies),
    }


def default_output(study_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """``recommendation.json`` inside the (first) study folder."""
    return Path(study_dirs[0]) / OUTPUT


def write_recommendation(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON under a temporary name, then rename (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ reading

def _read_spec(path: Path) -> Any:
    from kdtune.errors import SpecError
    from kdtune.spec import parse_spec

    meta = _read_json(path, "study.json", required=True)
    try:
        return parse_spec(meta["spec"])
    except (SpecError, KeyError) as exc:
        raise StudyError(f"{path / 'study.json'}: the recorded spec is not valid: {exc}") from None


def _read_json(path: Path, name: str, *, required: bool) -> dict[str, Any]:
    if not path.is_dir():
        raise UsageError(f"{path}: no such study folder")
    file = path / name
    if not file.exists():
        if required:
            raise UsageError(f"{path} is not a kdtune study folder (no {name})")
        return {}
    try:
        return dict(json.loads(file.read_text()))
    except ValueError as exc:
        raise StudyError(f"{file}: not valid JSON ({exc})") from None


def _label(index: int, study_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """A study's name in seed keys and prefixed trial ids: its folder name, numbered when two agree."""
    names = [Path(d).resolve().name for d in study_dirs]
    return names[index] if names.count(names[index]) == 1 else f"{names[index]}#{index + 1}"


def _read_study(path: Path, metric: Metric, *, label: str) -> Study:
    from kdtune.results import read_results

    meta = _read_json(path, "study.json", required=True)
    conditions = {_identity(c): c for c in meta.get("conditions", [])}
    by_key = {c["key"]: ident for ident, c in conditions.items()}
    columns = ["condition", "trial_id", "phase", *PARAMS, "seed", "epoch", metric.column, metric.test_column,
               "trial_state"]
    table = [r for r in read_results(path).select(columns).to_pylist() if r["condition"] in by_key]
    complete = [r for r in table if r["trial_state"] == "COMPLETE"]
    if not complete:
        raise StudyError(f"{path}: no completed trials yet (nothing to recommend from)")
    arms: dict[str, dict[tuple[Any, ...], Arm]] = {ident: {} for ident in conditions}
    for run_rows in _group(complete, ("trial_id", "seed")).values():
        _add_run(arms[by_key[run_rows[0]["condition"]]], run_rows, metric, label)
    teachers = _read_json(path, "teachers.json", required=False)
    return Study(path=path, label=label, meta=meta, teachers=teachers, conditions=conditions, arms=arms,
                 states=_trial_states(path, table, by_key))


def _trial_states(path: Path, table: list[dict[str, Any]], by_key: dict[str, str]) -> dict[str, Counter[str]]:
    """Ended trials per state (``trials.parquet``: also those that wrote no rows), plus never-ended ones."""
    from kdtune.results import read_trials

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


def _group(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _add_run(arms: dict[tuple[Any, ...], Arm], rows: list[dict[str, Any]], metric: Metric,
             label: str) -> None:
    """Score one run at its best validation epoch (the earliest on ties); file it under its configuration."""
    scored = [r for r in rows if _finite(r[metric.column])]
    if not scored:
        return
    best = max(scored, key=lambda r: (metric.sign * r[metric.column], -r["epoch"]))
    params = {p: _clean(best[p]) for p in PARAMS}
    arm = arms.setdefault(tuple(params.values()), Arm(params=params))
    trial_id = str(best["trial_id"])
    if trial_id not in arm.trial_ids:
        arm.trial_ids.append(trial_id)
    arm.phases.add(best["phase"])
    test = best[metric.test_column]
    run = Run(trial_id=trial_id, phase=best["phase"], seed=(label, int(best["seed"])),
              objective=float(best[metric.column]), test=float(test) if _finite(test) else math.nan)
    arm.runs("confirm" if run.phase == "confirm" else "search")[run.seed] = run


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _clean(value: Any) -> Any:
    """A parameter value as a configuration key: floats rounded (12 significant digits), NaN as None."""
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.12g}")
    return value


# ------------------------------------------------------------------------------------------------ pooling

def _check_poolable(studies: list[Study]) -> None:
    """Refuse, naming the first difference, studies whose runs are not of the same experiment."""
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


def _pool_notes(studies: list[Study]) -> list[str]:
    notes = []
    for i, a in enumerate(studies):
        for b in studies[i + 1:]:
            shared = sorted(_student_seeds(a) & _student_seeds(b))
            if shared:
                notes.append(f"{a.label} and {b.label} share student seeds {shared}: their runs of one "
                             "configuration (the baselines at least) repeat the same initialisation and "
                             "batch order; give each study its own budget.seed")
    return notes


def _student_seeds(study: Study) -> set[int]:
    return {seed for arms in study.arms.values() for arm in arms.values() for _, seed in arm.search}


# ------------------------------------------------------------------------------------------ one condition

def _recommend_condition(identity: str, studies: list[Study], metric: Metric, default_temperature: float,
                         resamples: int, seed: int) -> dict[str, Any]:
    condition = studies[0].conditions[identity]
    arms = _pooled_arms(identity, studies)
    states: Counter[str] = sum((s.states[identity] for s in studies), Counter())
    entry: dict[str, Any] = {
        "key": condition["key"], "condition": condition, "description": _describe(condition),
        "trials": {"complete": states["COMPLETE"], "pruned": states["PRUNED"], "failed": states["FAIL"],
                   "unfinished": states["RUNNING"]},
        "cut_short": any(s.meta.get("cut_short", False) for s in studies),
        "recommended": None, "no_distillation": None, "pure_distillation": None,
        "teacher": _teacher(identity, studies), "gain": None, "closed_form": _closed_form(identity, studies),
        "verdict": None, "notes": [],
    }
    searched = [a for a in arms.values() if a.search]
    if not searched:
        entry["verdict"] = {"kind": "undetermined", "text": f"{entry['description']}: no completed trials."}
        return entry
    choice = _bootstrap_choice(searched, metric.sign, resamples, seed)
    recommended, selected_on = _final_choice(arms, choice["arm"], metric.sign)
    no_kd = _baseline(arms, 1.0, default_temperature)
    pure = _baseline(arms, 0.0, default_temperature)
    distilled = _best_distilled(arms, metric.sign)
    entry["recommended"] = {**_arm_summary(recommended), **_intervals(choice, recommended),
                            "selected_on": selected_on}
    entry["no_distillation"] = _arm_summary(no_kd) if no_kd else None
    entry["pure_distillation"] = _arm_summary(pure) if pure else None
    entry["gain"] = _gain(distilled, no_kd, metric.sign) if distilled and no_kd else None
    entry["notes"] = _condition_notes(entry, choice["arm"], recommended, studies)
    entry["verdict"] = _verdict(entry, recommended, metric.test_column)
    return entry


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


# --------------------------------------------------------------------------------------------- statistics

def _ordered(arms: list[Arm]) -> list[Arm]:
    """Arms in tie-break order: larger alpha first (less distillation), then lower temperature."""
    return sorted(arms, key=lambda a: (-a.alpha, _temperature_order(a), str(a.params)))


def _temperature_order(arm: Arm) -> float:
    temperature = arm.params.get("temperature")
    return math.inf if temperature is None else float(temperature)


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _mean(arm: Arm, group: str) -> float:
    return round(float(np.mean([r.objective for r in arm.runs(group).values()])), TIE_DECIMALS)


def _best(arms: list[Arm], group: str, sign: float) -> Arm:
    """The arm with the best mean objective over its runs of ``group``; ties as :func:`_ordered` says."""
    ordered = _ordered(arms)
    return ordered[int(np.argmax([sign * _mean(a, group) for a in ordered]))]


def _bootstrap_choice(arms: list[Arm], sign: float, resamples: int, seed: int) -> dict[str, Any]:
    """Select on the search runs, then re-select in ``resamples`` paired, study-stratified seed resamples."""
    ordered = _ordered(arms)
    seeds = sorted({s for a in ordered for s in a.search})
    scores = np.array([[sign * a.search[s].objective if s in a.search else np.nan for s in seeds]
                       for a in ordered])  # (configurations, seeds)
    present = ~np.isnan(scores)
    values = np.where(present, scores, 0.0)
    counts = _resample_counts(seeds, resamples, np.random.default_rng(seed))  # (resamples, seeds)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.round((counts @ values.T) / (counts @ present.T), TIE_DECIMALS)
    chosen = np.argmax(np.where(np.isnan(means), -np.inf, means), axis=1)
    full = np.round(values.sum(1) / present.sum(1), TIE_DECIMALS)
    return {"arm": ordered[int(np.argmax(full))], "arms": ordered, "chosen": chosen}


def _resample_counts(seeds: list[tuple[str, int]], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each seed is drawn in each resample: with replacement, within each study separately."""
    counts = np.zeros((resamples, len(seeds)))
    for label in sorted({s[0] for s in seeds}):
        columns = [j for j, s in enumerate(seeds) if s[0] == label]
        uniform = np.full(len(columns), 1 / len(columns))
        counts[:, columns] = rng.multinomial(len(columns), uniform, size=resamples)
    return counts


def _intervals(choice: dict[str, Any], recommended: Arm) -> dict[str, Any]:
    arms, chosen = choice["arms"], choice["chosen"]
    alphas = np.array([a.alpha for a in arms])[chosen]
    temperatures = np.array([_nan(a.params.get("temperature")) for a in arms])[chosen]
    distilling = (alphas != 1.0) & ~np.isnan(temperatures)  # at alpha = 1 the temperature has no effect
    t_value = recommended.params.get("temperature") if recommended.alpha != 1.0 else None
    return {
        "alpha": _interval(recommended.alpha, alphas),
        "temperature": None if t_value is None else _interval(float(t_value), temperatures[distilling]),
        "near_optimal": _near_optimal(arms, chosen),
    }


def _interval(value: float, chosen: np.ndarray) -> dict[str, float | None]:
    """The central ``CONFIDENCE`` interval of the values chosen across resamples (observed values only),
    widened to include ``value`` when ties make the resamples rarely pick the full-data choice itself."""
    if len(chosen) == 0:
        return {"value": value, "low": None, "high": None}
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(chosen, [tail, 1 - tail], method="inverted_cdf")
    return {"value": value, "low": min(float(low), value), "high": max(float(high), value)}


def _near_optimal(arms: list[Arm], chosen: np.ndarray) -> dict[str, Any]:
    """The fewest configurations that were chosen in at least ``NEAR_OPTIMAL_COVERAGE`` of the resamples."""
    share = np.bincount(chosen, minlength=len(arms)) / len(chosen)
    order = np.argsort(-share, kind="stable")
    size = int(np.searchsorted(np.cumsum(share[order]), NEAR_OPTIMAL_COVERAGE - 1e-12) + 1)
    members = [arms[i] for i in order[:size]]
    return {"size": size, "coverage": float(share[order[:size]].sum()),
            "alpha_low": min(a.alpha for a in members), "alpha_high": max(a.alpha for a in members),
            "configurations": len(arms)}


def _final_choice(arms: dict[tuple[Any, ...], Arm], searched: Arm, sign: float) -> tuple[Arm, str]:
    """With confirmation runs, the best confirmed configuration on all its validation runs (search and
    confirmation seeds, paired across the confirmed configurations); else the search's choice."""
    confirmed = [a for a in arms.values() if a.confirm]
    if not confirmed:
        return searched, "search"
    return _best(confirmed, "all", sign), "search+confirm"


def _best_distilled(arms: dict[tuple[Any, ...], Arm], sign: float) -> Arm | None:
    """The best configuration with alpha != 1 on validation, chosen as :func:`_final_choice` chooses."""
    distilled = [a for a in arms.values() if a.alpha != 1.0]
    confirmed = [a for a in distilled if a.confirm]
    if confirmed:
        return _best(confirmed, "all", sign)
    searched = [a for a in distilled if a.search]
    return _best(searched, "search", sign) if searched else None


def _baseline(arms: dict[tuple[Any, ...], Arm], alpha: float, default_temperature: float) -> Arm | None:
    """The alpha = 1 (or 0) arm: the enqueued baseline, else a searched point at that alpha (a grid may hold
    it), preferring the default temperature, then the most runs."""
    candidates = [a for a in arms.values() if a.alpha == alpha]
    if not candidates:
        return None
    return min(candidates, key=lambda a: ("baseline" not in a.phases,
                                          a.params.get("temperature") != default_temperature,
                                          -len(a.search) - len(a.confirm)))


def t_estimate(values: list[float]) -> dict[str, Any]:
    """Mean with a two-sided ``CONFIDENCE`` t-interval (None with fewer than two values)."""
    from scipy import stats

    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(x)}


def _arm_summary(arm: Arm) -> dict[str, Any]:
    runs = list(arm.runs(arm.source()).values())
    return {
        "params": arm.params,
        "trial_ids": sorted(arm.trial_ids),
        "source": arm.source(),
        "validation": t_estimate([r.objective for r in runs]),
        "test": t_estimate([r.test for r in runs]),
    }


def _gain(distilled: Arm, baseline: Arm, sign: float) -> dict[str, Any]:
    """Paired test-metric difference per seed, oriented so that positive = better than no distillation;
    on confirmation runs when both arms have at least two common ones, else on the search runs."""
    from scipy import stats

    group = "confirm" if len(set(distilled.confirm) & set(baseline.confirm)) >= 2 else "search"
    a, b = distilled.runs(group), baseline.runs(group)
    common = sorted(s for s in set(a) & set(b) if math.isfinite(a[s].test) and math.isfinite(b[s].test))
    diff = np.array([sign * (a[s].test - b[s].test) for s in common])
    estimate = t_estimate(list(diff))
    p_value = wilcoxon_p = None
    if len(diff) >= 2 and np.ptp(diff) > 0:
        p_value = float(stats.ttest_rel([a[s].test for s in common], [b[s].test for s in common]).pvalue)
    if len(diff) >= 2 and np.any(diff != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small samples: scipy warns about the normal approximation
            wilcoxon_p = float(stats.wilcoxon(diff).pvalue)
    return {"params": distilled.params, "mean": estimate["mean"], "low": estimate["low"],
            "high": estimate["high"], "n_pairs": len(diff), "p_value": p_value, "wilcoxon_p": wilcoxon_p,
            "source": group}


# ------------------------------------------------------------------------------------------------- words

def _condition_notes(entry: dict[str, Any], searched: Arm, recommended: Arm,
                     studies: list[Study]) -> list[str]:
    """Caveats the numbers carry (cut-short and unfinished studies end the verdict itself)."""
    notes = []
    if searched is not recommended:
        notes.append(f"confirmation changed the choice from {_config(searched.params)} (search) to "
                     f"{_config(recommended.params)}")
    gain = entry["gain"]
    if gain is not None and gain["source"] == "search":
        notes.append("the gain is measured on the runs that won the validation selection, so it is "
                     "optimistic (winner's curse); confirmation runs of both arms on fresh seeds give "
                     "unbiased numbers")
    if gain is not None and 2 <= gain["n_pairs"] < FEW_SEEDS:
        notes.append(f"few paired seeds (n = {gain['n_pairs']}): the gain's interval is wide and its "
                     "coverage unreliable; raise budget.repeats")
    if entry["no_distillation"] is None:
        notes.append("no completed alpha = 1 (no distillation) runs: the gain cannot be measured")
    if entry["pure_distillation"] is None:
        notes.append("no completed alpha = 0 (pure distillation) runs (pruned, failed or not run)")
    unfinished = [s.label for s in studies if s.meta.get("finished_at") is None]
    if unfinished:
        notes.append(f"not finished: {', '.join(unfinished)} (still running, or interrupted: "
                     "`kdtune resume` finishes it)")
    return notes


def _verdict(entry: dict[str, Any], recommended: Arm, test_metric: str) -> dict[str, str]:
    gain = entry["gain"]
    where = entry["description"]
    closed = entry["closed_form"]
    star = f"; closed-form α* = {_fmt(closed['alpha_star'])}" if closed else ""
    if gain is None or gain["low"] is None:
        text = (f"{where}: cannot tell whether distillation helps ({_missing(entry)}); best on validation: "
                f"{_config(recommended.params)}{star}")
        return {"kind": "undetermined", "text": _status_words(entry, text)}
    if gain["high"] < 0:
        kind = "hurts"
    elif gain["low"] > 0 and recommended.alpha != 1.0:
        kind = "distil"
    else:
        kind = "no_gain"
    if kind == "distil":
        text = (f"{where}: distil with {_alpha_words(entry['recommended'])}{star}: "
                f"{_gain_words(gain, test_metric)}")
        return {"kind": kind, "text": _status_words(entry, text)}
    reasons = _teacher_reasons(entry)
    because = f" because {' and '.join(reasons)}" if reasons else ""
    head = ("distillation hurts here" if kind == "hurts"
            else "distillation does not help here (no measurable gain)")
    chose = "; validation chose no distillation (alpha = 1)" if recommended.alpha == 1.0 else ""
    text = (f"{where}: {head}{because}: the best distilled configuration ({_config(gain['params'])}) is "
            f"{_gain_words(gain, test_metric)}{chose}{star}{_advice(entry)}")
    return {"kind": kind, "text": _status_words(entry, text)}


def _missing(entry: dict[str, Any]) -> str:
    if entry["no_distillation"] is None:
        return "no alpha = 1 baseline to compare with"
    if entry["gain"] is None:
        return "no distilled configuration completed"
    return f"only {entry['gain']['n_pairs']} paired seed(s); raise budget.repeats"


def _teacher_reasons(entry: dict[str, Any]) -> list[str]:
    teacher = entry["teacher"] or {}
    reasons = []
    memorised = teacher.get("memorisation_rate")
    if memorised is not None and memorised >= MEMORISATION_WARNING:
        reasons.append(f"the teacher memorised {memorised:.0%} of the flipped training labels")
    student = (entry["no_distillation"] or {}).get("test", {}).get("mean")
    accuracy = teacher.get("test_accuracy")
    if accuracy is not None and student is not None and accuracy < student:
        reasons.append(f"the teacher ({accuracy:.1%}) is worse than the student trained alone "
                       f"({student:.1%})")
    return reasons


def _advice(entry: dict[str, Any]) -> str:
    teacher = entry["teacher"] or {}
    memorised = teacher.get("memorisation_rate")
    if memorised is not None and memorised >= MEMORISATION_WARNING and teacher.get("select") == "final":
        return "; a validation-selected teacher is available with `teacher.select: best_val`"
    return ""


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
    """E.g. ``alpha ≈ 0.3 (0.2–0.45; weight on the true labels, 1 = no distillation), T ≈ 4 (3–6)``."""
    alpha = recommended["alpha"]
    inside = "; ".join(filter(None, [_range(alpha), "weight on the true labels, 1 = no distillation"]))
    words = f"alpha ≈ {_fmt(alpha['value'])} ({inside})"
    temperature = recommended["temperature"]
    if temperature is None:
        return words
    t_range = _range(temperature)
    return f"{words}, T ≈ {_fmt(temperature['value'])}" + (f" ({t_range})" if t_range else "")


def _range(interval: dict[str, Any]) -> str:
    if interval["low"] is None or interval["low"] == interval["high"]:
        return ""
    return f"{_fmt(interval['low'])}–{_fmt(interval['high'])}"


def _gain_words(gain: dict[str, Any], test_metric: str) -> str:
    """E.g. ``+0.8 points test accuracy vs no distillation (95% CI +0.5 to +1.1, paired t-test p = 0.002,
    10 paired seeds)``; for the linear task a (signed) reduction of the test excess MSE."""
    p = "" if gain["p_value"] is None else f", paired t-test {_p(gain['p_value'])}"
    ci = (f"{CONFIDENCE:.0%} CI {_signed(gain['low'], test_metric)} to {_signed(gain['high'], test_metric)}"
          f"{p}, {gain['n_pairs']} paired seeds")
    what = "points test accuracy" if test_metric == "test_accuracy" else f"reduction of {test_metric}"
    return f"{_signed(gain['mean'], test_metric)} {what} vs no distillation ({ci})"


def _signed(value: float, test_metric: str) -> str:
    return f"{100 * value:+.1f}" if test_metric == "test_accuracy" else f"{value:+.3g}"


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


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


def _method(resamples: int, seed: int) -> dict[str, Any]:
    return {
        "selection": "best mean validation objective over paired seeds, each run at its best validation "
                     "epoch; ties to the larger alpha; with confirmation runs, among the confirmed "
                     "configurations on all their runs (their test numbers from the confirmation runs)",
        "interval": "percentile bootstrap over seeds (paired across configurations, stratified by study), "
                    "re-selecting in every resample",
        "resamples": resamples,
        "bootstrap_seed": seed,
        "confidence": CONFIDENCE,
        "near_optimal_coverage": NEAR_OPTIMAL_COVERAGE,
        "test_interval": "t-interval over seeds",
        "gain_test": "paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank on test differences",
    }


def _version() -> str:
    from kdtune import __version__

    return __version__
