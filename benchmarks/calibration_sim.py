"""Simulated studies through kdtune's real searcher, scoring and recommendation: only training and ASHA are faked.

Why: a verdict's error rates can only be measured over thousands of studies, which cannot be trained. Everything
that decides is the study's own code: :class:`kdtune.study.search.ConditionSearcher` (each condition's Optuna TPE
study on an in-memory storage, its enqueued alpha = 1 and alpha = 0 baselines, the choice of what to confirm, its
confirmation rounds on fresh paired seeds and its stopping rule), fed the way Ray Tune feeds it
(``on_trial_result`` for each epoch the scheduler lets continue, ``on_trial_complete`` with the last result, the
per-seed ``scores`` a trial reports), then :func:`kdtune.analysis.scoring.score_runs` on every run's epochs (best
validation epoch, test metric at that epoch) and :func:`kdtune.analysis.recommendation.recommend_condition`.
alpha is the weight on the true labels: alpha = 1 means no distillation.

A simulated trial returns per-epoch validation and test accuracies for each of its seeds, in accuracy units:

    level(e) = mu - gap (1 - p(e)) + a_s + (g(alpha, T) + b_cs) p(e),     p(e) = (1 - exp(-4e/E)) / (1 - exp(-4))
    val(e)   = level(e) + w_cse + v_cse,      test(e) = level(e) + w_cse + t_cse

``g`` is the condition's true response surface (:class:`Truth`: the gain over alpha = 1, which T cannot change),
``a_s`` the seed's effect on every configuration of the condition (it cancels in paired comparisons), ``b_cs`` the
run's own effect, shared by its epochs and by its validation and test scores (what makes the search's winner look
better on test too: the winner's curse), ``w`` an epoch's wobble shared by both splits (best-epoch selection reads
it), ``v`` and ``t`` each split's evaluation noise. The generator (:data:`GENERATORS`) shapes ``b_cs``; every one
adds mean zero, so the true gain of a configuration is ``g`` whatever the generator.

A spec with a ``fidelity`` section (:mod:`kdtune.spec.fidelity`) runs its search and baselines cheap: the searcher
hands those trials a ``fidelity`` dict (:data:`kdtune.spec.rules.CHEAP_PHASES`), and the simulated trial then trains
``fidelity["epochs"]`` epochs, on the condition's cheap surface (:attr:`Truth.cheap`, where one is given), from a
level ``CHEAP_LEVEL`` lower, with seed effects of its own. Every other phase (the transfer check, confirmation,
locate) runs at full fidelity on ``g``. Its rows carry the configuration as handed out (full epochs), as the study's
results recorder writes them, so that a configuration's cheap and full runs meet in one arm.

ASHA is simulated as Ray Tune's ``AsyncHyperBandScheduler`` decides with one bracket (asynchronous successive
halving, Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning", MLSys): rungs at
grace_period * reduction_factor^k up to the search's epochs (``fidelity.epochs`` in a cheap search, as the driver
sets ``max_t``); a trial reaching a rung stops when its objective is below the
(1 - 1/reduction_factor) quantile of the values recorded there before it; baselines and confirmation runs are
recorded but never stopped (:data:`kdtune.spec.rules.UNPRUNED_PHASES`), one ASHA per condition. Trials run one at a
time (a study with one trial slot), so TPE always sees every earlier result.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from kdtune.analysis.arms import Arm  # noqa: E402
from kdtune.analysis.arms import add_run  # noqa: E402
from kdtune.analysis.recommendation import recommend_condition  # noqa: E402
from kdtune.analysis.scoring import score_runs  # noqa: E402
from kdtune.spec.conditions import Condition  # noqa: E402
from kdtune.spec.conditions import expand  # noqa: E402
from kdtune.spec.rules import UNPRUNED_PHASES  # noqa: E402
from kdtune.spec.rules import phase_epochs  # noqa: E402
from kdtune.spec.rules import trial_outcome  # noqa: E402
from kdtune.spec.schema import StudySpec  # noqa: E402
from kdtune.spec.schema import apply_overrides  # noqa: E402
from kdtune.spec.schema import parse_spec  # noqa: E402
from kdtune.study.search import ConditionSearcher  # noqa: E402
from kdtune.study.search import create_studies  # noqa: E402
from kdtune.tasks import objective_of  # noqa: E402
from kdtune.trial_io import SEARCH_PARAMS  # noqa: E402
from kdtune.trial_io import TrialConfig  # noqa: E402
from kdtune.trial_io import TrialResult  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
PREFIX = "calibration"
MU = 0.97  # final accuracy of alpha = 1
GAP = 0.3  # how far below its final level a run starts
POINT = 0.01  # one point of accuracy
NULL_DROP = 1.0 * POINT  # how much worse than alpha = 1 pure distillation is under a non-flat null, at its best T
T_WIDTH = 0.8  # the surfaces' spread in log T
FAILURE_RATE = 0.1  # "failure": one distilled run in ten ...
FAILURE_LOSS = 10.0  # ... loses this many paired SDs; the other nine gain a ninth of it (mean zero)
SKEW_SHAPE = 0.5  # "left" / "right": a gamma with this shape (skewness 2 / sqrt(shape) = 2.8), one paired SD wide
CHEAP_LEVEL = 2 * POINT  # how far below a full-fidelity run's level a cheap one ends (less data, fewer epochs)
#: The fidelity section the transfer-check scenarios add to a budget's spec: a quarter of the training data, and a
#: quarter of the epochs (at least ASHA's grace period, which must fit in them); the cheap search's best 4
#: configurations and both baselines re-run at full fidelity on 5 paired seeds.
FIDELITY = {"data_fraction": 0.25, "transfer_top": 4, "transfer_repeats": 5}


@dataclass(frozen=True)
class Noise:
    """Spreads of one budget's data, in accuracy units (0.01 = one point); see the module docstring."""

    seed: float  # a_s
    run: float  # b_cs
    epoch: float  # w_cse
    val: float  # v_cse
    test: float  # t_cse

    @property
    def paired_sd(self) -> float:
        """About the SD of one seed's paired test difference between two configurations (at their last epoch)."""
        return math.sqrt(2 * (self.run ** 2 + self.epoch ** 2 + self.test ** 2))


