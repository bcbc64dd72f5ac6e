"""What Optuna's dashboard shows of a study: the objective's name, each epoch's objective as the trial's
intermediate value, and the recommendation marked on each condition's study, one readable user attribute per
field (the dashboard shows a dict as escaped JSON), with a word on what Optuna's own "best trial" is."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from test_recommend import FRESH
from test_recommend import build
from test_recommend import by_noise
from test_recommend import confirm
from test_recommend import flat
from test_recommend import harmful
from test_recommend import peaked

from kdtune.analysis.recommendation import recommend
from kdtune.records.dashboard import FIELDS
from kdtune.records.dashboard import RECOMMENDATION_ATTR
from kdtune.records.dashboard import mark_recommendation
from kdtune.records.dashboard import recommendation_attrs
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


def test_recommendation_marked_on_each_condition_one_readable_field_each(small_study: Path) -> None:
    report = recommend([small_study])
    assert mark_recommendation(small_study, report) == len(report["conditions"])
    studies = _studies(small_study)
    for condition in report["conditions"]:
        study = studies[condition["key"]]
        attrs = {k: v for k, v in study.user_attrs.items() if k.startswith("kdtune_")}
        assert set(attrs) == set(FIELDS)
        # plain strings and numbers: the dashboard shows them as they are (a dict as escaped JSON)
        assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in attrs.values())
        assert all("\\u" not in str(v) and not str(v).startswith("{") for v in attrs.values())
        rec = condition["recommended"]
        assert attrs[RECOMMENDATION_ATTR] == rec["why"] and attrs["kdtune_verdict"] == condition["verdict"]["kind"]
        assert attrs["kdtune_verdict_text"] == condition["verdict"]["text"]
        assert attrs["kdtune_recommended_alpha"] == float(f"{rec['params']['alpha']:.3g}")  # as it is read
        assert attrs["kdtune_recommended_alpha_interval"].startswith(f"{rec['alpha']['low']:.3g} to {rec['alpha']['high']:.3g}")
        best = study.best_trial  # Optuna's own marking, said not to be kdtune's answer
        assert f"trial {best.number}: alpha {best.params['alpha']:.3g}" in attrs["kdtune_about_best_trial"]
        assert "search seeds" in attrs["kdtune_about_best_trial"]


def _optuna_trials(folder: Path, report_condition: dict, numbers: dict[str, int]) -> list[optuna.trial.FrozenTrial]:
    """A real (in-memory) Optuna study holding the condition's search and baseline trials as the searcher records
    them (user attributes phase and tune_trial_id; confirmation trials are not Optuna trials); alpha = 1 scores
    best, as a baseline often does."""
    study = optuna.create_study(direction="maximize")
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        "alpha": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for trial in read_trials(folder).to_pylist():
        if trial["condition"] != report_condition["key"] or trial["phase"] == "confirm":
            continue
        alpha = json.loads(trial["params"])["alpha"]
        study.add_trial(optuna.trial.create_trial(
            params={"alpha": alpha}, distributions=distributions, value=1.0 if alpha == 1.0 else 0.5,
            user_attrs={"tune_trial_id": trial["trial_id"], "phase": trial["phase"]}))
        numbers[trial["trial_id"]] = study.trials[-1].number
    return study.trials


@pytest.fixture(scope="module")
def confirmed_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dash") / "confirmed"
    builder = build(folder, {0.1: peaked, 0.2: harmful, 0.0: flat})
    for i, (level, truth, alpha) in enumerate(((0.0, flat, 0.9), (0.1, peaked, 0.3), (0.2, harmful, 0.9))):
        confirm(builder, level, truth, [alpha], seeds=FRESH, rng_seed=50 + i)
    return folder, recommend([folder])


def test_confirmed_answers_are_marked_with_their_trials_and_units(confirmed_report: tuple[Path, dict]) -> None:
    folder, report = confirmed_report
    distil, hurts = by_noise(report, 0.1), by_noise(report, 0.2)
    numbers: dict[str, int] = {}
    attrs = recommendation_attrs(report, distil, _optuna_trials(folder, distil, numbers))
    assert attrs["kdtune_verdict"] == "distil" and attrs["kdtune_recommended_alpha"] == 0.3
    assert attrs["kdtune_recommended_temperature"] == 4.0
    assert attrs["kdtune_recommended_source"].startswith("the confirmed configuration")
    # the confirmed configuration's own search trial, not the alpha = 1 baseline that Optuna calls best
    searched = [numbers[t] for t in distil["confirmed"]["trial_ids"] if t in numbers]
    assert len(searched) == 1 and attrs["kdtune_recommended_optuna_trials"] == str(searched[0])
    assert attrs["kdtune_gain"].startswith("+2.0 points of test accuracy vs no distillation")
    assert attrs["kdtune_gain_interval"].endswith("points of test accuracy (repeated 98.3% CI)")
    assert attrs["kdtune_gain_seeds"] == "24 paired seeds, fresh (confirmation runs)"
    assert "phase baseline" in attrs["kdtune_about_best_trial"]
    assert attrs["kdtune_about_best_trial"].endswith(f"It is not kdtune's recommendation ({RECOMMENDATION_ATTR}).")

    numbers = {}
    attrs = recommendation_attrs(report, hurts, _optuna_trials(folder, hurts, numbers))
    assert attrs["kdtune_recommended_alpha"] == 1.0 and attrs["kdtune_verdict"] == "hurts"
    assert attrs["kdtune_recommended_temperature"] == "none (alpha = 1: no distillation)"
    assert attrs["kdtune_recommended_source"].startswith("alpha = 1 (no distillation)")
    baseline = [numbers[t] for t in hurts["no_distillation"]["trial_ids"] if t in numbers]
    assert len(baseline) == 1 and attrs["kdtune_recommended_optuna_trials"] == str(baseline[0])
    assert attrs["kdtune_gain"].startswith("-1.2 points")
    assert "also the recommended one here" in attrs["kdtune_about_best_trial"]  # alpha = 1 is both here
    assert json.loads(json.dumps(attrs)) == attrs
