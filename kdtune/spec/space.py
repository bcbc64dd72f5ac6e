"""The one converter from the spec's search space to Optuna distributions, and the baselines.

The spec writes each search parameter in Optuna's abbreviated format (``{type: float, low: 0, high: 1}``), with
inclusive bounds as in Optuna. Anything that cannot be represented is refused with the field's path, never
silently dropped. alpha is the weight on the true labels (1 = no distillation); every condition also gets the
baselines alpha = 1 and alpha = 0 at the spec's default temperature (``docs/architecture.md``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from typing import Any

from kdtune.core.limits import MIN_TEMPERATURE
from kdtune.core.limits import TOO_COLD
from kdtune.errors import SpecError
from kdtune.trial_io import SEARCH_PARAMS


if TYPE_CHECKING:
    import optuna

    from kdtune.spec.schema import StudySpec
    from kdtune.spec.sections import DistributionSpec


#: Most configurations a grid may have per condition (each is a trial of ``budget.repeats`` trainings); the
#: size is computed from low, high and step before any list of points is built.
MAX_GRID_POINTS = 10_000
_INTEGER = ("batch_size", "epochs", "top_k")


def to_optuna(search: dict[str, DistributionSpec]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Convert the spec's search section to Optuna distributions (the only place this happens)."""
    from optuna.distributions import CategoricalDistribution
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, d in search.items():
        field = f"search.{name}"
        if d.type == "categorical":
            if not d.choices:
                raise SpecError(f"{field}.choices", d.choices, "a categorical parameter needs a non-empty list")
            for i, choice in enumerate(d.choices):
                if isinstance(choice, float) and not math.isfinite(choice):
                    raise SpecError(f"{field}.choices[{i}]", choice, "must be a finite number (NaN and infinity "
                                    "are not allowed)")
            out[name] = CategoricalDistribution(d.choices)
            continue
        if d.low is None or d.high is None:
            raise SpecError(field, d.model_dump(exclude_none=True), f"a {d.type} parameter needs low and high")
        if d.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(d, key)
                if value is not None and value != int(value):
                    raise SpecError(f"{field}.{key}", value, "must be a whole number for an int parameter")
        try:
            if d.type == "int":
                out[name] = IntDistribution(int(d.low), int(d.high), log=d.log, step=1 if d.step is None else int(d.step))
            else:
                out[name] = FloatDistribution(d.low, d.high, log=d.log, step=d.step)
        except ValueError as exc:
            raise SpecError(field, d.model_dump(exclude_none=True), str(exc)) from None
        except ArithmeticError:  # Optuna divides the range by the step in decimal arithmetic
            raise SpecError(f"{field}.step", d.step, "is too small for the range low..high") from None
    return out


def grid(search: dict[str, DistributionSpec]) -> dict[str, list[Any]]:
    """Every value of every parameter for Optuna's GridSampler: categorical choices, or low..high by step.

    Refused, before any list is built: more than :data:`MAX_GRID_POINTS` configurations in all.
    """
    counts = grid_counts(search)
    total = math.prod(counts.values())
    if total > MAX_GRID_POINTS:
        sizes = ", ".join(f"{name}: {n:.3g}" for name, n in counts.items())
        raise SpecError("search", sizes, f"the grid has {total:.3g} configurations per condition; at most "
                        f"{MAX_GRID_POINTS:,} are allowed (use a larger step, fewer choices, or sampler: tpe)")
    points: dict[str, list[Any]] = {}
    for name, d in search.items():
        if d.type == "categorical":
            points[name] = list(d.choices or [])
        else:
            assert d.low is not None  # grid_counts has checked
            step = 1 if d.step is None else d.step
            points[name] = [_round(d.low + i * step, d.type) for i in range(int(counts[name]))]
    return points


