"""The per-condition searcher and scheduler, driven directly (real Optuna on SQLite, no Ray cluster)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from kdtune.errors import StudyError
from kdtune.records.optuna_storage import make_storage
from kdtune.spec.rules import confirmation_seeds
from kdtune.spec.rules import optuna_study_name
from kdtune.spec.rules import trials_per_condition
from kdtune.spec.schema import parse_spec
from kdtune.study.search import ConditionSearcher
from kdtune.study.search import create_studies


def _spec(**overrides: Any):  # type: ignore[no-untyped-def]
    """A small spec; confirmation off unless the test's budget turns it on."""
    raw = {"name": "unit", "conditions": {"noise_level": [0.0, 0.1, 0.2]}, "student": {"epochs": 4},
           "budget": {"trials_per_condition": 3, "repeats": 2}, "scheduler": {"grace_period": 1}}
    raw.update(overrides)
    raw["budget"] = {"confirm_top_k": 0, **raw["budget"]}
    return parse_spec(raw)


def _searcher(spec, tmp: Path, start_time: float | None = None) -> ConditionSearcher:  # type: ignore[no-untyped-def]
    from kdtune.spec.conditions import expand

    url = f"sqlite:///{tmp / 'optuna.db'}"
    keys = [c.key for c in expand(spec)]
    create_studies(spec, make_storage(url), keys, prefix="unit", join=False)
    (tmp / "study.json").write_text("{}")
    return ConditionSearcher(spec=spec, storage_url=url, conditions=keys, study_dir=tmp, optuna_prefix="unit",
                             start_time=start_time)


def _complete(searcher: ConditionSearcher, trial_id: str, objective: float, epoch: int = 4,
              tests: list[float] | None = None, seeds: list[int] | None = None) -> None:
    """End a trial as Tune would, with per-seed scores (seed, objective, test) when ``tests`` are given."""
    scores = [[s, objective, t] for s, t in zip(seeds or [], tests or [])]
    searcher.on_trial_complete(trial_id, {"objective": objective, "epoch": epoch, "nan": False, "scores": scores})


def test_fair_across_conditions_and_baselines_first(short_tmp: Path) -> None:
    spec = _spec()
    searcher = _searcher(spec, short_tmp)
    configs = [searcher.suggest(f"t{i}") for i in range(9)]
    conditions = [c["condition"] for c in configs]  # type: ignore[index]
    assert all(conditions.count(k) == 3 for k in set(conditions))
    assert conditions[:3] == ["noise_level=0.0", "noise_level=0.1", "noise_level=0.2"]  # round robin
    first_two = [c for c in configs if c["condition"] == "noise_level=0.1"][:2]  # type: ignore[index]
    assert [c["phase"] for c in first_two] == ["baseline", "baseline"]
    assert sorted(c["params"]["alpha"] for c in first_two) == [0.0, 1.0]
    assert all(c["params"]["temperature"] == spec.default_temperature for c in first_two)
    assert configs[0]["seeds"] == [0, 1]  # type: ignore[index]
    # Same seeds for every configuration: paired comparisons.
    assert all(c["seeds"] == [0, 1] for c in configs)  # type: ignore[index]


def test_budget_includes_baselines_then_finishes(short_tmp: Path) -> None:
    spec = _spec()
    searcher = _searcher(spec, short_tmp)
    assert trials_per_condition(spec) == 3 + 2
    handed = [searcher.suggest(f"t{i}") for i in range(15)]
    assert all(isinstance(c, dict) for c in handed)
    assert searcher.suggest("t15") == "FINISHED"


