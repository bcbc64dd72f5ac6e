"""Continuing a confirmation past its planned budget, the confirmation's seeds, grid baselines and the margin fixed
before the data (issue 27, items 4-6), through the real code: :mod:`kdtune.analysis.sequential` on simulated
paired differences, the real searcher on SQLite Optuna storage, a real study folder.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from kdtune.analysis.sequential import EXTENSION_RESERVE
from kdtune.analysis.sequential import Design
from kdtune.analysis.sequential import nominal_level
from kdtune.analysis.sequential import repeated_interval
from kdtune.errors import SpecError
from kdtune.errors import StudyError
from kdtune.records.folder import StudyFolder
from kdtune.spec.rules import confirmation_rounds
from kdtune.spec.rules import confirmation_seeds
from kdtune.spec.rules import search_seeds
from kdtune.spec.schema import parse_spec
from kdtune.study.extension import extend_confirmation
from kdtune.study.search import ConditionSearcher


TAIL = 1e-3  # each binomial limit: a correct implementation crosses it with probability < 1e-3
PLANNED = Design(round_size=4, max_n=16)  # mnist_noise's design: looks at 4, 8, 12, 16 paired seeds
EXTENDED = Design(round_size=4, max_n=32, planned_n=16)  # ... raised to 32 by kdtune resume


# -- the design's levels ---------------------------------------------------------------------------------------

def test_raising_the_budget_keeps_the_levels_of_the_looks_already_taken() -> None:
    assert EXTENDED.looks == (4, 8, 12, 16, 20, 24, 28, 32)
    for n in PLANNED.looks:
        assert EXTENDED.level(n, 0.05) == PLANNED.level(n, 0.05) == nominal_level((4, 8, 12, 16), 0.8 * 0.05)


def test_added_looks_spend_the_reserve_and_never_more() -> None:
    """Each added look's level is the reserve's increment 0.2 alpha (1 - 16/n) at its count n, so all added looks
    together, however many, spend less than the reserve: with the planned looks' 0.8 alpha, at most alpha."""
    reserve = EXTENSION_RESERVE * 0.05
    levels = [EXTENDED.level(n, 0.05) for n in (20, 24, 28, 32)]
    assert levels == pytest.approx([reserve * (16 / 16 - 16 / 20), reserve * (16 / 20 - 16 / 24),
                                    reserve * (16 / 24 - 16 / 28), reserve * (16 / 28 - 16 / 32)], rel=1e-12)
    far = Design(round_size=4, max_n=500, planned_n=16)
    assert sum(far.level(n, 0.05) for n in far.looks if n > 16) < reserve
    assert EXTENDED.level(18, 0.05) == EXTENDED.level(20, 0.05)  # a short round keeps its look's level


def _errs(d: np.ndarray, looks: list[tuple[int, Design]], alpha: float) -> tuple[bool, bool]:
    """(erred at a planned look, erred at any look): some interval excludes the true gain 0."""
    misses = []
    for n, design in looks:
        interval = repeated_interval(d[:n], design, alpha)
        assert interval is not None
        misses.append(interval.low > 0 or interval.high < 0)
    return any(misses[:4]), any(misses)


SEQUENCES = 4000
LEVEL = 0.1  # one interval's level: large, so that inflation shows in 4,000 sequences


def test_continuing_a_design_keeps_the_error_over_all_looks_at_most_the_level() -> None:
    """4,000 null sequences (i.i.d. Gaussian paired differences, true gain 0) read at the planned looks 4-16 with
    the planned design, then at 20-32 with the design raised to 32 by ``kdtune resume``: the way the searcher
    and ``kdtune recommend`` read them. At level 10%:

    - the planned looks err with probability exactly 8% (their Pocock level spends 1 - reserve): 320 expected,
      allowed 268..374;
    - all looks together err at most 10%: at most 460 allowed. With the reserve's bound the true rate is
      between 8% and 8% + 2% x (1 - 16/32) = 9%;
    - the added looks do find what the planned ones missed (more errors than the planned ones alone).

    Raising the budget the naive way, Pocock's level recomputed for the 8-look design at the added looks while
    the planned looks spent the whole 10% (the design before this change), errs in 12.4% of these sequences, 494
    (measured here too, as proof that the limit can fail).
    """
    rng = np.random.default_rng(27)
    draws = rng.standard_normal((SEQUENCES, 32))
    ours = [(n, PLANNED) for n in PLANNED.looks] + [(n, EXTENDED) for n in (20, 24, 28, 32)]
    planned_errors, errors = np.array([_errs(d, ours, LEVEL) for d in draws]).sum(axis=0)
    low, high = (int(stats.binom.ppf(TAIL, SEQUENCES, 0.8 * LEVEL)), int(stats.binom.isf(TAIL, SEQUENCES, 0.8 * LEVEL)))
    assert low <= planned_errors <= high, (planned_errors, low, high)
    ceiling = int(stats.binom.isf(TAIL, SEQUENCES, LEVEL))
    assert planned_errors < errors <= ceiling, (planned_errors, errors, ceiling)

    def naive_level(n: int) -> float:
        looks = (4, 8, 12, 16) if n <= 16 else (4, 8, 12, 16, 20, 24, 28, 32)
        return nominal_level(looks, LEVEL)

    naive = 0
    for d in draws:
        p = [2 * stats.t.sf(abs(d[:n].mean()) / (d[:n].std(ddof=1) / math.sqrt(n)), n - 1) for n in EXTENDED.looks]
        naive += any(pn <= naive_level(n) for pn, n in zip(p, EXTENDED.looks))
    assert naive > ceiling, (naive, ceiling)