def grid_counts(search: dict[str, DistributionSpec]) -> dict[str, float]:
    """How many values each parameter has on the grid (a float: it may be astronomically large)."""
    counts: dict[str, float] = {}
    for name, d in search.items():
        if d.type == "categorical":
            counts[name] = len(d.choices or [])
        elif (d.step is not None or d.type == "int") and d.low is not None and d.high is not None:
            step = 1 if d.step is None else d.step  # an int without a step counts by 1, as in to_optuna
            if not step > 0:
                raise SpecError(f"search.{name}.step", step, "must be > 0")
            # low, low + step, ... up to high inclusive, never beyond it (as Optuna does when step does not
            # divide the range)
            span = (d.high - d.low) / step  # may overflow to inf for a tiny step: still larger than any bound
            counts[name] = float(math.floor(span + 1e-9) + 1) if math.isfinite(span) else math.inf
        else:
            raise SpecError(f"search.{name}", d.model_dump(exclude_none=True),
                            "the grid sampler needs choices, or low/high with a step")
    return counts


def grid_size(search: dict[str, DistributionSpec]) -> int:
    """Configurations on the grid (refused above :data:`MAX_GRID_POINTS`, as :func:`grid` does)."""
    grid(search)
    return int(math.prod(grid_counts(search).values()))


def baselines(spec: StudySpec) -> list[dict[str, Any]]:
    """alpha = 1 (no distillation) and alpha = 0 (pure distillation) at the default temperature, as full
    configurations (every other search parameter at its midpoint or first choice)."""
    rest = {name: _midpoint(d) for name, d in spec.search.items() if name not in ("alpha", "temperature")}
    temperature = {"temperature": spec.default_temperature} if "temperature" in spec.search else {}
    return [{"alpha": 1.0, **temperature, **rest}, {"alpha": 0.0, **temperature, **rest}]


def check_search_space(spec: StudySpec) -> None:
    """Refuse search spaces kdtune cannot run: unknown parameters, parameters the spec's task has not, alpha above
    1, T <= 0, ... (what alpha below 0 means is the task's to say: :meth:`kdtune.tasks.base.Task.check_spec`)."""
    from kdtune.tasks import task_for

    task = task_for(spec)
    if "alpha" not in spec.search:
        raise SpecError("search", sorted(spec.search), "must contain alpha (the weight on the true labels)")
    for name in spec.search:
        if name not in SEARCH_PARAMS:  # the task's own list: another task's parameters are refused below
            raise SpecError(f"search.{name}", name, f"is not searchable; allowed: {', '.join(task.search_params)}")
    to_optuna(spec.search)
    _, alpha_high = _bounds(spec.search["alpha"], "search.alpha")
    if alpha_high > 1:
        raise SpecError("search.alpha.high", alpha_high, "must be <= 1 (alpha is the weight on the true labels)")
    for name, d in spec.search.items():
        if name not in task.search_params:
            raise SpecError(f"search.{name}", d.model_dump(exclude_none=True),
                            f"the {task.kind} task has no {name} (remove it from search)")
    if "temperature" in spec.search:
        low, _ = _bounds(spec.search["temperature"], "search.temperature")
        if not low >= MIN_TEMPERATURE:
            raise SpecError("search.temperature.low", low, f"must be at least {MIN_TEMPERATURE} ({TOO_COLD})")
    for name in _INTEGER:
        if name in spec.search and spec.search[name].type == "float":
            raise SpecError(f"search.{name}.type", "float", "must be int or categorical")
    if spec.sampler == "grid":
        grid(spec.search)


def _bounds(d: DistributionSpec, field: str) -> tuple[float, float]:
    if d.type == "categorical":
        choices = d.choices or []
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            raise SpecError(f"{field}.choices", choices, "must be numbers")
        return min(choices), max(choices)
    assert d.low is not None and d.high is not None  # to_optuna has checked
    return d.low, d.high


def _midpoint(d: DistributionSpec) -> Any:
    if d.type == "categorical":
        return (d.choices or [None])[0]
    low, high = _bounds(d, "search")
    mid = (low * high) ** 0.5 if d.log else (low + high) / 2
    return _round(mid, d.type)


def _round(value: float, kind: str) -> Any:
    return int(round(value)) if kind == "int" else round(value, 10)