@dataclass(frozen=True)
class Budget:
    """A shipped spec (its conditions, search, budget, scheduler and margin) and the noise of its data."""

    name: str
    spec: str
    noise: Noise


#: The paired SDs are the measured ones: about 1 point on digits (360 test images: the quickstart's runs), 0.4 on
#: 10k MNIST (mnist_noise), 0.2 on 60k MNIST with the Hinton students (docs/reproduction.md, part 5: the students
#: alone spread 0.18 points, the distilled ones 0.03).
BUDGETS = {
    "quickstart": Budget("quickstart", "search_spaces/quickstart.yaml",
                         Noise(seed=0.005, run=0.005, epoch=0.003, val=0.005, test=0.004)),
    "mnist_noise": Budget("mnist_noise", "search_spaces/mnist_noise.yaml",
                          Noise(seed=0.003, run=0.002, epoch=0.0012, val=0.0035, test=0.0016)),
    "hinton_mnist": Budget("hinton_mnist", "search_spaces/hinton_mnist.yaml",
                           Noise(seed=0.001, run=0.0012, epoch=0.0006, val=0.001, test=0.0007)),
}

#: How a distilled run's own effect b_cs departs from N(0, run); every one has mean zero.
GENERATORS = {
    "normal": "b ~ N(0, run), the model the Pocock level assumes",
    "t3": "b ~ run * t(3) / sqrt(3): heavy tails, every run",
    "unequal": "b ~ N(0, run * (1 + 2 alpha^2)): noisier towards alpha = 1, as the Hinton study's students alone",
    "left": "distilled runs add sd * (k - Gamma(k)) / sqrt(k), k = 0.5: usually a small gain, sometimes a large loss",
    "right": "distilled runs add sd * (Gamma(k) - k) / sqrt(k), k = 0.5: usually a small loss, sometimes a large gain",
    "failure": "one distilled run in ten loses 10 paired SDs, the others gain 10/9 of one",
}


