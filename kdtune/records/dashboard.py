"""What Optuna's dashboard shows of a kdtune study (``optuna-dashboard sqlite:///runs/NAME/optuna.db``).

Each condition is one Optuna study, ``<study>/<study id>/<condition>`` (``<study>/<condition>`` in folders written
before study ids: :meth:`kdtune.records.folder.StudyFolder.optuna_prefix`). kdtune names its objective (not "Objective 0"),
writes each epoch's objective of a trial as its intermediate value (:class:`kdtune.study.search.ConditionSearcher`:
learning curves, and where ASHA stopped a trial), and marks the recommendation when one is made
(:func:`mark_recommendation`): one study user attribute per field (:data:`FIELDS`: the recommended alpha and T
with their intervals, the verdict, the gain with its interval, ...), plain strings and numbers the dashboard
shows as they are (it shows a dict as escaped JSON, cut at 1,024 characters). Optuna refuses new attributes on
a finished trial, so the marks are on the study.

Optuna's own "best trial" is the COMPLETE trial with the best objective, the mean over the search seeds: often
the alpha = 1 baseline, and never a confirmation run (those are not Optuna trials; they are in
``results.parquet``). It is not kdtune's answer; the attribute ``kdtune_about_best_trial`` says so beside it.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)

RECOMMENDATION_ATTR = "kdtune_recommendation"
#: The study user attributes :func:`mark_recommendation` writes, every one each time (no stale value survives).
FIELDS = (RECOMMENDATION_ATTR, "kdtune_recommended_alpha", "kdtune_recommended_alpha_interval",
          "kdtune_recommended_temperature", "kdtune_recommended_temperature_interval", "kdtune_recommended_source",
          "kdtune_recommended_optuna_trials", "kdtune_verdict", "kdtune_verdict_text", "kdtune_gain",
          "kdtune_gain_interval", "kdtune_gain_seeds", "kdtune_about_best_trial")
_SOURCES = {"confirm": "the confirmed configuration (confirmation runs on fresh seeds)",
            "no_distillation": "alpha = 1 (no distillation), after confirmation on fresh seeds",
            "fit": "the fitted optimum of the search (not confirmed)",
            "best_observed": "the best search configuration (too few for a fit; not confirmed)"}


def name_metric(study: Any, objective: str) -> None:
    """Give the study's single objective its name (e.g. ``val_accuracy``), once."""
    import optuna

    if study.metric_names != [objective]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective])


def mark_recommendation(study_dir: Path, report: dict[str, Any]) -> int:
    """Mark each condition's recommendation on its Optuna study (:func:`recommendation_attrs`); return the
    studies marked.

    Skipped (with a warning when the storage cannot be opened) when the password of a redacted storage URL is
    not known here, nor in $KDTUNE_STORAGE: the recommendation itself is in ``recommendation.json`` either way.
    """
    import optuna

    from kdtune.records.folder import StudyFolder
    from kdtune.records.optuna_storage import make_storage
    from kdtune.spec.rules import optuna_study_name

    folder = StudyFolder(study_dir)
    meta = folder.meta()
    # a redacted URL: the full one, if this driver was given it, else $KDTUNE_STORAGE; none recorded: nothing to mark
    url = folder.storage_url() if meta.get("storage_url") else None
    if not url:
        return 0
    try:
        storage = make_storage(url)
    except Exception as exc:  # the recommendation stands without its mark in the dashboard
        logger.warning("recommendation not marked in the Optuna storage (%s)", exc)
        return 0
    marked = 0
    prefix = folder.optuna_prefix()
    for condition in report["conditions"]:
        if condition.get("recommended") is None:
            continue
        study = optuna.load_study(study_name=optuna_study_name(prefix, condition["key"]), storage=storage)
        for key, value in recommendation_attrs(report, condition, study.get_trials(deepcopy=False)).items():
            study.set_user_attr(key, value)
        marked += 1
    return marked


