"""The recommendation: per condition, the alpha (and T) to use, how sure we are, and whether distilling pays.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 − alpha).

Reads only study folders (``study.json``, ``teachers.json``, ``results.parquet``, ``trials.parquet``) and
returns a JSON-ready dict whose schema ``docs/recommendation_schema.md`` documents (``SCHEMA_VERSION``).
No Ray, no Optuna, no W&B, no torch. The method, in short (the schema document has the details):

* runs are scored at their best validation epoch (:mod:`kdtune.analysis.scoring`); only COMPLETE trials count;
* the recommended alpha and T come from a smooth surface fitted to the search's configurations, with a
  parametric-bootstrap interval and the near-optimal range (:mod:`kdtune.analysis.alpha_fit`);
* after a "distil" verdict, the alpha interval is where the locate stage's runs put the optimum: more alphas at
  the confirmed temperature on the confirmation's first seeds (:mod:`kdtune.analysis.locate`);
* with a ``fidelity`` section, the search ran cheap and the transfer check re-ran its best configurations at full
  fidelity (:mod:`kdtune.analysis.transfer`); where it says the cheap answer fails, the recommendation comes from
  the full-fidelity runs, and every verdict says the fidelity it holds at;
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
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdtune.analysis.alpha_fit import Fit
from kdtune.analysis.alpha_fit import Point
from kdtune.analysis.alpha_fit import fit_alpha
from kdtune.analysis.arms import Arm
from kdtune.analysis.arms import Study
from kdtune.analysis.arms import check_poolable
from kdtune.analysis.arms import condition_info
from kdtune.analysis.arms import pooled_arms
from kdtune.analysis.arms import read_spec
from kdtune.analysis.arms import read_study
from kdtune.analysis.arms import study_label
from kdtune.analysis.locate import Located
from kdtune.analysis.locate import locate
from kdtune.analysis.scoring import CONFIDENCE
from kdtune.analysis.scoring import Metric
from kdtune.analysis.scoring import finite
from kdtune.analysis.scoring import t_estimate
from kdtune.analysis.sequential import Design
from kdtune.analysis.sequential import seeds_to_resolve
from kdtune.analysis.transfer import Rerun
from kdtune.analysis.transfer import Transfer
from kdtune.analysis.transfer import check_transfer
from kdtune.analysis.transfer import transfer_words
from kdtune.analysis.verdicts import confirm
from kdtune.analysis.wording import method
from kdtune.analysis.wording import notes
from kdtune.analysis.wording import verdict_text
from kdtune.analysis.wording import why_recommended
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write
from kdtune.tasks import objective_of


SCHEMA_VERSION = 6
#: Near-optimal tolerance on the validation objective where no margin applies (the linear task): 1% of it.
RELATIVE_TOLERANCE = 0.01
SEARCH_PHASES = ("search", "baseline")


@dataclass(frozen=True)
class Context:
    """What every condition of one recommendation shares."""

    spec: Any  # the first study's StudySpec
    metric: Metric
    margin: float | None  # equivalence margin as a fraction of the test metric (None: no "no gain" verdict)
    design: Design
    conditions: int
    study_margin: float | None = None  # the margin the study recorded when it started
    margin_after_study: bool = False  # ``margin`` is not that one: chosen after the data were seen
    folders: tuple[str, ...] = ()  # the study folders read (what the advice to continue names)


# ------------------------------------------------------------------------------------------- entry points

def recommend(study_dirs: Sequence[str | os.PathLike[str]], *, margin: float | None = None) -> dict[str, Any]:
    """The recommendation for one study folder, or for several pooled per condition (see the module doc).

    ``margin`` (points of test accuracy) overrides the margin each study recorded when it started (its spec's
    ``recommend.margin``, else the task's default); a margin other than that one still gives verdicts, each
    marked "margin chosen after the study" (``verdict.margin_chosen_after_study``).
    """
    if not study_dirs:
        raise UsageError("recommend needs at least one study folder")
    spec = read_spec(Path(study_dirs[0]))
    metric = objective_of(spec)
    studies = [read_study(Path(d), metric, label=study_label(i, study_dirs)) for i, d in enumerate(study_dirs)]
    check_poolable(studies)
    recorded = [study_margin(s.meta) for s in studies]
    used = recorded[0] if margin is None else _margin(spec, margin)
    context = Context(spec=spec, metric=metric, margin=used, design=_design(studies),
                      conditions=len(studies[0].conditions), study_margin=recorded[0],
                      margin_after_study=any(not _same_margin(used, m) for m in recorded),
                      folders=tuple(str(s.path) for s in studies))
    conditions = [recommend_condition(pooled_arms(identity, studies), context, condition_info(identity, studies))
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
        "study_margin": context.study_margin,
        "method": method(context),
        "conditions": conditions,
        "notes": [],
    }


def default_output(study_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """``recommendation.json`` inside the (first) study folder."""
    return StudyFolder(study_dirs[0]).recommendation


def write_recommendation(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON under a temporary name, then rename (a reader never sees half a file)."""
    return atomic_write(path, json.dumps(report, indent=2) + "\n", mode=None)


def study_margin(meta: dict[str, Any]) -> float | None:
    """The margin a study fixed before its data: recorded in ``study.json`` when it started (``margin``), or, for
    a study written before that record, its spec's (``recommend.margin``, else the task's default)."""
    from kdtune.spec.schema import StudySpec

    if "margin" in meta:
        return None if meta["margin"] is None else float(meta["margin"])
    return StudySpec.model_validate(meta["spec"]).margin


def _same_margin(a: float | None, b: float | None) -> bool:
    """Equal margins, up to the rounding of a conversion from points (0.3 points -> 0.003)."""
    return a == b or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0))