def test_seeds_to_resolve_is_a_look_the_raised_budget_can_reach() -> None:
    from kdtune.analysis.sequential import seeds_to_resolve

    rng = np.random.default_rng(5)
    d = rng.normal(0.6, 1.0, 16)
    interval = repeated_interval(d, PLANNED, 0.05)
    assert interval is not None and interval.low < 0 < interval.high  # inconclusive at the planned end
    need = seeds_to_resolve(interval, None, PLANNED, 0.05)
    assert need is not None and need > 16 and (need - 16) % 4 == 0
    raised = Design(4, need, 16)
    half = stats.t.ppf(1 - raised.level(need, 0.05) / 2, need - 1) * interval.sd / math.sqrt(need)
    before = stats.t.ppf(1 - raised.level(need - 4, 0.05) / 2, need - 5) * interval.sd / math.sqrt(need - 4)
    assert half < abs(interval.mean) <= before  # the first look of the raised design that would do


# -- seeds -----------------------------------------------------------------------------------------------------

def _spec(**budget: Any):  # type: ignore[no-untyped-def]
    return parse_spec({"name": "ext", "conditions": {"noise_level": [0.1]}, "student": {"epochs": 4},
                       "budget": {"trials_per_condition": 2, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 3,
                                  "confirm_max_repeats": 6, "confirm_failure_rate": 0, "locate_alphas": 0,
                                  **budget}})


def _all_confirmation_seeds(spec) -> list[int]:  # type: ignore[no-untyped-def]
    return [s for r in range(confirmation_rounds(spec)) for s in confirmation_seeds(spec, r)]


@pytest.mark.parametrize(("seed", "repeats"), [(0, 2), (1000, 1), (0, 1001), (2**31, 2**31), (0, 2**32 - 2000)])
def test_search_and_confirmation_seeds_never_meet_whatever_repeats_is(seed: int, repeats: int) -> None:
    """Before, confirmation used seed + 1000 onwards, which 1,001 repeats reached; (0, 2**32 - 2000) leaves 2,000
    32-bit words outside the search, so nearly every word of the stream is skipped."""
    spec = _spec(seed=seed, repeats=repeats, confirm_repeats=50, confirm_max_repeats=500)
    confirm = _all_confirmation_seeds(spec)
    assert len(confirm) == len(set(confirm)) == 500
    assert all(not seed <= s < seed + repeats for s in confirm)  # none is a search seed
    assert all(0 <= s < 2**32 for s in confirm)


def test_too_many_repeats_for_any_confirmation_seed_is_one_line() -> None:
    spec = _spec(repeats=2**32, confirm_repeats=2, confirm_max_repeats=2)
    with pytest.raises(SpecError, match=r"^budget.repeats = 4294967296: leaves fewer than 2 32-bit student seeds"):
        confirmation_seeds(spec, 0)


def test_a_raised_budget_continues_on_the_next_seeds_of_the_stream() -> None:
    planned, raised = _spec(), _spec(confirm_max_repeats=12, confirm_planned_repeats=6)
    assert [confirmation_seeds(raised, r) for r in range(2)] == [confirmation_seeds(planned, r) for r in range(2)]
    used, more = _all_confirmation_seeds(planned), _all_confirmation_seeds(raised)[6:]
    assert len(more) == 6 and not set(more) & set(used) and not set(more) & set(search_seeds(raised))
    assert _all_confirmation_seeds(_spec(seed=1))[:6] != used  # another budget.seed, another stream


