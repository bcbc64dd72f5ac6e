"""What Optuna's dashboard shows of a real study: the objective's name, each epoch's objective as the trial's
intermediate value, and the recommendation marked on each condition's study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from kdtune.analysis.recommendation import recommend
from kdtune.records.dashboard import RECOMMENDATION_ATTR
from kdtune.records.dashboard import mark_recommendation
from kdtune.records.folder import StudyFolder
from kdtune.records.results import read_trials
from kdtune.spec.rules import optuna_study_name


def _studies(study_dir: Path) -> dict[str, optuna.Study]:
    folder = StudyFolder(study_dir)
    return {c["key"]: optuna.load_study(study_name=optuna_study_name(folder.optuna_prefix(), c["key"]),
                                        storage=folder.storage_url()) for c in folder.meta()["conditions"]}


def test_metric_name_and_learning_curves_in_optuna(small_study: Path) -> None:
    trials = {t["trial_id"]: t for t in read_trials(small_study).to_pylist()}
    for study in _studies(small_study).values():
        assert study.metric_names == ["val_accuracy"]
        for ot in study.get_trials(deepcopy=False):
            ended = trials[ot.user_attrs["tune_trial_id"]]
            # one intermediate value per epoch the trial ran, the last one its reported objective
            assert sorted(ot.intermediate_values) == list(range(1, ended["epochs_done"] + 1))
            if ended["state"] == "COMPLETE":
                assert ot.intermediate_values[ended["epochs_done"]] == ot.value


def test_recommendation_marked_on_each_condition(small_study: Path) -> None:
    report = recommend([small_study])
    assert mark_recommendation(small_study, report) == len(report["conditions"])
    studies = _studies(small_study)
    for condition in report["conditions"]:
        mark = studies[condition["key"]].user_attrs[RECOMMENDATION_ATTR]
        assert mark["params"] == condition["recommended"]["params"]
        assert mark["verdict"] == condition["verdict"]["kind"]
        behind = condition["confirmed"] or condition["best_observed"]
        marked = [t for t in studies[condition["key"]].get_trials(deepcopy=False) if t.number in mark["optuna_trials"]]
        assert marked and {t.user_attrs["tune_trial_id"] for t in marked} <= set(behind["trial_ids"])
        # the report rounds parameters to 12 significant digits (kdtune.analysis.scoring.clean)
        assert all(t.params["alpha"] == pytest.approx(behind["params"]["alpha"], rel=1e-10) for t in marked)