def _margin(spec: Any, points: float) -> float | None:
    """``--margin`` (in the objective's margin unit) in the test metric's units."""
    objective = objective_of(spec)
    unit = objective.margin_unit
    if not (math.isfinite(points) and 0 < points <= 100):
        raise UsageError(f"--margin = {points!r}: must be a number of {unit or 'points of test accuracy'} in (0, 100]")
    if unit is None:
        raise UsageError(f"--margin = {points!r}: is in points of test accuracy; the {spec.task.name} task's test "
                         f"metric ({objective.test_label}) has no such unit")
    return objective.margin(points)


def _design(studies: list[Study]) -> Design:
    """The confirmation looks: each study's rounds; pooled studies add their seeds look by look."""
    from kdtune.spec.schema import StudySpec

    budgets = [StudySpec.model_validate(s.meta["spec"]).budget for s in studies]
    if len(budgets) == 1:
        return Design.of(budgets[0])
    return Design(round_size=sum(b.confirm_repeats for b in budgets), max_n=sum(b.confirm_max_repeats for b in budgets),
                  planned_n=sum(b.planned_confirm_repeats for b in budgets),
                  failure_rate=max(b.confirm_failure_rate for b in budgets))


# ------------------------------------------------------------------------------------------ one condition

def recommend_condition(arms: dict[tuple[Any, ...], Arm], context: Context, info: dict[str, Any]) -> dict[str, Any]:
    """One condition's entry from its arms. Pure: the calibration (``benchmarks/calibration_sim.py``) calls it on
    simulated studies."""
    entry: dict[str, Any] = {
        **{k: v for k, v in info.items() if k != "unfinished_studies"},
        "recommended": None, "best_observed": None, "confirmed": None, "no_distillation": None,
        "pure_distillation": None, "gain": None, "verdict": None, "notes": [], "fidelity": None, "transfer": None,
    }
    searched = [a for a in arms.values() if a.search]
    transfer = transfer_check(arms, context)
    if context.spec.fidelity is not None:
        entry["fidelity"] = fidelity_block(context.spec)
    if transfer is not None:
        words = transfer_words(transfer, context.metric.margin_scale, context.metric.margin_unit, context.metric.label)
        entry["transfer"] = {**transfer.as_dict(), "text": words}
        if transfer.verdict == "fails":  # recommend from the full-fidelity runs, never the cheap optimum
            searched = list(full_fidelity_view(arms).values())
    if not searched:
        entry["verdict"] = {"kind": "undetermined", "text": f"{entry['description']}: no completed trials.",
                            "margin_chosen_after_study": context.margin_after_study}
        return entry
    sign = context.metric.sign
    fit = fit_search(searched, context)
    best = best_observed(searched, sign)
    no_kd = baseline_arm(arms, 1.0, context.spec.default_temperature)
    pure = baseline_arm(arms, 0.0, context.spec.default_temperature)
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
        full = full_fidelity_view(arms)  # with a transfer check, the unconfirmed gain is measured at full fidelity
        pool, no_kd_runs = (list(full.values()), baseline_arm(full, 1.0, context.spec.default_temperature)) \
            if transfer is not None else (searched, no_kd)
        distilled = [a for a in pool if a.alpha != 1.0]
        if transfer is not None and no_kd_runs is not None:  # alpha = 1 at the fidelity its gain is measured at
            entry["no_distillation"] = no_kd_runs.summary("search")
        if no_kd_runs is not None and distilled:
            entry["gain"] = _search_gain(best_observed(distilled, sign), no_kd_runs, sign)
            if transfer is not None:
                entry["gain"]["source"] = "transfer"
        kind = "unconfirmed" if entry["gain"] and entry["gain"]["low"] is not None else "undetermined"
    located = _located(arms, chosen, no_kd, context) if chosen is not None and no_kd is not None else None
    entry["recommended"] = _recommended(fit, best, _answer(kind, chosen, no_kd), _best_set(searched, best, sign),
                                        located)
    # where the fit and the search's best ran: a cheap search's, unless the transfer check sent the study to the
    # full-fidelity runs (the words say which; the cheap optimum is never passed off as a full-fidelity one)
    cheap = context.spec.fidelity is not None and (transfer is None or transfer.verdict != "fails")
    entry["recommended"]["searched_at"] = "cheap" if cheap else "full"
    entry["recommended"]["why"] = why_recommended(entry, kind)
    entry["notes"] = notes(entry, info, fit)
    text = verdict_text(kind, entry, info, context)
    if entry["fidelity"] is not None:
        text = f"{text} {entry['fidelity']['text']}"
        if entry["transfer"] is not None:
            text = f"{text} {entry['transfer']['text']}."
    entry["verdict"] = {"kind": kind, "text": text, "margin_chosen_after_study": context.margin_after_study}
    return entry


