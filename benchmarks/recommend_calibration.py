"""How reliable is a verdict: simulate many studies without training and run them through the real code.

Each simulated condition has a true curve of test accuracy over (alpha, T) and runs drawn around it. Its
search is sampled the way TPE samples (random start-up points, then clusters around the best so far), ASHA
prunes part of it, and the study's own functions then choose what to confirm
(``kdtune.analysis.recommendation.confirmation_candidates``), add confirmation rounds on fresh seeds until the verdict is
clear (``kdtune.analysis.verdicts.confirm``, the rule the study's searcher applies) and write the recommendation
(``kdtune.analysis.recommendation.recommend_condition``). alpha is the weight on the true labels: alpha = 1 means no
distillation.

The noise model of a run (student seed s, configuration c), in points of accuracy:

    validation = mu + g(c) + a_s + b_cs + e_val,   test = mu + g(c) + a_s + b_cs + e_test

``a_s`` is the seed's effect on every configuration (it cancels in paired comparisons), ``b_cs`` the run's
own effect, shared by its validation and test scores (this is what makes the search's winner look better on
test too: the winner's curse), ``e`` the evaluation noise of each split. The spreads are measured ones: the
quickstart's digits runs (paired SD of a test difference about 1 point, 360 test images) and 10k MNIST
(about 0.4 points).

Printed per budget: P(distil | no effect) and P(hurts | no effect), family-wise over the study's conditions;
P(distil | a true +1 point) and P(no gain | a true +1 point), per condition; the coverage of the true optimum
alpha by the recommended alpha's interval (peaked curves); and the confirmation seeds spent.

    python benchmarks/recommend_calibration.py                 # 1,000 studies per budget and case (~10 min)
    python benchmarks/recommend_calibration.py --studies 200   # quicker, coarser
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdtune.analysis.arms import Arm  # noqa: E402
from kdtune.analysis.arms import Run  # noqa: E402
from kdtune.analysis.recommendation import Context  # noqa: E402
from kdtune.analysis.recommendation import confirmation_candidates  # noqa: E402
from kdtune.analysis.recommendation import recommend_condition  # noqa: E402
from kdtune.analysis.sequential import Design  # noqa: E402
from kdtune.analysis.verdicts import DECISIVE  # noqa: E402
from kdtune.analysis.verdicts import confirm  # noqa: E402
from kdtune.spec.rules import CONFIRM_SEED_OFFSET  # noqa: E402
from kdtune.spec.schema import parse_spec  # noqa: E402
from kdtune.tasks import objective_of  # noqa: E402


SEARCHED_T = (1.0, 20.0)


@dataclass(frozen=True)
class Noise:
    """Spreads of one kind of study, in accuracy units (0.01 = one point)."""

    seed: float  # a_s
    run: float  # b_cs
    val: float  # e_val
    test: float  # e_test


@dataclass(frozen=True)
class Budget:
    """A shipped spec's budget and the noise of its data."""

    name: str
    spec: str
    noise: Noise


BUDGETS = (
    Budget("quickstart (digits)", "search_spaces/quickstart.yaml", Noise(seed=0.005, run=0.005, val=0.006, test=0.005)),
    Budget("mnist_noise (10k MNIST)", "search_spaces/mnist_noise.yaml", Noise(seed=0.003, run=0.002, val=0.004, test=0.002)),
)


def flat(alpha: float, log_t: float) -> float:
    return 0.0


def peaked(gain: float, alpha0: float, log_t0: float) -> Any:
    """A true curve with its best configuration ``gain`` above alpha = 1 at (alpha0, T0); no effect at alpha = 1
    or alpha = 0; a temperature away from T0 loses part of the gain."""
    def curve(alpha: float, log_t: float) -> float:
        width = alpha0 if alpha < alpha0 else 1 - alpha0  # a parabola on each side, 0 at alpha = 0 and 1
        shape = 1 - ((alpha - alpha0) / width) ** 2
        return gain * shape * math.exp(-((log_t - log_t0) ** 2) / (2 * 0.8 ** 2))
    return curve