@pytest.mark.parametrize(("budget", "message"), [
    ({"confirm_max_repeats": 10, "confirm_planned_repeats": 6},
     "budget.confirm_max_repeats = 10: must be the planned 6 plus a whole number of rounds of budget.confirm_repeats "
     "(3): 9, 12, ..."),
    ({"confirm_planned_repeats": 9}, "budget.confirm_planned_repeats = 9: must lie between budget.confirm_repeats (3) "
     "and budget.confirm_max_repeats (6)"),
])
def test_a_budget_off_the_designs_rounds_is_refused_in_one_line(budget: dict[str, int], message: str) -> None:
    with pytest.raises(SpecError) as refused:
        _spec(**budget)
    assert str(refused.value) == message


# -- the searcher: a raised budget, a grid's own baseline ------------------------------------------------------

def _searcher(spec, tmp: Path) -> ConditionSearcher:  # type: ignore[no-untyped-def]
    from kdtune.records.optuna_storage import make_storage
    from kdtune.spec.conditions import expand
    from kdtune.study.search import create_studies

    url = f"sqlite:///{tmp / 'optuna.db'}"
    conditions = expand(spec)
    create_studies(spec, make_storage(url), [c.key for c in conditions], prefix="ext", join=False)
    StudyFolder(tmp).create({"id": "0", "spec": spec.to_dict(), "conditions": [c.as_dict() for c in conditions],
                             "cut_short": False, "finished_at": 1.0}, "")
    return ConditionSearcher(spec=spec, storage_url=url, conditions=[c.key for c in conditions], study_dir=tmp,
                             optuna_prefix="ext")


def _end(searcher: ConditionSearcher, trial_id: str, config: Any, tests: list[float]) -> None:
    scores = [[s, t, t] for s, t in zip(config["seeds"], tests)]
    searcher.on_trial_complete(trial_id, {"objective": float(np.mean(tests)), "epoch": 4, "nan": False,
                                          "scores": scores})


def _inconclusive(tmp: Path) -> tuple[ConditionSearcher, Any]:
    """A condition whose two rounds of 3 fresh seeds end inconclusive (gains +2, -1, +0.5, +1.5, -0.5, +1 points)."""
    spec = _spec()
    searcher = _searcher(spec, tmp)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    for i, (trial_id, config) in enumerate(configs.items()):  # t0 alpha = 1, t1 alpha = 0, t2 the best distilled
        _end(searcher, trial_id, config, [[0.5, 0.4, 0.9, 0.7][i]] * 2)
    gains = iter([[0.02, -0.01, 0.005], [0.015, -0.005, 0.01]])
    for r in "ab":
        candidate, no_kd = searcher.suggest(f"{r}0"), searcher.suggest(f"{r}1")
        assert candidate["params"]["alpha"] != 1.0 and no_kd["params"]["alpha"] == 1.0  # type: ignore[index]
        _end(searcher, f"{r}0", candidate, [0.9 + g for g in next(gains)])
        _end(searcher, f"{r}1", no_kd, [0.9] * 3)
    assert searcher.suggest("c0") == "FINISHED" and searcher._verdict(searcher.conditions[0]) == "inconclusive"
    return searcher, spec


def test_a_raised_budget_reopens_an_inconclusive_confirmation_where_it_stopped(short_tmp: Path) -> None:
    searcher, spec = _inconclusive(short_tmp)
    checkpoint = short_tmp / "searcher.json"
    searcher.save(str(checkpoint))
    extend_confirmation(StudyFolder(short_tmp), 9, restorable=True)
    meta = StudyFolder(short_tmp).meta()
    assert meta["spec"]["budget"]["confirm_max_repeats"] == 9 and meta["spec"]["budget"]["confirm_planned_repeats"] == 6
    assert meta["finished_at"] is None  # the study has rounds to run again
    restored = ConditionSearcher.__new__(ConditionSearcher)
    restored.restore(str(checkpoint))  # as Tune restores it on `kdtune resume`
    assert restored.has_work()
    candidate, no_kd = restored.suggest("d0"), restored.suggest("d1")
    raised = StudyFolder(short_tmp).spec()
    assert candidate["seeds"] == no_kd["seeds"] == confirmation_seeds(raised, 2)  # type: ignore[index]
    assert not set(candidate["seeds"]) & set(_all_confirmation_seeds(spec))  # type: ignore[index]
    _end(restored, "d0", candidate, [0.9, 0.9, 0.9])
    _end(restored, "d1", no_kd, [0.9, 0.9, 0.9])
    assert restored.suggest("e0") == "FINISHED"  # 9 seeds: the raised budget is spent