def test_states_reach_optuna(short_tmp: Path) -> None:
    spec = _spec()
    searcher = _searcher(spec, short_tmp)
    for i in range(3):
        searcher.suggest(f"t{i}")
    _complete(searcher, "t0", 0.9)
    _complete(searcher, "t1", 0.7, epoch=2)  # stopped by ASHA before student.epochs
    searcher.on_trial_complete("t2", {"objective": float("nan"), "epoch": 1, "nan": True})
    storage = make_storage(searcher.storage_url)
    by_condition = {}
    for key in searcher.conditions:
        study = optuna.load_study(study_name=optuna_study_name("unit", key), storage=storage)
        by_condition[key] = [t for t in study.trials if t.state.is_finished()]
    complete, = by_condition["noise_level=0.0"]
    assert complete.state == TrialState.COMPLETE and complete.value == pytest.approx(0.9)
    pruned, = by_condition["noise_level=0.1"]
    assert pruned.state == TrialState.PRUNED and pruned.user_attrs["last_value"] == pytest.approx(0.7)
    failed, = by_condition["noise_level=0.2"]
    assert failed.state == TrialState.FAIL and "NaN" in failed.user_attrs["reason"]


def test_error_is_fail_and_repeated_completion_is_ignored(short_tmp: Path) -> None:
    searcher = _searcher(_spec(), short_tmp)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", None, error=True)
    searcher.on_trial_complete("t0", {"objective": 0.5, "epoch": 4})  # a resumed driver repeats it
    study = optuna.load_study(study_name="unit/noise_level=0.0", storage=make_storage(searcher.storage_url))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert [t.state for t in finished] == [TrialState.FAIL]


def test_pickled_searcher_resumes_where_it_stopped(short_tmp: Path) -> None:
    searcher = _searcher(_spec(), short_tmp)
    for i in range(4):
        searcher.suggest(f"t{i}")
    _complete(searcher, "t0", 0.8)
    restored = pickle.loads(pickle.dumps(searcher))
    assert restored.handed_out == searcher.handed_out and set(restored.live) == {"t1", "t2", "t3"}
    _complete(restored, "t1", 0.6)  # told through a fresh connection to the same storage
    nxt = restored.suggest("t4")
    assert nxt["condition"] == "noise_level=0.1"  # type: ignore[index]
    study = optuna.load_study(study_name="unit/noise_level=0.1", storage=make_storage(searcher.storage_url))
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 1


def test_grid_runs_every_point_once_and_adds_only_missing_baselines(short_tmp: Path) -> None:
    spec = _spec(sampler="grid", conditions={"noise_level": [0.05]}, default_temperature=10.0,
                 search={"alpha": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25},
                         "temperature": {"type": "categorical", "choices": [10.0]}})
    searcher = _searcher(spec, short_tmp)
    assert trials_per_condition(spec) == 3 + 1  # alpha = 1 at T = 10 is a grid point; alpha = 0 is not
    alphas = sorted(searcher.suggest(f"t{i}")["params"]["alpha"] for i in range(4))  # type: ignore[index]
    assert alphas == [0.0, 0.5, 0.75, 1.0]
    assert searcher.suggest("t4") == "FINISHED"


def _confirming_searcher(tmp: Path) -> tuple[ConditionSearcher, dict[str, Any]]:
    """One condition, 2 proposals + 2 baselines on seeds 0, 1; confirmation in rounds of 3 up to 6 seeds."""
    spec = _spec(conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 2, "repeats": 2,
                                                            "confirm_top_k": 1, "confirm_repeats": 3,
                                                            "confirm_max_repeats": 6, "confirm_failure_rate": 0})
    searcher = _searcher(spec, tmp)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    assert searcher.suggest("wait") is None  # search trials still running: confirmation not decided yet
    for i, value in enumerate([0.5, 0.4, 0.9, 0.7]):  # t0: alpha = 1, t1: alpha = 0, t2 the best distilled
        _complete(searcher, f"t{i}", value, tests=[value, value], seeds=[0, 1])
    return searcher, configs


def _round(searcher: ConditionSearcher, prefix: str) -> list[dict[str, Any]]:
    return [searcher.suggest(f"{prefix}{i}") for i in range(2)]  # type: ignore[misc]


