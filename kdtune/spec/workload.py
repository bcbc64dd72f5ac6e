"""How much training a spec asks for, per condition and phase, in seed-epochs (one seed trained for one epoch).

``kdtune plan`` turns these into seconds with step times measured on the machine, and the run's ETA (live and in
``kdtune status``) turns what is left of them into seconds with the pace measured so far. One model for both, so
the plan and the ETA tell the same story:

- **search**: the sampler's proposals at ASHA's *expected* length (:func:`asha_expected_epochs`), the alpha = 1
  and alpha = 0 baselines at full length (ASHA never stops them), ``budget.repeats`` seeds each;
- **confirmation**, round by round: the ``confirm_top_k`` candidates and alpha = 1 on the round's fresh seeds, at
  full length. The rounds up to the first look with the pairs a "distil" or "hurts" verdict waits for always run
  (:func:`~kdtune.spec.rules.min_directional_pairs`; only "no gain" may end sooner); later rounds run only while the verdict is
  unclear, so the plan gives a range (the deciding rounds .. every round) and the ETA counts a later round once it
  has begun (the log says so);
- **transfer** (with a ``fidelity`` section, whose search and baselines run cheap: ``fidelity.epochs`` each, a seed-epoch
  costing :attr:`Workload.search_cost` full ones): the cheap search's best ``fidelity.transfer_top`` configurations
  and both baselines at full length on ``fidelity.transfer_repeats`` seeds, before confirmation;
- **locate**: after a "distil" verdict, ``budget.locate_alphas`` alphas on ``budget.locate_seeds`` seeds each, at full
  length (:mod:`kdtune.analysis.locate`). The plan and the ETA count it in every condition, as for a study that
  ends in "distil"; a condition that ends otherwise skips it.

The worst case (ASHA stops nothing, every round runs) is :attr:`Workload.worst`.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdtune.spec.rules import CHEAP_PHASES
from kdtune.spec.rules import budget_looks
from kdtune.spec.rules import family_level
from kdtune.spec.rules import locate_trials
from kdtune.spec.rules import min_directional_pairs
from kdtune.spec.rules import sweep_trials
from kdtune.spec.rules import tpe_startup_trials
from kdtune.spec.rules import transfer_seeds
from kdtune.spec.rules import transfer_trials
from kdtune.spec.rules import trials_per_condition


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec

#: Simulated searches behind :func:`asha_expected_epochs` (fixed seed: the plan is deterministic).
ASHA_SIMULATIONS = 2000
ASHA_SIMULATED_PROPOSALS = 100
#: A learning sampler's proposals after its random start: as good as the better half of random ones.
LEARNED = 0.5


@dataclass(frozen=True)
class Workload:
    """One condition's training, in seed-epochs, and its trials (each pays Tune's per-trial overhead)."""

    epochs: int  # a run's full length
    search_trials: int  # proposals + baselines (trials_per_condition)
    search_units: float  # expected, with ASHA's stopping
    search_units_worst: float  # every search trial at full length
    round_trials: int  # confirm_top_k + 1 (alpha = 1) per round; 0 without confirmation
    round_units: tuple[float, ...]  # each confirmation round's seed-epochs, at full length
    deciding_rounds: int = 1  # the rounds up to the first look that can end in "distil" (module docstring)
    locate_trials: int = 0  # the locate stage's trials (one per added alpha)
    locate_units: float = 0.0  # their seed-epochs, at full length
    transfer_trials: int = 0  # the transfer check's trials (a fidelity section's; kdtune.analysis.transfer)
    transfer_units: float = 0.0  # their seed-epochs, at full length
    sweep_units: float = 0.0  # what a failed transfer check adds (its alphas at full fidelity): counted at most
    search_epochs: int = 0  # a search run's length: ``fidelity.epochs`` in a cheap search
    search_cost: float = 1.0  # one search seed-epoch in full seed-epochs (a cheap search's share of the work)

    @property
    def after_search(self) -> float:
        """Full seed-epochs of the stages every condition runs after its search besides confirmation: the transfer
        check and the locate stage."""
        return self.transfer_units + self.locate_units

    @property
    def expected(self) -> float:
        """Full seed-epochs when each verdict is clear at the first look that can give it."""
        return self.search_units * self.search_cost + sum(self.round_units[:self.deciding_rounds]) + self.after_search

    @property
    def all_rounds(self) -> float:
        """Full seed-epochs when every confirmation round runs."""
        return self.search_units * self.search_cost + sum(self.round_units) + self.after_search

    @property
    def worst(self) -> float:
        """Full seed-epochs when ASHA stops nothing, a transfer check fails and every confirmation round runs."""
        return self.search_units_worst * self.search_cost + sum(self.round_units) + self.after_search + self.sweep_units

    def length(self, phase: str) -> int:
        """A trial's epochs in ``phase``: a cheap search's are shorter."""
        return (self.search_epochs or self.epochs) if phase in CHEAP_PHASES else self.epochs

    def cost(self, phase: str) -> float:
        """One seed-epoch of ``phase`` in full seed-epochs."""
        return self.search_cost if phase in CHEAP_PHASES else 1.0

    @property
    def search_trial_units(self) -> float:
        """A search-phase trial's expected seed-epochs, in full ones (proposals and baselines averaged)."""
        return self.search_units * self.search_cost / max(1, self.search_trials)