@dataclass(frozen=True)
class Truth:
    """One condition's true gain over alpha = 1 as a function of (alpha, T), in accuracy units.

    ``peak``: ``height`` at (``alpha_star``, ``log_t0``), a parabola in alpha on each side (0 at alpha = 1, never
    below 0), Gaussian in log T, less ``drop`` times the null's shape below ``alpha_star`` (0 by default): a
    surface on which too much distillation hurts. ``null``: no configuration better than alpha = 1, none worse for
    alpha >= ``alpha_star``, and worse the further below it (``height``, ``NULL_DROP`` in the scenarios, at
    alpha = 0 at the best T, twice that far from it): choosing the best configuration matters, as it does in a real
    study. ``cheap``: the surface a cheap trial sees (a study with a fidelity section), None: this one; the truth
    itself is the full-fidelity surface, the one verdicts are judged against.
    """

    kind: str  # "peak" | "null"
    height: float
    alpha_star: float
    log_t0: float
    drop: float = 0.0
    cheap: Truth | None = None

    def gain(self, alpha: float, temperature: float | None) -> float:
        near_t = 1.0 if temperature is None else math.exp(-((math.log(temperature) - self.log_t0) ** 2)
                                                          / (2 * T_WIDTH ** 2))
        below = 0.0 if alpha >= self.alpha_star else ((self.alpha_star - alpha) / self.alpha_star) ** 2 * (2.0 - near_t)
        if self.kind == "null":
            return -self.height * below
        width = (1.0 - self.alpha_star) if alpha >= self.alpha_star else max(self.alpha_star, 1.0 - self.alpha_star)
        return self.height * (1.0 - ((alpha - self.alpha_star) / width) ** 2) * near_t - self.drop * below

    @property
    def best(self) -> float:
        """The largest gain over the searched space: ``height`` at the peak (where ``drop`` adds nothing), 0 under
        the null (alpha = 1 and the plateau above ``alpha_star``)."""
        return self.height if self.kind == "peak" else 0.0

    def regret(self, params: dict[str, Any]) -> float:
        """How much a configuration loses against the best one, on this surface."""
        return self.best - self.gain(float(params["alpha"]), params.get("temperature"))

    def seen(self, fidelity: dict[str, Any] | None) -> Truth:
        """The surface a trial with this ``fidelity`` (its TrialConfig's; None: full fidelity) trains on."""
        return self.cheap if fidelity and self.cheap is not None else self


def run_effects(generator: str, rng: np.random.Generator, alpha: float, size: int, noise: Noise) -> np.ndarray:
    """Each seed's b_cs for one configuration (see :data:`GENERATORS`)."""
    if generator == "t3":
        base = noise.run * rng.standard_t(3, size) / math.sqrt(3)
    elif generator == "unequal":
        base = rng.normal(0.0, noise.run * (1 + 2 * alpha ** 2), size)
    else:
        base = rng.normal(0.0, noise.run, size)
    if alpha == 1.0 or generator not in ("left", "right", "failure"):
        return base
    sd = noise.paired_sd
    if generator == "failure":
        failed = rng.random(size) < FAILURE_RATE
        loss = FAILURE_LOSS * sd
        return base + np.where(failed, -loss, loss * FAILURE_RATE / (1 - FAILURE_RATE))
    skew = (rng.gamma(SKEW_SHAPE, 1.0, size) - SKEW_SHAPE) / math.sqrt(SKEW_SHAPE)
    return base + sd * (-skew if generator == "left" else skew)


def progress(epochs: int) -> np.ndarray:
    """p(e) for e = 1..epochs: a saturating learning curve, 1 at the last epoch."""
    e = np.arange(1, epochs + 1)
    return (1 - np.exp(-4 * e / epochs)) / (1 - math.exp(-4))


class Asha:
    """One condition's asynchronous successive halving, as Ray Tune's AsyncHyperBandScheduler (one bracket)."""

    def __init__(self, *, grace_period: int, max_t: int, reduction_factor: float, sign: float) -> None:
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)  # Ray's MAX_RUNGS, s = 0
        self.rungs: dict[float, dict[str, float]] = {grace_period * reduction_factor ** k: {}
                                                     for k in reversed(range(count))}
        self.quantile = (1 - 1 / reduction_factor) * 100
        self.sign = sign

    def stops(self, trial_id: str, epoch: int, objective: float, phase: str) -> bool:
        """Record the trial at the rung it just reached; True when it falls below the rung's cutoff."""
        value = self.sign * objective
        for milestone, recorded in self.rungs.items():
            if epoch < milestone or trial_id in recorded:
                continue
            below = bool(recorded) and value < float(np.nanpercentile(list(recorded.values()), self.quantile))
            recorded[trial_id] = value
            return below and phase not in UNPRUNED_PHASES
        return False