def test_confirmation_reruns_the_best_distilled_and_no_kd_in_rounds_until_clear(short_tmp: Path) -> None:
    searcher, configs = _confirming_searcher(short_tmp)
    assert configs["t0"]["params"]["alpha"] == 1.0 and configs["t1"]["params"]["alpha"] == 0.0
    first = _round(searcher, "a")
    assert [c["phase"] for c in first] == ["confirm", "confirm"]
    assert first[0]["params"] == configs["t2"]["params"]  # the best distilled configuration on validation
    assert first[1]["params"] == configs["t0"]["params"]  # alpha = 1 on the same fresh seeds: paired
    fresh = [confirmation_seeds(searcher.spec, r) for r in range(2)]  # the confirmation's own seed stream
    assert first[0]["seeds"] == first[1]["seeds"] == fresh[0] and len(fresh[0]) == 3 and not set(fresh[0]) & {0, 1}
    assert searcher.suggest("wait") is None  # the round is judged once both arms have ended
    # Round 1 is unclear (gains +2, -1, +0.5 points): a second round with the next fresh seeds.
    _complete(searcher, "a0", 0.9, tests=[0.92, 0.89, 0.905], seeds=fresh[0])
    _complete(searcher, "a1", 0.88, tests=[0.90, 0.90, 0.90], seeds=fresh[0])
    second = _round(searcher, "b")
    assert [c["seeds"] for c in second] == [fresh[1]] * 2 and not set(fresh[1]) & set(fresh[0])
    _complete(searcher, "b0", 0.9, tests=[0.92, 0.93, 0.925], seeds=fresh[1])
    _complete(searcher, "b1", 0.88, tests=[0.90, 0.90, 0.90], seeds=fresh[1])
    assert searcher.suggest("c0") == "FINISHED"  # confirm_max_repeats (6) spent


def test_confirmation_stops_after_a_round_that_makes_the_verdict_clear_then_locates_alpha(short_tmp: Path) -> None:
    searcher, configs = _confirming_searcher(short_tmp)
    fresh = _round(searcher, "a")[0]["seeds"]
    _complete(searcher, "a0", 0.95, tests=[0.950, 0.951, 0.952], seeds=fresh)  # +5 points each
    _complete(searcher, "a1", 0.90, tests=[0.900, 0.901, 0.902], seeds=fresh)
    # "distil": no second round; the locate stage runs the alphas 0, 0.2, ..., 0.8 (budget.locate_alphas = 5) at
    # the confirmed configuration's other parameters, on the first round's seeds (paired with its runs).
    confirmed = configs["t2"]["params"]
    located = [searcher.suggest(f"l{i}") for i in range(5)]
    expected = [a for a in (0.0, 0.2, 0.4, 0.6, 0.8) if a != confirmed["alpha"]]
    assert [c["phase"] for c in located[:len(expected)]] == ["locate"] * len(expected)
    assert [c["params"]["alpha"] for c in located[:len(expected)]] == expected
    assert all({**c["params"], "alpha": confirmed["alpha"]} == confirmed for c in located[:len(expected)])
    assert all(c["seeds"] == fresh for c in located[:len(expected)])
    assert searcher.suggest("wait") is None  # not finished while a locate trial runs
    restored = pickle.loads(pickle.dumps(searcher))  # the stage's state survives a driver restart
    assert restored.locate_pending == searcher.locate_pending == {"all": len(expected)}  # one condition
    for i, config in enumerate(located[:len(expected)]):
        _complete(searcher, f"l{i}", 0.93, tests=[0.93] * 3, seeds=config["seeds"])
    assert searcher.suggest("b0") == "FINISHED"
    restored = pickle.loads(pickle.dumps(searcher))
    assert restored.confirm_done == searcher.confirm_done and restored.scores == searcher.scores


@pytest.mark.parametrize(("minutes", "cut"), [(30, True), (90, False), (None, False)])
def test_wall_clock_budget_cuts_the_study_short(short_tmp: Path, minutes: float | None, cut: bool) -> None:
    """A study that started an hour ago: budget.max_wall_minutes = 30 has run out, 90 has not, and no budget
    never does. Only the spec's field and the study's start are given; the searcher derives its deadline."""
    import json
    import time

    budget: dict[str, Any] = {"trials_per_condition": 3}
    if minutes is not None:
        budget["max_wall_minutes"] = minutes
    searcher = _searcher(_spec(budget=budget), short_tmp, start_time=time.time() - 3600)
    suggested = searcher.suggest("t0")
    if cut:
        assert suggested == "FINISHED"
        assert json.loads((short_tmp / "study.json").read_text())["cut_short"] is True
    else:
        assert isinstance(suggested, dict) and suggested["phase"] == "baseline"
        assert "cut_short" not in json.loads((short_tmp / "study.json").read_text())