def fidelity_cost(spec: StudySpec) -> float:
    """What one seed-epoch of a cheap search costs against a full one, by its share of the training data: an upper
    bound on the saving, since every epoch still evaluates the whole validation and test splits, and a narrower
    student saves little where the step is not bound by its multiply-adds (a half-width reference student: 0.88 of a
    full seed-epoch on a CPU, ``docs/multi_fidelity.md``). ``kdtune plan`` measures the cheap student instead."""
    return 1.0 if spec.fidelity is None else spec.fidelity.data_fraction


def workload(spec: StudySpec, *, epochs: int | None = None, asha: bool = True,
             search_cost: float | None = None) -> Workload:
    """A condition's :class:`Workload` under ``spec`` (every condition of a spec has the same budget);
    ``epochs``: a run's length if not ``student.epochs`` (the plan's worst case over a searched ``epochs``);
    ``asha``: False for a task that has no epochs to stop at (the study runs it without ASHA); ``search_cost``: a
    cheap search's seed-epoch in full ones, where measured (else :func:`fidelity_cost`)."""
    from kdtune.spec.conditions import expand
    from kdtune.spec.space import baselines

    epochs = int(epochs or spec.student.epochs)
    full = epochs
    if spec.fidelity is not None and asha:  # the search and its baselines at the cheap length
        epochs = spec.fidelity.cheap_epochs(full)
    repeats = spec.budget.repeats
    trials = trials_per_condition(spec)
    unpruned = min(trials, len(baselines(spec)))
    proposals = trials - unpruned
    if asha and spec.scheduler.type == "asha" and proposals:
        random_start = tpe_startup_trials(spec) if spec.sampler == "tpe" else proposals
        proposal_epochs = asha_expected_epochs(proposals, unpruned, epochs, spec.scheduler.grace_period,
                                               spec.scheduler.reduction_factor, random_start=random_start)
    else:
        proposal_epochs = float(epochs)
    search_units = repeats * (unpruned * epochs + proposals * proposal_epochs)
    round_trials = spec.budget.confirm_top_k + 1 if spec.budget.confirm_top_k else 0
    search_epochs, epochs = epochs, full  # everything after the search runs at full fidelity
    looks = budget_looks(spec.budget) if round_trials else ()
    sizes = [b - a for a, b in zip((0, *looks), looks)]
    fewest = min_directional_pairs(family_level(len(expand(spec)), spec.budget.confirm_top_k),
                                   spec.budget.confirm_failure_rate)
    deciding = next((i + 1 for i, n in enumerate(looks) if n >= fewest), len(looks))
    located = locate_trials(spec)
    return Workload(epochs=epochs, search_trials=trials, search_units=search_units,
                    search_units_worst=float(repeats * trials * search_epochs), round_trials=round_trials,
                    round_units=tuple(float(round_trials * n * epochs) for n in sizes), deciding_rounds=max(1, deciding),
                    locate_trials=located, locate_units=float(located * spec.budget.locate_seeds * epochs),
                    transfer_trials=transfer_trials(spec), transfer_units=float(len(transfer_seeds(spec)) * epochs
                                                                                * transfer_trials(spec)),
                    sweep_units=float(len(transfer_seeds(spec)) * epochs * sweep_trials(spec)),
                    search_epochs=search_epochs, search_cost=fidelity_cost(spec) if search_cost is None else search_cost)