def fidelity_block(spec: Any) -> dict[str, Any]:
    """What the recommendation says of a study's fidelities: how the search was cheapened, and that verdicts hold
    at full fidelity (the spec's data, epochs and student)."""
    from kdtune.tasks import task_for

    full_epochs = task_for(spec).epochs(spec)
    cheap = spec.fidelity.words(full_epochs)
    full = f"all of the spec's training data, {full_epochs} epochs, student {spec.student.arch}"
    return {"search": cheap, "full": full, "verdict_at": "full", **spec.fidelity.trial(full_epochs),
            "text": f"Verdicts hold at full fidelity ({full}); the search ran cheap ({cheap})."}


def transfer_check(arms: Mapping[Any, Arm], context: Context) -> Transfer | None:
    """The transfer check of one condition (:mod:`kdtune.analysis.transfer`): its re-run configurations' cheap and
    full-fidelity runs, the cheap search's choice (its best distilled configuration, as the study confirms it) and
    alpha = 1. None without a fidelity section or transfer runs. Shared with the study's searcher."""
    if context.spec.fidelity is None:
        return None
    rerun = [a for a in arms.values() if a.transfer and a.search]
    chosen = confirmation_candidates([a for a in arms.values() if a.search], context, 1)
    choice = next((i for i, a in enumerate(rerun) if chosen and a.params == chosen[0]), None)
    if len(rerun) < 2 or choice is None:
        return None
    no_kd = baseline_arm({i: a for i, a in enumerate(rerun)}, 1.0, context.spec.default_temperature)
    baseline = None if no_kd is None else rerun.index(no_kd)
    reruns = [Rerun(params=dict(a.params), cheap={s: r.objective for s, r in a.search.items()},
                    full={s: r.objective for s, r in a.transfer.items()}) for a in rerun]
    full_values = [r.objective for a in rerun for r in a.transfer.values()]
    return check_transfer(reruns, choice=choice, baseline=baseline, sign=context.metric.sign,
                          tolerance=_tolerance(context, full_values))