def test_direction_mismatch_with_stored_study_is_refused(short_tmp: Path) -> None:
    url = f"sqlite:///{short_tmp / 'o.db'}"
    optuna.create_study(study_name="unit/all", storage=make_storage(url), direction="minimize")
    message = "exists in the storage with direction MINIMIZE, but this spec's objective needs maximize"
    with pytest.raises(StudyError, match=message):
        create_studies(_spec(conditions={"noise_level": [0.0]}), make_storage(url), ["all"], prefix="unit", join=True)


def test_asha_stops_weak_search_trials_but_never_baselines_or_confirmations() -> None:
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from kdtune.study.asha import StratifiedASHA

    scheduler = StratifiedASHA(mode="max", max_t=8, grace_period=1, reduction_factor=2)

    def trial(phase: str, condition: str = "noise_level=0.1") -> Trial:
        t = Trial("kdtune_trial", config={"condition": condition, "phase": phase}, stub=True)
        scheduler.on_trial_add(None, t)
        return t

    def report(t: Trial, value: float) -> str:
        return scheduler.on_trial_result(None, t, {"objective": value, "epoch": 1})

    assert report(trial("search"), 0.5) == TrialScheduler.CONTINUE  # the rung's first value
    assert report(trial("search"), 0.9) == TrialScheduler.CONTINUE
    assert report(trial("search"), 0.1) == TrialScheduler.STOP  # below the rung's cut-off
    assert report(trial("baseline"), 0.1) == TrialScheduler.CONTINUE
    assert report(trial("confirm"), 0.1) == TrialScheduler.CONTINUE
    # Another condition has its own rungs: a value that is poor above is its first, so it continues.
    assert report(trial("search", "noise_level=0.2"), 0.1) == TrialScheduler.CONTINUE


def _cheap_searcher(tmp: Path) -> tuple[ConditionSearcher, dict[str, Any]]:
    """One condition searched cheap (half the data, 2 of 4 epochs): 2 proposals + 2 baselines on seeds 0, 1, then
    the transfer check (the best proposal and both baselines on 3 seeds at full fidelity), then confirmation."""
    spec = _spec(conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 2, "repeats": 2,
                                                            "confirm_top_k": 1, "confirm_repeats": 3,
                                                            "confirm_max_repeats": 3, "confirm_failure_rate": 0},
                 fidelity={"data_fraction": 0.5, "epochs": 2, "transfer_top": 1, "transfer_repeats": 3})
    searcher = _searcher(spec, tmp)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    for i, value in enumerate([0.5, 0.4, 0.9, 0.7]):  # t2 the best distilled configuration of the cheap search
        _complete(searcher, f"t{i}", value, epoch=2, tests=[value, value], seeds=[0, 1])
    return searcher, configs