def test_a_clear_verdict_is_not_reopened(short_tmp: Path) -> None:
    spec = _spec()
    searcher = _searcher(spec, short_tmp)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    for i, (trial_id, config) in enumerate(configs.items()):
        _end(searcher, trial_id, config, [[0.5, 0.4, 0.9, 0.7][i]] * 2)
    candidate, no_kd = searcher.suggest("a0"), searcher.suggest("a1")
    _end(searcher, "a0", candidate, [0.950, 0.951, 0.952])  # +5 points on every seed: distil
    _end(searcher, "a1", no_kd, [0.900, 0.901, 0.902])
    assert searcher.suggest("b0") == "FINISHED"
    checkpoint = short_tmp / "searcher.json"
    searcher.save(str(checkpoint))
    extend_confirmation(StudyFolder(short_tmp), 9, restorable=True)
    restored = ConditionSearcher.__new__(ConditionSearcher)
    restored.restore(str(checkpoint))
    assert not restored.has_work() and restored.suggest("c0") == "FINISHED"


@pytest.mark.parametrize(("budget", "meta", "value", "message"), [
    ({"confirm_top_k": 0}, {}, 9, "--confirm-max-repeats = 9: this study confirms nothing (budget.confirm_top_k = 0)"),
    ({}, {}, 6, "--confirm-max-repeats = 6: must be larger than the study's budget.confirm_max_repeats (6)"),
    ({}, {}, 10, "--confirm-max-repeats = 10: must be the planned 6 plus a whole number of rounds"),
    ({}, {}, 501, "--confirm-max-repeats = 501: "),
    ({}, {"cut_short": True}, 9, "--confirm-max-repeats = 9: the study was cut short by budget.max_wall_minutes"),
])
def test_a_raise_that_cannot_continue_is_one_line_and_writes_nothing(short_tmp: Path, budget: dict[str, int],
                                                                   meta: dict[str, Any], value: int,
                                                                   message: str) -> None:
    spec = _spec(**budget)
    StudyFolder(short_tmp).create({"id": "0", "spec": spec.to_dict(), "conditions": [], **meta}, "spec: yaml")
    before = (short_tmp / "study.json").read_text(), (short_tmp / "spec.yaml").read_text()
    with pytest.raises(SpecError) as refused:
        extend_confirmation(StudyFolder(short_tmp), value, restorable=True)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert ((short_tmp / "study.json").read_text(), (short_tmp / "spec.yaml").read_text()) == before


def test_a_raise_without_tunes_state_is_refused(short_tmp: Path) -> None:
    StudyFolder(short_tmp).create({"id": "0", "spec": _spec().to_dict(), "conditions": []}, "")
    with pytest.raises(StudyError, match="Ray Tune's saved state of the study is missing"):
        extend_confirmation(StudyFolder(short_tmp), 9, restorable=False)


def test_a_grid_point_at_alpha_1_is_the_baseline_and_the_grid_confirms(short_tmp: Path) -> None:
    """The grid holds alpha = 1 at the default T: that point is the condition's baseline (never pruned, the
    confirmation's alpha = 1 arm), and telling Optuna the grid's last point (GridSampler stops the study there)
    does not stop the searcher."""
    spec = parse_spec({"name": "grid", "conditions": {"noise_level": [0.1]}, "student": {"epochs": 4},
                       "sampler": "grid", "default_temperature": 10.0,
                       "search": {"alpha": {"type": "float", "low": 0.5, "high": 1.0, "step": 0.25},
                                  "temperature": {"type": "categorical", "choices": [10.0]}},
                       "budget": {"repeats": 2, "confirm_top_k": 1, "confirm_repeats": 3, "confirm_max_repeats": 6,
                                  "confirm_failure_rate": 0}})
    searcher = _searcher(spec, short_tmp)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    phases = {c["params"]["alpha"]: c["phase"] for c in configs.values()}  # type: ignore[index]
    assert phases == {0.0: "baseline", 0.5: "search", 0.75: "search", 1.0: "baseline"}
    objective = {0.0: 0.4, 0.5: 0.9, 0.75: 0.7, 1.0: 0.5}
    for trial_id, config in configs.items():
        _end(searcher, trial_id, config, [objective[config["params"]["alpha"]]] * 2)  # type: ignore[index]
    first = [searcher.suggest("a0"), searcher.suggest("a1")]
    assert [c["phase"] for c in first] == ["confirm", "confirm"]  # type: ignore[index]
    assert [c["params"]["alpha"] for c in first] == [0.5, 1.0]  # type: ignore[index]
    assert first[1]["params"] == next(c for c in configs.values() if c["params"]["alpha"] == 1.0)["params"]  # type: ignore[index]


def test_the_study_records_its_margin_when_it_starts(short_tmp: Path) -> None:
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import _write_study_json

    spec = parse_spec({"name": "m", "recommend": {"margin": 0.3}})
    _write_study_json(short_tmp, spec, [], RunOptions(out=short_tmp))
    assert json.loads((short_tmp / "study.json").read_text())["margin"] == pytest.approx(0.003)