def recommendation_attrs(report: dict[str, Any], condition: dict[str, Any], trials: list[Any]) -> dict[str, Any]:
    """One condition's recommendation as study user attributes (:data:`FIELDS`), from its entry in ``report``
    and its Optuna study's trials: strings and numbers only."""
    rec = condition["recommended"]
    gain = condition.get("gain") or {}
    temperature = rec.get("temperature")
    recommended = rec["params"]
    numbers = [t.number for t in trials if t.user_attrs.get("tune_trial_id") in set(_trials_of(condition, recommended))]
    return {
        RECOMMENDATION_ATTR: rec["why"],
        "kdtune_recommended_alpha": _rounded(recommended["alpha"]),
        "kdtune_recommended_alpha_interval": (f"{_num(rec['alpha']['low'])} to {_num(rec['alpha']['high'])} (alphas "
                                              "that may be best, 95%; weight on the true labels, 1 = no distillation)"),
        "kdtune_recommended_temperature": "none (alpha = 1: no distillation)" if temperature is None
        else _rounded(temperature["value"]),
        "kdtune_recommended_temperature_interval": "none" if temperature is None or temperature["low"] is None
        else f"{_num(temperature['low'])} to {_num(temperature['high'])}",
        "kdtune_recommended_source": _SOURCES.get(rec["source"], rec["source"]),
        "kdtune_recommended_optuna_trials": ", ".join(map(str, numbers)) or (
            "none: a fitted point that no trial ran" if rec["source"] == "fit" else "none in Optuna"),
        "kdtune_verdict": condition["verdict"]["kind"],
        "kdtune_verdict_text": condition["verdict"]["text"],
        "kdtune_gain": _gain_words(report, gain),
        "kdtune_gain_interval": _gain_interval(report, gain),
        "kdtune_gain_seeds": (f"{gain['n_pairs']} paired seeds, "
                              + ("fresh (confirmation runs)" if gain["source"] == "confirm"
                                 else "the search's own (optimistic)")) if gain else "none",
        "kdtune_about_best_trial": _about_best_trial(trials, report["mode"], numbers),
    }


def _trials_of(condition: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The Tune trials of the recommended configuration among the arms the entry names (none for a fitted
    point between the searched ones)."""
    for arm in (condition.get("confirmed"), condition.get("no_distillation"), condition.get("best_observed")):
        if arm and arm["params"] == params:
            return list(arm.get("trial_ids") or [])
    return []


def _unit(report: dict[str, Any]) -> tuple[float, str]:
    """A gain's scale and words: points of accuracy, else the test metric's own unit (a reduction where lower
    is better)."""
    from kdtune.tasks import TASKS

    objective = next(o for task in TASKS.values() for o in task.objectives if o.name == report["objective"])
    if objective.margin_scale == 0.01:
        return 0.01, f"points of {objective.test_label}"
    what = objective.test_label.split(" (")[0]
    unit = (objective.margin_unit or "").split(" of ")[0]
    return 1.0, (f"{unit} reduction of {what}" if report["mode"] == "min" else f"{unit} of {what}").strip()


def _gain_words(report: dict[str, Any], gain: dict[str, Any]) -> str:
    if gain.get("mean") is None:
        return "none (no paired runs of a distilled configuration and alpha = 1)"
    scale, words = _unit(report)
    return f"{_signed(gain['mean'] / scale, scale)} {words} vs no distillation"


def _gain_interval(report: dict[str, Any], gain: dict[str, Any]) -> str:
    if gain.get("low") is None:
        return "none (fewer than 2 paired seeds)"
    scale, words = _unit(report)
    name = f"repeated {gain['confidence']:.1%} CI" if gain["source"] == "confirm" else f"{gain['confidence']:.0%} CI"
    return f"{_signed(gain['low'] / scale, scale)} to {_signed(gain['high'] / scale, scale)} {words} ({name})"


def _about_best_trial(trials: list[Any], mode: str, recommended: list[int]) -> str:
    """What Optuna's "best trial" is here, naming it, so that it does not read as kdtune's answer."""
    import optuna

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not done:
        return "Optuna has no complete trial here yet."
    best = (max if mode == "max" else min)(done, key=lambda t: t.value)
    return (f"Optuna's best trial (trial {best.number}: alpha {_num(best.params.get('alpha'))}, phase "
            f"{best.user_attrs.get('phase', 'search')}) is the trial with the best mean objective over the search "
            "seeds, baselines included: optimistic (it won on these seeds), and never a confirmation run (those are "
            "not Optuna trials; they are in results.parquet). "
            + (f"Its configuration is also the recommended one here, which rests on {RECOMMENDATION_ATTR}'s grounds."
               if best.number in recommended else f"It is not kdtune's recommendation ({RECOMMENDATION_ATTR})."))


def _rounded(value: Any) -> float:
    """A number as it is read (3 significant digits, as every kdtune output shows it; recommendation.json has
    it whole)."""
    return float(f"{float(value):.3g}")


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3g}"


def _signed(value: float, scale: float) -> str:
    return f"{value:+.1f}" if scale == 0.01 else f"{value:+.3g}"