@pytest.mark.parametrize("fails", [False, True])
def test_a_cheap_search_checks_transfer_at_full_fidelity_before_confirming(short_tmp: Path, fails: bool) -> None:
    """The search and baselines train cheap (their configuration carries the cheap settings; a trial that trained
    the cheap epochs is COMPLETE); the transfer check re-runs the cheap best, alpha = 1 and alpha = 0 at full
    fidelity on seeds 0-2; its state survives a driver restart (Tune's JSON checkpoint of the searcher). Where the
    cheap choice holds up, confirmation runs it at full fidelity; where it is shown to lose more than the margin, the
    study first runs alphas 0.2-0.8 at full fidelity at the full-fidelity runs' best distilled configuration's
    temperature, and confirms the best of all full-fidelity runs."""
    searcher, configs = _cheap_searcher(short_tmp)
    assert all(c["fidelity"] == {"data_fraction": 0.5, "epochs": 2, "width_factor": None, "student": None,
                                 "student_kwargs": {}} for c in configs.values())  # type: ignore[index]
    rerun = [searcher.suggest(f"r{i}") for i in range(3)]
    assert [c["phase"] for c in rerun] == ["transfer"] * 3  # type: ignore[index]
    assert all(c["fidelity"] is None and c["seeds"] == [0, 1, 2] for c in rerun)  # type: ignore[index]
    assert [c["params"] for c in rerun] == [configs[k]["params"] for k in ("t2", "t0", "t1")]  # type: ignore[index]
    assert searcher.suggest("wait") is None  # confirmation waits for the check
    searcher.save(str(short_tmp / "searcher.json"))
    (short_tmp / "study.json").write_text(json.dumps({"spec": searcher.spec.to_dict()}))  # what a resume reads
    restored = ConditionSearcher(spec=searcher.spec, storage_url=searcher.storage_url, conditions=searcher.conditions,
                                 study_dir=short_tmp, optuna_prefix="unit")
    restored.restore(str(short_tmp / "searcher.json"))
    (condition,) = searcher.conditions
    assert restored.transfer_pending == {condition: 3} and restored.live.keys() == searcher.live.keys()
    # the cheap best, alpha = 1 and alpha = 0 at full fidelity: the cheap best ahead, or 19 points behind alpha = 0
    full = (0.80, 0.95, 0.99) if fails else (0.95, 0.80, 0.85)
    for i, value in enumerate(full):
        _complete(restored, f"r{i}", value, tests=[value] * 3, seeds=[0, 1, 2])
    assert restored.transfer_verdict[condition] == ("fails" if fails else "holds")
    wanted = configs["t2"]["params"]  # type: ignore[index]
    if fails:  # alphas over the range at alpha = 0's temperature (the full-fidelity best), 0 and 1 already ran
        sweep = [restored.suggest(f"s{i}") for i in range(4)]
        assert [c["phase"] for c in sweep] == ["transfer"] * 4  # type: ignore[index]
        assert [c["params"]["alpha"] for c in sweep] == [0.2, 0.4, 0.6, 0.8]  # type: ignore[index]
        assert all({**c["params"], "alpha": 0.0} == configs["t1"]["params"] for c in sweep)  # type: ignore[index]
        assert restored.suggest("wait") is None
        for i, value in enumerate([0.97, 0.98, 0.999, 0.96]):
            _complete(restored, f"s{i}", value, tests=[value] * 3, seeds=[0, 1, 2])
        wanted = sweep[2]["params"]  # type: ignore[index]
    round_0 = [restored.suggest(f"c{i}") for i in range(2)]
    assert [c["phase"] for c in round_0] == ["confirm", "confirm"]  # type: ignore[index]
    assert all(c["fidelity"] is None for c in round_0)  # type: ignore[index]
    assert round_0[0]["params"] == wanted  # type: ignore[index]
    assert round_0[1]["params"]["alpha"] == 1.0  # type: ignore[index]


def test_without_confirmation_a_cheap_search_still_checks_transfer(short_tmp: Path) -> None:
    """budget.confirm_top_k = 0: the study waits for its cheap search, runs the transfer check, then ends."""
    spec = _spec(conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 2, "repeats": 2},
                 fidelity={"epochs": 2, "transfer_top": 1})
    searcher = _searcher(spec, short_tmp)
    for i in range(4):
        searcher.suggest(f"t{i}")
    assert searcher.suggest("wait") is None  # not finished while the cheap search runs: the check comes after it
    for i, value in enumerate([0.5, 0.4, 0.9, 0.7]):
        _complete(searcher, f"t{i}", value, epoch=2, tests=[value, value], seeds=[0, 1])
    rerun = [searcher.suggest(f"r{i}") for i in range(3)]
    assert [c["phase"] for c in rerun] == ["transfer"] * 3  # type: ignore[index]
    for i, value in enumerate([0.95, 0.90, 0.80]):
        _complete(searcher, f"r{i}", value, tests=[value, value], seeds=[0, 1])
    assert searcher.suggest("end") == "FINISHED"