def asha_expected_epochs(proposals: int, unpruned: int, max_t: int, grace_period: int, reduction_factor: float,
                         *, random_start: int | None = None, simulations: int = ASHA_SIMULATIONS) -> float:
    """Expected epochs of a proposal under Ray Tune's asynchronous successive halving, by simulation.

    Ray's rule (``AsyncHyperBandScheduler``, one bracket): rungs at ``grace_period * reduction_factor**k`` below
    ``max_t``; a trial reaching a rung stops if its objective is below the ``1 - 1/reduction_factor`` quantile of
    the values recorded there before it (the first to arrive always continues), and its value is recorded either
    way. Here ``unpruned`` trials (the baselines, which kdtune never stops) arrive first, then the proposals; each
    trial keeps one quality at every rung: uniform for the baselines and the sampler's first ``random_start``
    proposals (all of them when None), and uniform over the better half for the rest, which a learning sampler
    (TPE) draws near the best so far. That half is calibrated on two measured studies: the quickstart's proposals
    ran 16.6 epochs of 20 on average (this model: 16.4; all exchangeable: 15.0) and mnist_noise's 13.4 (model
    12.0; exchangeable 9.7). Beyond :data:`ASHA_SIMULATED_PROPOSALS` proposals the share
    stopped has settled, so the first that many stand for all.
    """
    rungs = []
    milestone = float(grace_period)
    while milestone < max_t:
        rungs.append(milestone)
        milestone *= reduction_factor
    if not rungs or proposals <= 0:
        return float(max_t)
    proposals = min(proposals, ASHA_SIMULATED_PROPOSALS)
    start = proposals if random_start is None else min(random_start, proposals)
    simulations = max(200, min(simulations, 50_000 // (unpruned + proposals)))
    rng = random.Random(0)
    share = 1.0 - 1.0 / reduction_factor  # numpy's default (linear) percentile, as Ray computes its cutoff
    total = 0.0
    for _ in range(simulations):
        quality = [rng.random() if i < unpruned + start else LEARNED + (1 - LEARNED) * rng.random()
                   for i in range(unpruned + proposals)]
        running = list(range(unpruned + proposals))  # in order of arrival at the rung
        length = {i: float(max_t) for i in range(unpruned, unpruned + proposals)}
        for milestone in rungs:
            recorded: list[float] = []
            survivors = []
            for i in running:
                value = quality[i]
                if recorded and i >= unpruned:
                    h = share * (len(recorded) - 1)
                    low = int(h)
                    high = min(low + 1, len(recorded) - 1)
                    cutoff = recorded[low] + (h - low) * (recorded[high] - recorded[low])
                    stopped = value < cutoff
                else:
                    stopped = False
                bisect.insort(recorded, value)
                if stopped:
                    length[i] = milestone
                else:
                    survivors.append(i)
            running = survivors
        total += sum(length.values()) / proposals
    return total / simulations
