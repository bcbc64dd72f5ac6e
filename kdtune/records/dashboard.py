"""What Optuna's dashboard shows of a kdtune study (``optuna-dashboard sqlite:///runs/NAME/optuna.db``).

Each condition is one Optuna study, ``<study>/<study id>/<condition>`` (``<study>/<condition>`` in folders written
before study ids: :meth:`kdtune.records.folder.StudyFolder.optuna_prefix`). kdtune names its objective (not "Objective 0"),
writes each epoch's objective of a trial as its intermediate value (:class:`kdtune.study.search.ConditionSearcher`:
learning curves, and where ASHA stopped a trial), and marks the recommendation when one is made
(:func:`mark_recommendation`) in the study's user attribute ``kdtune_recommendation``: its parameters, how it
was chosen, its verdict and the numbers of the Optuna trials behind it (the confirmed or best observed
configuration; Optuna refuses new attributes on a finished trial, so the mark is on the study).

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)

RECOMMENDATION_ATTR = "kdtune_recommendation"


def name_metric(study: Any, objective: str) -> None:
    """Give the study's single objective its name (e.g. ``val_accuracy``), once."""
    import optuna

    if study.metric_names != [objective]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective])


def mark_recommendation(study_dir: Path, report: dict[str, Any]) -> int:
    """Mark each condition's recommended configuration in the study's Optuna storage; return the studies marked.

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
        rec = condition.get("recommended")
        if rec is None:
            continue
        study = optuna.load_study(study_name=optuna_study_name(prefix, condition["key"]), storage=storage)
        chosen = set(_trials_behind(condition))
        numbers = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("tune_trial_id") in chosen]
        study.set_user_attr(RECOMMENDATION_ATTR, {"params": rec["params"], "method": rec.get("method"),
                                                  "optuna_trials": numbers,
                                                  "verdict": condition["verdict"]["kind"],
                                                  "text": condition["verdict"]["text"]})
        marked += 1
    return marked


def _trials_behind(condition: dict[str, Any]) -> list[str]:
    """The Tune trials of the configuration behind the recommendation: the confirmed arm, else the best
    observed one (a recommendation fitted between searched points has no trials of its own)."""
    for arm in (condition.get("confirmed"), condition.get("best_observed"), condition.get("recommended")):
        if arm and arm.get("trial_ids"):
            return list(arm["trial_ids"])
    return []