def full_fidelity_view(arms: Mapping[Any, Arm]) -> dict[Any, Arm]:
    """The arms the transfer check re-ran, their full-fidelity runs standing as their search runs: what a study
    confirms and recommends from once the check says the cheap answer fails."""
    return {key: Arm(params=a.params, trial_ids=a.trial_ids, phases=a.phases, search=a.transfer, confirm=a.confirm,
                     locate=a.locate) for key, a in arms.items() if a.transfer}


def fit_search(searched: list[Arm], context: Context) -> Fit:
    """The smooth fit over the search's configurations (see :mod:`kdtune.analysis.alpha_fit`); shared with the study's
    confirmation, which confirms its maximum."""
    spec = context.spec
    means = _seed_adjusted_means(searched)
    points = [Point(alpha=a.alpha, temperature=_float(a.params.get("temperature")), objective=m)
              for a, m in zip(searched, means)]
    alpha_bounds = search_bounds(spec.search["alpha"])
    t_space = spec.search.get("temperature")
    log_t: tuple[float, float] | None = None
    if t_space is not None:
        t_low, t_high = search_bounds(t_space)
        log_t = (math.log(t_low), math.log(t_high))
    return fit_alpha(points, sign=context.metric.sign, alpha_bounds=alpha_bounds, log_t_bounds=log_t,
                     tolerance=_tolerance(context, means))


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


def search_bounds(distribution: Any) -> tuple[float, float]:
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
    from scipy.special import stdtrit  # the t quantile; scipy.stats would cost 0.7 s to import

    kept = []
    others = [a for a in searched if a is not best]
    for arm in others:
        common = sorted(set(arm.search) & set(best.search))
        d = np.array([sign * (best.search[s].objective - arm.search[s].objective) for s in common])
        if len(d) < 2 or d.std(ddof=1) == 0:
            kept.append(arm)
            continue
        q = float(stdtrit(len(d) - 1, 1 - (1 - CONFIDENCE) / max(1, len(others))))
        if d.mean() - q * d.std(ddof=1) / math.sqrt(len(d)) <= 0:
            kept.append(arm)
    return [best, *kept]


def _answer(kind: str, confirmed: Arm | None, no_kd: Arm | None) -> tuple[Arm, str] | None:
    """The configuration the verdict says to use, and its ``source``: the confirmed configuration when it is
    shown to pay ("distil") or not yet judged ("inconclusive": the candidate, pending more seeds); alpha = 1
    when the confirmation shows that distilling does not pay ("hurts", "no_gain"); None without a verdict."""
    if confirmed is not None and kind in ("distil", "inconclusive"):
        return confirmed, "confirm"
    if no_kd is not None and kind in ("hurts", "no_gain"):
        return no_kd, "no_distillation"
    return None