class SimulatedCondition:
    """One condition of a simulated study: its true curve, its runs and the arms they fill."""

    def __init__(self, spec: Any, noise: Noise, curve: Any, rng: np.random.Generator) -> None:
        self.spec, self.noise, self.curve, self.rng = spec, noise, curve, rng
        self.arms: dict[tuple[Any, ...], Arm] = {}
        self.seed_effects: dict[int, float] = {}

    def truth(self, params: dict[str, Any]) -> float:
        return 0.9 + self.curve(float(params["alpha"]), math.log(float(params["temperature"])))

    def run(self, params: dict[str, Any], seeds: list[int], phase: str) -> None:
        key = tuple(params.values())
        arm = self.arms.setdefault(key, Arm(params=dict(params)))
        arm.phases.add(phase)
        for seed in seeds:
            a = self.seed_effects.setdefault(seed, self.rng.normal(0, self.noise.seed))
            shared = self.truth(params) + a + self.rng.normal(0, self.noise.run)
            run = Run(trial_id=f"{phase}-{len(arm.trial_ids)}", phase=phase, seed=("sim", seed),
                      objective=shared + self.rng.normal(0, self.noise.val),
                      test=shared + self.rng.normal(0, self.noise.test))
            (arm.confirm if phase == "confirm" else arm.search)[run.seed] = run
        arm.trial_ids.append(f"{phase}-{len(arm.trial_ids)}")

    def search(self) -> None:
        """Baselines, then TPE-like proposals (start-up points at random, then clusters around the best so
        far), with ASHA-like pruning: half of the proposals that look worse than the median so far stop."""
        spec, budget = self.spec, self.spec.budget
        seeds = list(range(budget.seed, budget.seed + budget.repeats))
        base = {"temperature": spec.default_temperature, "lr": spec.student.lr,
                "batch_size": spec.student.batch_size, "epochs": spec.student.epochs}
        for alpha in (1.0, 0.0):
            self.run({"alpha": alpha, **base}, seeds, "baseline")
        startup = max(4, budget.trials_per_condition // 4)
        seen: list[tuple[float, float, float]] = []  # (mean objective, alpha, log T)
        for i in range(budget.trials_per_condition):
            if i < startup:
                alpha, log_t = self.rng.uniform(0, 1), self.rng.uniform(*np.log(SEARCHED_T))
            else:
                _, a0, t0 = sorted(seen, reverse=True)[self.rng.integers(0, min(3, len(seen)))]
                alpha = float(np.clip(a0 + self.rng.normal(0, 0.1), 0, 1))
                log_t = float(np.clip(t0 + self.rng.normal(0, 0.3), *np.log(SEARCHED_T)))
            params = {"alpha": round(alpha, 4), **base, "temperature": round(math.exp(log_t), 4)}
            early = self.truth(params) + self.rng.normal(0, self.noise.val)
            median = float(np.median([s[0] for s in seen])) if seen else -math.inf
            seen.append((early, alpha, log_t))
            if early < median and self.rng.random() < 0.5:
                continue  # pruned by ASHA: its runs never complete
            self.run(params, seeds, "search")


def simulate_study(budget: Budget, curves: list[Any], rng: np.random.Generator,
                   overrides: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One study with one condition per curve, confirmed adaptively as the searcher does it; ``overrides`` are
    ``key.path=value`` changes to the budget's spec, as ``kdtune run --set`` takes them."""
    from kdtune.spec.schema import apply_overrides

    spec = parse_spec(apply_overrides(_raw_spec(budget.spec), overrides))
    context = Context(spec=spec, metric=objective_of(spec), margin=spec.margin,
                      design=Design(spec.budget.confirm_repeats, spec.budget.confirm_max_repeats),
                      conditions=len(curves))
    results = []
    for curve in curves:
        condition = SimulatedCondition(spec, budget.noise, curve, rng)
        condition.search()
        searched = [a for a in condition.arms.values() if a.search]
        candidates = confirmation_candidates(searched, context, spec.budget.confirm_top_k)
        no_kd = next(a.params for a in searched if a.alpha == 1.0 and "baseline" in a.phases)
        spent = _confirm_adaptively(condition, candidates, no_kd, context)
        entry = recommend_condition(condition.arms, context, _info(curve))
        results.append({"entry": entry, "curve": curve, "seeds": spent,
                        "true_gain": max((condition.truth(p) - condition.truth(no_kd) for p in candidates),
                                         default=0.0)})
    return results


def _confirm_adaptively(condition: SimulatedCondition, candidates: list[dict[str, Any]], no_kd: dict[str, Any],
                        context: Context) -> int:
    """Rounds of fresh seeds for the candidates and alpha = 1 until the verdict is clear or the budget ends."""
    budget = context.spec.budget
    rounds = math.ceil(budget.confirm_max_repeats / budget.confirm_repeats)
    spent = 0
    for index in range(rounds):
        first = budget.seed + CONFIRM_SEED_OFFSET + index * budget.confirm_repeats
        seeds = list(range(first, min(first + budget.confirm_repeats,
                                      budget.seed + CONFIRM_SEED_OFFSET + budget.confirm_max_repeats)))
        for params in [*candidates, no_kd]:
            condition.run(params, seeds, "confirm")
        spent += len(seeds)
        arms = {tuple(p.values()): condition.arms[tuple(p.values())] for p in candidates}
        outcome = confirm([a.confirmed() for a in arms.values()],
                          condition.arms[tuple(no_kd.values())].confirmed(), sign=context.metric.sign,
                          design=context.design, conditions=context.conditions, margin=context.margin)
        if outcome.kind in DECISIVE:
            break
    return spent


def _info(curve: Any) -> dict[str, Any]:
    return {"key": "sim", "condition": {}, "description": "simulated", "cut_short": False,
            "trials": {"complete": 0, "pruned": 0, "failed": 0, "unfinished": 0}, "unfinished_studies": [],
            "teacher": None, "closed_form": None}


def _raw_spec(path: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((Path(__file__).resolve().parents[1] / path).read_text()))


def calibrate(budget: Budget, studies: int, seed: int = 0, overrides: tuple[str, ...] = ()) -> dict[str, float]:
    """The error rates, power, coverage and seeds spent of ``budget`` over ``studies`` simulated studies per case."""
    rng = np.random.default_rng(seed)
    null_kinds: list[set[str]] = []
    effect: Counter[str] = Counter()
    covered = peaked_total = 0
    seeds: list[int] = []
    for _ in range(studies):
        conditions = int(rng.integers(1, 5))
        null = simulate_study(budget, [flat] * conditions, rng, overrides)
        null_kinds.append({r["entry"]["verdict"]["kind"] for r in null})
        seeds += [r["seeds"] for r in null]
        alpha0 = float(rng.choice([0.3, 0.5, 0.7]))
        log_t0 = float(rng.uniform(math.log(2), math.log(10)))
        curves = [peaked(0.01, alpha0, log_t0)] + [flat] * (conditions - 1)
        helped = simulate_study(budget, curves, rng, overrides)[0]
        effect[helped["entry"]["verdict"]["kind"]] += 1
        seeds.append(helped["seeds"])
        interval = helped["entry"]["recommended"]["alpha"]
        peaked_total += 1
        covered += interval["low"] - 1e-9 <= alpha0 <= interval["high"] + 1e-9
    return {
        "P(distil | no effect), family-wise": sum("distil" in k for k in null_kinds) / studies,
        "P(hurts | no effect), family-wise": sum("hurts" in k for k in null_kinds) / studies,
        "P(distil | true +1 point)": effect["distil"] / studies,
        "P(no gain | true +1 point)": effect["no_gain"] / studies,
        "coverage of the true optimum alpha": covered / peaked_total,
        "mean confirmation seeds per condition": float(np.mean(seeds)),
    }


TARGETS = {
    "P(distil | no effect), family-wise": ("<=", 0.05),
    "P(hurts | no effect), family-wise": ("<=", 0.05),
    "P(distil | true +1 point)": (">=", 0.80),
    "P(no gain | true +1 point)": ("<=", 0.05),
    "coverage of the true optimum alpha": (">=", 0.90),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per budget and case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", choices=[b.spec.split("/")[-1].removesuffix(".yaml") for b in BUDGETS],
                        default=None, help="one budget only (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the spec, as `kdtune run --set` does (e.g. budget.confirm_repeats=8)")
    args = parser.parse_args()
    for budget in BUDGETS:
        if args.budget is not None and not budget.spec.endswith(f"/{args.budget}.yaml"):
            continue
        start = time.perf_counter()
        figures = calibrate(budget, args.studies, args.seed, tuple(args.overrides))
        changed = f" with {', '.join(args.overrides)}" if args.overrides else ""
        print(f"\n{budget.name}: {budget.spec}{changed}, {args.studies} null and {args.studies} +1-point "
              f"studies, 1-4 conditions each ({time.perf_counter() - start:.0f} s)")
        for name, value in figures.items():
            target = TARGETS.get(name)
            verdict = ""
            if target is not None:
                ok = value <= target[1] if target[0] == "<=" else value >= target[1]
                verdict = f"   target {target[0]} {target[1]:.0%}: {'met' if ok else 'NOT MET'}"
            shown = f"{value:.1%}" if name.startswith(("P(", "coverage")) else f"{value:.1f}"
            print(f"  {name:<42} {shown:>7}{verdict}")


if __name__ == "__main__":
    main()