class InMemorySearcher(ConditionSearcher):
    """The study's searcher, unchanged, on an in-memory Optuna storage (its seam ``open_storage``)."""

    def __init__(self, storage: optuna.storages.BaseStorage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.memory = storage

    def open_storage(self) -> optuna.storages.BaseStorage:
        return self.memory


@dataclass
class ConditionResult:
    """What one simulated condition ended with."""

    key: str
    truth: Truth
    entry: dict[str, Any]  # recommend_condition's entry
    arms: dict[tuple[Any, ...], Arm]
    trials: dict[str, int]  # ended trials per state
    seed_runs: int  # runs trained (seeds x trials, pruned ones included)
    seed_epochs: int
    rounds: list[list[int]]  # the seeds of each confirmation round, in the order they ran
    transfer_verdict: str | None = None  # the transfer check's verdict the searcher confirmed by (None: no check)

    @property
    def kind(self) -> str:
        return str(self.entry["verdict"]["kind"])

    @property
    def confirm_pairs(self) -> int:
        """Fresh paired seeds the confirmation spent (alpha = 1's confirmation runs)."""
        return max((len(a.confirm) for a in self.arms.values() if a.alpha == 1.0), default=0)

    @property
    def judged_gain(self) -> float | None:
        """The true gain of the configuration the verdict judged (None without one)."""
        confirmed = self.entry.get("confirmed")
        if confirmed is None:
            return None
        params = confirmed["params"]
        return self.truth.gain(float(params["alpha"]), params.get("temperature"))

    @property
    def transfer(self) -> dict[str, Any] | None:
        """The recommendation's transfer check (None: no fidelity section, or too few runs to check)."""
        return self.entry.get("transfer")

    @property
    def choice_regret(self) -> float | None:
        """What the cheap search's choice truly loses at full fidelity against the full optimum (None: no check)."""
        return None if self.transfer is None else self.truth.regret(self.transfer["cheap_choice"])

    @property
    def rerun_regret(self) -> float | None:
        """What the cheap search's choice truly loses at full fidelity against the best configuration the check
        re-ran: the quantity the check estimates, so a "fails" where it is within the tolerance is a false alarm."""
        if self.transfer is None:
            return None
        best = min(self.truth.regret(c["params"]) for c in self.transfer["configurations"])
        return self.truth.regret(self.transfer["cheap_choice"]) - best

    @property
    def recommended_regret(self) -> float | None:
        """What the recommended configuration truly loses at full fidelity against the full optimum."""
        recommended = self.entry.get("recommended")
        return None if recommended is None else self.truth.regret(recommended["params"])


@dataclass
class SimulatedStudy:
    """One study of a budget: its spec's conditions, each with its own truth, run through the real searcher."""

    budget: Budget
    spec: StudySpec
    truths: dict[str, Truth]
    generator: str
    rng: np.random.Generator
    seed_effects: dict[tuple[str, int, bool], float] = field(default_factory=dict)  # (condition, seed, cheap)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # trial id -> its rows
    ended: dict[str, TrialResult] = field(default_factory=dict)  # trial id -> its last result

    def run(self) -> list[ConditionResult]:
        """Search, confirm and recommend every condition; the searcher decides what runs and when it stops."""
        spec = self.spec
        keys = list(self.truths)
        storage = optuna.storages.InMemoryStorage()
        create_studies(spec, storage, keys, prefix=PREFIX, join=False)
        searcher = InMemorySearcher(storage, spec=spec, storage_url="sqlite:///:memory:", conditions=keys,
                                    study_dir=Path("."), optuna_prefix=PREFIX)
        metric = objective_of(spec)
        asha = {k: Asha(grace_period=spec.scheduler.grace_period, max_t=phase_epochs(spec, "search"),
                        reduction_factor=spec.scheduler.reduction_factor, sign=metric.sign) for k in keys}
        configs: dict[str, TrialConfig] = {}
        while True:
            trial_id = f"trial-{len(configs):05d}"
            config = searcher.suggest(trial_id)
            if config == ConditionSearcher.FINISHED:
                break
            if not isinstance(config, dict):  # None: wait for a running trial, but none runs here
                raise RuntimeError(f"the searcher has nothing to run and is not finished ({config!r})")
            configs[trial_id] = config
            self._train(trial_id, config, searcher, asha[config["condition"]])
        return [self._recommend(key, configs, metric, searcher) for key in keys]

    def _train(self, trial_id: str, config: TrialConfig, searcher: ConditionSearcher, asha: Asha) -> None:
        """One trial: every seed's epochs, reported one epoch at a time as Tune reports them to the searcher."""
        metric = objective_of(self.spec)
        condition, params, seeds = config["condition"], config["params"], config["seeds"]
        fidelity = config.get("fidelity")  # a cheap trial trains its own epochs; its rows keep params as handed out
        epochs = int(fidelity["epochs"] if fidelity else params["epochs"])
        val, test = self._curves(condition, params, seeds, epochs, fidelity)
        best = np.maximum.accumulate(metric.sign * val, axis=0) * metric.sign  # each seed's best so far
        rows = self.rows.setdefault(trial_id, [])
        fixed = {"condition": condition, "trial_id": trial_id, "phase": config["phase"],
                 **{p: params.get(p) for p in SEARCH_PARAMS}, "trial_state": "RUNNING"}
        for e in range(epochs):
            rows += [{**fixed, "seed": s, "epoch": e + 1, metric.column: float(val[e, i]),
                      metric.test_column: float(test[e, i])} for i, s in enumerate(seeds)]
            result: TrialResult = {"objective": float(best[e].mean()), "epoch": e + 1, "rows": [], "node_id": "simulation",
                                   "nan": False, "scores": []}
            last = e + 1 == epochs
            if last or asha.stops(trial_id, e + 1, result["objective"], config["phase"]):
                scored = {r.seed: r for r in score_runs(rows, metric)}  # best validation epoch so far
                result["scores"] = [[s, scored[s].objective, scored[s].test] for s in seeds]
                self.ended[trial_id] = result
                searcher.on_trial_complete(trial_id, result)
                return
            searcher.on_trial_result(trial_id, result)

    def _curves(self, condition: str, params: dict[str, Any], seeds: list[int], epochs: int,
                fidelity: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, seeds) validation and test accuracies (the module docstring's model) at the trial's fidelity."""
        noise, rng = self.budget.noise, self.rng
        alpha = float(params["alpha"])
        cheap = bool(fidelity)
        gain = self.truths[condition].seen(fidelity).gain(alpha, params.get("temperature"))
        seed_effect = np.array([self.seed_effects.setdefault((condition, s, cheap), float(rng.normal(0.0, noise.seed)))
                                for s in seeds])
        own = run_effects(self.generator, rng, alpha, len(seeds), noise)
        p = progress(epochs)[:, None]
        level = MU - (CHEAP_LEVEL if cheap else 0.0) - GAP * (1 - p) + seed_effect + (gain + own) * p
        wobble = rng.normal(0.0, noise.epoch, level.shape)
        return (level + wobble + rng.normal(0.0, noise.val, level.shape),
                level + wobble + rng.normal(0.0, noise.test, level.shape))

    def _recommend(self, key: str, configs: dict[str, TrialConfig], metric: Any,
                   searcher: ConditionSearcher) -> ConditionResult:
        """The condition's COMPLETE trials, scored by ``score_runs`` and filed into arms, as ``kdtune recommend``
        reads a study folder, then ``recommend_condition``."""
        states: dict[str, int] = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        complete, seed_runs, seed_epochs, rounds = [], 0, 0, []
        for trial_id, config in configs.items():
            if config["condition"] != key:
                continue
            if config["phase"] == "confirm" and float(config["params"]["alpha"]) == 1.0:
                rounds.append(list(config["seeds"]))
            result = self.ended[trial_id]
            state, _ = trial_outcome(result, False, phase_epochs(self.spec, config["phase"]))
            states[state] += 1
            seed_runs += len(config["seeds"])
            seed_epochs += len(config["seeds"]) * int(result["epoch"])
            if state == "COMPLETE":
                complete += [{**r, "trial_state": state} for r in self.rows[trial_id]]
        arms: dict[tuple[Any, ...], Arm] = {}
        for run in score_runs(complete, metric):
            add_run(arms, run, PREFIX)
        # The context the searcher judged its rounds with (margin, design, conditions), so that the verdict
        # here is read the way the study read it when it stopped.
        entry = recommend_condition(arms, searcher._context(), _info(key, self.spec, states))
        return ConditionResult(key=key, truth=self.truths[key], entry=entry, arms=arms, trials=states,
                               seed_runs=seed_runs, seed_epochs=seed_epochs, rounds=rounds,
                               transfer_verdict=searcher.transfer_verdict[key])


def _info(key: str, spec: StudySpec, states: dict[str, int]) -> dict[str, Any]:
    """What a condition's entry says besides its runs (as ``kdtune.analysis.arms.condition_info``): no teacher."""
    condition: Condition = next(c for c in expand(spec) if c.key == key)
    return {"key": key, "condition": condition.as_dict(), "description": condition.describe(), "cut_short": False,
            "trials": {"complete": states["COMPLETE"], "pruned": states["PRUNED"], "failed": states["FAIL"],
                       "unfinished": 0},
            "unfinished_studies": [], "teacher": None, "closed_form": None}


def load_budget_spec(budget: Budget, overrides: tuple[str, ...] = (), *, fidelity: bool = False) -> dict[str, Any]:
    """The budget's spec as a raw dict, with :func:`with_fidelity`'s section where ``fidelity``, then ``kdtune run
    --set`` style ``overrides`` (so they can change the fidelity section too)."""
    import yaml

    raw = dict(yaml.safe_load((REPO / budget.spec).read_text()))
    return apply_overrides(with_fidelity(raw) if fidelity else raw, overrides)


def with_fidelity(raw_spec: dict[str, Any]) -> dict[str, Any]:
    """``raw_spec`` with :data:`FIDELITY`'s section: a quarter of the student's epochs, but at least ASHA's grace
    period (``kdtune.spec.fidelity.check_fidelity`` refuses a cheap search that ASHA would stop before its first
    rung), so that every budget's spec stays valid."""
    epochs = int(raw_spec["student"]["epochs"])
    grace = int(raw_spec.get("scheduler", {}).get("grace_period", 1))
    return {**raw_spec, "fidelity": {**FIDELITY, "epochs": min(epochs, max(epochs // 4, grace))}}


def simulate_study(budget: Budget, raw_spec: dict[str, Any], truths: list[Truth], generator: str, *,
                   study_seed: int, rng: np.random.Generator) -> tuple[list[ConditionResult], float]:
    """One study, its conditions given ``truths`` in the spec's order, and the seconds it took.

    ``study_seed`` becomes ``budget.seed`` (the Optuna samplers' seeds and the student seeds' numbers), so studies
    differ in their TPE draws as real studies with different seeds do.
    """
    start = time.perf_counter()
    spec = parse_spec({**raw_spec, "budget": {**raw_spec.get("budget", {}), "seed": study_seed}})
    keys = [c.key for c in expand(spec)]
    if len(truths) != len(keys):
        raise ValueError(f"{budget.name} has {len(keys)} conditions; {len(truths)} truths given")
    study = SimulatedStudy(budget=budget, spec=spec, truths=dict(zip(keys, truths)), generator=generator, rng=rng)
    return study.run(), time.perf_counter() - start


def log_t_middle(raw_spec: dict[str, Any]) -> tuple[float, float]:
    """The middle half of the searched log T range: where the true surfaces put their best temperature."""
    t = raw_spec["search"].get("temperature")
    if t is None:
        return (0.0, 0.0)
    low, high = math.log(float(t["low"])), math.log(float(t["high"]))
    return (low + (high - low) / 4, high - (high - low) / 4)


optuna.logging.set_verbosity(optuna.logging.WARNING)