def _located(arms: dict[tuple[Any, ...], Arm], chosen: Arm, no_kd: Arm, context: Context) -> Located | None:
    """Where the optimum lies, from the locate stage's runs (:mod:`kdtune.analysis.locate`): the alphas that ran
    at the confirmed configuration's other parameters, with the confirmed configuration and alpha = 1 on the same
    seeds. None without a locate stage."""
    def without_alpha(params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != "alpha"}

    others = without_alpha(chosen.params)
    runs = {arm.alpha: {s: r.objective for s, r in arm.locate.items() if finite(r.objective)}
            for arm in arms.values() if arm.locate and without_alpha(arm.params) == others}
    if not runs:
        return None
    seeds = set().union(*runs.values())
    for arm in (chosen, no_kd):
        runs[arm.alpha] = {s: r.objective for s, r in arm.confirm.items() if s in seeds and finite(r.objective)}
    return locate(runs, sign=context.metric.sign, tolerance=_tolerance(context, [r.objective for r in chosen.confirm.values()]),
                  params=others)


def _tolerance(context: Context, values: list[float]) -> float:
    """How far below the best an alpha may fall and still count as near-optimal: the margin, else (the linear
    task) :data:`RELATIVE_TOLERANCE` of the objective's size."""
    if context.margin is not None:
        return context.margin
    return RELATIVE_TOLERANCE * abs(float(np.mean(values)))


def _recommended(fit: Fit, best: Arm, answer: tuple[Arm, str] | None, best_set: list[Arm],
                 located: Located | None = None) -> dict[str, Any]:
    """The configuration to use: the verdict's (:func:`_answer`), else the fit's optimum (other searched
    parameters from the best observed configuration), else, with too few configurations to fit, the best
    observed one. After a locate stage the alpha interval is the located optimum's (``located``); else it joins
    the fit's bootstrap interval and the alphas of the configurations the search cannot tell from its best
    (:func:`_best_set`): the fit alone undercovers where the curve is not polynomial (measured by
    benchmarks/recommend_calibration.py)."""
    fitted = fit.method == "polynomial surface"
    if answer is not None:
        params, source = dict(answer[0].params), answer[1]
    else:
        params, source = {**best.params, "alpha": fit.alpha}, "fit" if fitted else "best_observed"
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
    if located is not None:
        low, high = located.low, located.high
    return {"params": params, "source": source,
            "fitted": {"alpha": fit.alpha if fitted else None, "temperature": fit.temperature if fitted else None},
            "alpha": {"value": params["alpha"], "low": low, "high": high},
            "located": None if located is None else located.as_dict(),
            "indistinguishable_from_best": len(best_set),
            "temperature": temperature, **fit.as_dict()}


def baseline_arm(arms: Mapping[Any, Arm], alpha: float, default_temperature: float) -> Arm | None:
    """The alpha = 1 (or 0) arm: the enqueued baseline, else a searched point at that alpha (a grid that holds
    alpha = 1 at the default temperature has it instead of an enqueued baseline), preferring the default
    temperature, then the most runs. The study's confirmation picks its alpha = 1 arm by this rule too."""
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
            block["seeds_to_resolve"] = seeds_to_resolve(interval, context.margin, context.design, outcome.level)
    return block


def _search_gain(distilled: Arm, baseline: Arm, sign: float) -> dict[str, Any]:
    """The search's gain of the best distilled configuration over alpha = 1, paired by seed: optimistic,
    since that configuration won the validation selection on these very seeds."""
    a, b = distilled.search, baseline.search
    common = sorted(s for s in set(a) & set(b) if finite(a[s].test) and finite(b[s].test))
    estimate = t_estimate(sign * (a[s].test - b[s].test) for s in common)
    return {"params": distilled.params, "source": "search", "mean": estimate["mean"], "low": estimate["low"],
            "high": estimate["high"], "n_pairs": estimate["n"], "confidence": CONFIDENCE}


# ------------------------------------------------------------------------------------------- header parts

def _study_summary(study: Study) -> dict[str, Any]:
    return {"path": str(study.path), "label": study.label, "name": study.meta["spec"].get("name"),
            "cut_short": bool(study.meta.get("cut_short", False)),
            "finished": study.meta.get("finished_at") is not None}


def _version() -> str:
    from kdtune._version import __version__

    return __version__
