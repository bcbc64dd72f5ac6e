"""The search-space converter (kdtune/spec/space.py), tested the way Ray Tune tests its Optuna converter: the
converted distributions sample exactly like hand-written Optuna ones, draws stay inside the (inclusive)
bounds, and a spec survives a round trip. Plus the grid, the baselines and the refusals.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

from kdtune.errors import SpecError
from kdtune.spec.schema import StudySpec
from kdtune.spec.schema import load_spec
from kdtune.spec.schema import parse_spec
from kdtune.spec.sections import DistributionSpec
from kdtune.spec.space import baselines
from kdtune.spec.space import grid
from kdtune.spec.space import grid_size
from kdtune.spec.space import to_optuna


REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Every kind of parameter the spec can write, and the Optuna distribution it must become.
SEARCH: dict[str, dict[str, Any]] = {
    "alpha": {"type": "float", "low": 0.0, "high": 1.0},
    "temperature": {"type": "float", "low": 1.0, "high": 20.0, "log": True},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "epochs": {"type": "int", "low": 2, "high": 9},
}
HAND_WRITTEN = {
    "alpha": FloatDistribution(0.0, 1.0),
    "temperature": FloatDistribution(1.0, 20.0, log=True),
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128]),
    "epochs": IntDistribution(2, 9),
}


def _search(raw: dict[str, dict[str, Any]]) -> dict[str, DistributionSpec]:
    return {name: DistributionSpec(**d) for name, d in raw.items()}


def _draws(distributions: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask(fixed_distributions=distributions).params for _ in range(n)]


# -- (a) converted == hand-written
def test_converted_distributions_equal_hand_written_ones() -> None:
    converted = to_optuna(_search(SEARCH))
    assert converted == HAND_WRITTEN
    assert list(converted) == list(SEARCH)  # order kept: the sampler draws in this order


@pytest.mark.parametrize("seed", [0, 7, 1234])
def test_converted_distributions_give_the_same_suggestions(seed: int) -> None:
    converted = to_optuna(_search(SEARCH))
    assert _draws(converted, 50, seed) == _draws(HAND_WRITTEN, 50, seed)


def test_stepped_distributions_give_the_same_suggestions() -> None:
    raw = {"alpha": {"type": "float", "low": 0.1, "high": 1.0, "step": 0.1},
           "epochs": {"type": "int", "low": 10, "high": 30, "step": 5}}
    hand = {"alpha": FloatDistribution(0.1, 1.0, step=0.1), "epochs": IntDistribution(10, 30, step=5)}
    converted = to_optuna(_search(raw))
    assert converted == hand
    assert _draws(converted, 40, 3) == _draws(hand, 40, 3)


# -- (b) bounds are inclusive
def test_thousand_draws_stay_in_inclusive_bounds_and_hit_every_integer() -> None:
    draws = _draws(to_optuna(_search(SEARCH)), 1000, seed=42)
    for p in draws:
        assert 0.0 <= p["alpha"] <= 1.0
        assert 1.0 <= p["temperature"] <= 20.0
        assert 1e-4 <= p["lr"] <= 1e-2
        assert p["batch_size"] in (32, 64, 128)
        assert isinstance(p["epochs"], int) and 2 <= p["epochs"] <= 9
    assert {p["epochs"] for p in draws} == set(range(2, 10))  # both ends included
    assert {p["batch_size"] for p in draws} == {32, 64, 128}
    # a log scale puts about half the draws below the geometric midpoint sqrt(1 * 20) ~ 4.47
    assert 400 < sum(p["temperature"] < math.sqrt(20.0) for p in draws) < 600


def test_stepped_float_draws_land_on_the_grid_including_both_ends() -> None:
    search = _search({"alpha": {"type": "float", "low": 0.1, "high": 1.0, "step": 0.1}})
    values = {round(p["alpha"], 10) for p in _draws(to_optuna(search), 1000, seed=5)}
    assert values == {round(0.1 * i, 10) for i in range(1, 11)}


# -- (c) round trip
SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", ["tests/specs/v1_full.yaml", "tests/specs/v1_minimal.yaml", *SHIPPED])
def test_spec_round_trips_through_to_dict(path: str) -> None:
    spec = load_spec(REPO / path)
    again = parse_spec(spec.to_dict())
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert to_optuna(again.search) == to_optuna(spec.search)


# -- grid
def test_grid_values_and_size_with_step() -> None:
    search = _search({
        "alpha": {"type": "float", "low": 0.1, "high": 1.0, "step": 0.1},
        "temperature": {"type": "categorical", "choices": [2.0, 10.0]},
        "epochs": {"type": "int", "low": 10, "high": 30, "step": 10},
    })
    points = grid(search)
    assert points["alpha"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # no 0.30000000000000004
    assert points["temperature"] == [2.0, 10.0]
    assert points["epochs"] == [10, 20, 30] and all(isinstance(e, int) for e in points["epochs"])
    assert grid_size(search) == 10 * 2 * 3


def test_grid_never_goes_beyond_high_when_step_does_not_divide_the_range() -> None:
    points = grid(_search({"alpha": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.35}}))
    assert points["alpha"] == [0.0, 0.35, 0.7]  # as Optuna does: high becomes 0.7, never 1.05


def test_grid_counts_an_int_parameter_without_step_by_one() -> None:
    assert grid(_search({"epochs": {"type": "int", "low": 3, "high": 6}})) == {"epochs": [3, 4, 5, 6]}


def test_grid_refuses_a_continuous_parameter_without_step() -> None:
    with pytest.raises(SpecError, match=r"^search\.temperature = .*: the grid sampler needs choices, or "
                                        r"low/high with a step$"):
        grid(_search({"temperature": {"type": "float", "low": 1.0, "high": 20.0}}))


# -- baselines
def test_baselines_are_alpha_one_and_zero_at_default_temperature_others_at_midpoint() -> None:
    spec = parse_spec({"name": "b", "search": SEARCH, "default_temperature": 7.5})
    one, zero = baselines(spec)
    assert one["alpha"] == 1.0 and zero["alpha"] == 0.0  # no distillation, pure distillation
    assert one["temperature"] == zero["temperature"] == 7.5  # default_temperature, not the range's midpoint
    for b in (one, zero):
        assert b["lr"] == pytest.approx(1e-3)  # log scale: geometric midpoint of 1e-4 and 1e-2
        assert b["batch_size"] == 32  # categorical: the first choice
        assert b["epochs"] == 6 and isinstance(b["epochs"], int)  # (2 + 9) / 2 = 5.5, rounded half to even
        assert set(b) == set(SEARCH)


def test_linear_baselines_have_no_temperature() -> None:
    spec = load_spec(REPO / "search_spaces" / "linear_closed_form.yaml")
    assert baselines(spec) == [{"alpha": 1.0}, {"alpha": 0.0}]


def test_baselines_inside_the_grid_are_the_grid_points() -> None:
    spec = load_spec(REPO / "search_spaces" / "seed_alpha_grid.yaml")
    points = grid(spec.search)
    one, zero = baselines(spec)
    assert one == {"alpha": 1.0, "temperature": 10.0}
    assert one["alpha"] in points["alpha"] and one["temperature"] in points["temperature"]
    assert zero["alpha"] not in points["alpha"]  # alpha = 0 is added on top of the grid


# -- refusals
def test_categorical_without_choices_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^search\.batch_size\.choices = None: a categorical parameter needs "
                                        r"a non-empty list$") as info:
        to_optuna(_search({"batch_size": {"type": "categorical"}}))
    assert info.value.field == "search.batch_size.choices"
    with pytest.raises(SpecError, match=r"^search\.batch_size\.choices = \[\]: a categorical parameter"):
        to_optuna(_search({"batch_size": {"type": "categorical", "choices": []}}))


@pytest.mark.parametrize("missing", ["low", "high"])
def test_float_without_bounds_is_refused(missing: str) -> None:
    d = {"type": "float", "low": 0.0, "high": 1.0}
    del d[missing]
    message = r"^search\.alpha = \{.*\}: a float parameter needs low and high$"
    with pytest.raises(SpecError, match=message) as info:
        to_optuna(_search({"alpha": d}))
    assert info.value.field == "search.alpha"


def test_log_with_low_not_positive_passes_optunas_message_through() -> None:
    with pytest.raises(SpecError, match=r"^search\.lr = \{.*'log': True\}: `low > 0` must hold for "
                                        r"`log=True`, but got \(low=0\.0, high=0\.1\)\.$") as info:
        to_optuna(_search({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}))
    assert info.value.field == "search.lr"


def test_low_above_high_passes_optunas_message_through() -> None:
    with pytest.raises(SpecError, match=r"^search\.epochs = .*: `low <= high` must hold"):
        to_optuna(_search({"epochs": {"type": "int", "low": 9, "high": 3}}))


def test_int_parameter_with_step_zero_is_refused_by_optuna() -> None:
    with pytest.raises(SpecError, match=r"^search\.epochs = .*: `step > 0` must hold, but got step=0\.$"):
        to_optuna(_search({"epochs": {"type": "int", "low": 2, "high": 9, "step": 0}}))


def test_int_parameter_with_fractional_bound_is_refused_not_truncated() -> None:
    with pytest.raises(SpecError, match=r"^search\.epochs\.low = 2\.5: must be a whole number for an int "
                                        r"parameter$"):
        to_optuna(_search({"epochs": {"type": "int", "low": 2.5, "high": 9}}))


def test_non_numeric_alpha_choices_are_refused_with_the_field() -> None:
    with pytest.raises(SpecError, match=r"^search\.alpha\.choices = \['low', 'high'\]: must be numbers$"):
        parse_spec({"name": "c", "search": {"alpha": {"type": "categorical", "choices": ["low", "high"]}}})


def test_study_spec_default_search_converts() -> None:
    default = StudySpec.model_fields["search"].default
    assert to_optuna(default) == {"alpha": HAND_WRITTEN["alpha"], "temperature": HAND_WRITTEN["temperature"]}
