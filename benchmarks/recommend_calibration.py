"""How reliable is a recommendation: many simulated studies through the real searcher, scoring and recommend.

Why: a verdict is worth what its error rates are, and those can only be measured over thousands of studies.
:mod:`calibration_sim` runs each simulated study through kdtune's own code (the real ``ConditionSearcher`` with
Optuna TPE, its baselines, its confirmation rounds and stopping rule; ``score_runs`` on per-epoch curves;
``recommend_condition``); only training and ASHA are simulated. alpha is the weight on the true labels: alpha = 1
means no distillation.

Scenarios, each ``KIND:GENERATOR`` or ``KIND`` (generator ``normal``; the generators:
``calibration_sim.GENERATORS``), every study with its spec's own conditions (quickstart 2, mnist_noise 4,
hinton_mnist 1):

* ``null:G``: no configuration is better than alpha = 1, and some are worse (a non-flat null: alpha below a
  plateau edge drawn in 0.3-0.7 loses up to 1-2 points), so choosing the best configuration matters;
* ``plus1:G``: each condition's best configuration is 1 point above alpha = 1, at alpha 0.2, 0.4, 0.6 or 0.8
  (in turn) and a temperature in the middle half of the searched range;
* ``margin:G``: the same curves with the best gain equal to the spec's margin (0.5 points);
* ``shifted:G`` and ``unshifted:G``: the transfer check (:mod:`kdtune.analysis.transfer`). The budget's spec gets
  a fidelity section (``calibration_sim.FIDELITY``: a quarter of the data and of the epochs; the cheap search's
  best 4 configurations, alpha = 1 and alpha = 0 re-run at full fidelity on 5 paired seeds), and each condition a
  cheap surface besides its full one. ``shifted``: the cheap search peaks at alpha 0.2 (+2 points), full fidelity at
  alpha 0.8 (+1 point), where distilling as hard as the cheap optimum loses to no distillation (``SHIFT_DROP``): at
  the best temperature alpha 0.2 loses 2.25 points at full fidelity, 1.25 of them against alpha = 1, which the check
  re-runs (the check sees a loss only against what it re-ran: the cheap search's best, alpha = 1 and alpha = 0).
  ``unshifted``: the same optimum at both fidelities (0.2, 0.4, 0.6 or 0.8 in turn), +1 point at full fidelity and a
  flatter +``UNSHIFTED_CHEAP_HEIGHT`` on the cheap runs, which also end ``calibration_sim.CHEAP_LEVEL`` lower.

Figures, each rate with its 95% Clopper-Pearson interval (Clopper & Pearson 1934, Biometrika 26:404-413):

* false "distil" and false "hurts", family-wise (the study says it in some condition) and judged against the
  configuration the verdict confirmed: "distil" when its true gain is <= 0, "hurts" when it is >= 0;
* per condition: the share of each verdict: under ``plus1`` "distil" is the power and "no gain" a false "no gain";
  under ``margin`` "no gain" is the equivalence error (the best gain equals the margin);
* under peaked curves, the recommended alpha interval (``recommended.alpha``): coverage of the true optimum, its
  median width (with a distribution-free order-statistic interval), the share that is all of [0, 1], and the mean
  error of the fitted optimum (``recommended.fitted.alpha``) and of the reported alpha (``recommended.alpha.value``),
  with t-intervals;
* the transfer check (``shifted``, ``unshifted``): the share of each of its verdicts ("fails" under ``shifted`` is
  its power, under ``unshifted`` its false alarm); "fails" among the conditions whose cheap choice truly loses at
  most the margin against the best re-run configuration (a false alarm by what the check estimates, in either
  scenario) and among those where it loses at least twice the margin (the power at a clear shift); the median
  Spearman of cheap and full means with its order-statistic interval; and what the study ends with at full
  fidelity: the share of conditions whose cheap choice, and whose recommended configuration, is within the margin
  of the full optimum, and what each truly loses against it (points, t-intervals);
* cost: confirmation pairs and seed-runs per condition, seconds per simulated study.

    python benchmarks/recommend_calibration.py --studies 100                           # every budget and scenario
    python benchmarks/recommend_calibration.py --budgets mnist_noise --scenarios null:left plus1:normal --json out.json
    python benchmarks/recommend_calibration.py --budgets mnist_noise --scenarios shifted unshifted
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibration_sim as sim  # noqa: E402
from machine import load_average  # noqa: E402
from machine import with_interval  # noqa: E402

from kdtune.analysis.scoring import t_estimate  # noqa: E402


OPTIMA = (0.2, 0.4, 0.6, 0.8)
#: The kinds whose studies search cheap and run the transfer check (their spec gets a fidelity section).
TRANSFER_KINDS = ("shifted", "unshifted")
KINDS = ("null", "plus1", "margin", *TRANSFER_KINDS)
DEFAULT_SCENARIOS = tuple(f"null:{g}" for g in sim.GENERATORS) + ("plus1:normal", "margin:normal") + tuple(
    f"{k}:normal" for k in TRANSFER_KINDS)
SHIFT = (0.2, 0.8)  # ``shifted``: the optimum alpha of the cheap search, and at full fidelity
#: ``shifted``: how far below alpha = 1 alpha = 0 falls at full fidelity (the null's shape below 0.8), so that the
#: cheap optimum's 1 - (0.6 / 0.8)^2 = 0.44 points of peak become 0.44 - 3 x 0.56 = -1.25 at the best temperature.
SHIFT_DROP = 3 * sim.POINT
#: ``shifted``: the cheap curve's peak, higher than the full one's (distillation pays more on a quarter of the data
#: and epochs), so that the cheap search lands near its optimum: with a 1-point cheap peak its choice was at alpha
#: 0.44-0.6 in 3 of 20 conditions (mnist_noise), where the shift costs little at full fidelity and the check rightly
#: says "holds"; with 2 points at most 0.43 in 40.
SHIFT_CHEAP_HEIGHT = 2 * sim.POINT
UNSHIFTED_CHEAP_HEIGHT = 0.6 * sim.POINT  # ``unshifted``: the cheap curve's peak, flatter than the full one's point
CONFIDENCE = 0.95
#: The issue's targets: (figure, comparison, value); judged on the point estimate, and "clear" when the whole
#: interval meets them too.
TARGETS = (("false distil (family-wise)", "<=", 0.05), ("false hurts (family-wise)", "<=", 0.05),
           ("power", ">=", 0.80), ("alpha coverage", ">=", 0.90), ("alpha median width", "<=", 0.35),
           ("fitted-optimum error", "<=", 0.10), ("transfer check false alarm", "<=", 0.05))


@dataclass(frozen=True)
class Scenario:
    """What the true surfaces of a study's conditions are, and how its distilled runs' noise is shaped."""

    kind: str
    generator: str

    @classmethod
    def parse(cls, text: str) -> Scenario:
        kind, _, generator = text.partition(":")
        generator = generator or "normal"
        if kind not in KINDS or generator not in sim.GENERATORS:
            raise SystemExit(f"--scenarios: {text!r} is not KIND[:GENERATOR] with KIND in {', '.join(KINDS)} and "
                             f"GENERATOR in {', '.join(sim.GENERATORS)} (normal where left out)")
        return cls(kind, generator)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.generator}"

    @property
    def fidelity(self) -> bool:
        """Whether the study searches cheap (a fidelity section) and runs the transfer check."""
        return self.kind in TRANSFER_KINDS

    def truths(self, raw_spec: dict[str, Any], conditions: int, study: int, margin: float,
               rng: np.random.Generator) -> list[sim.Truth]:
        low, high = sim.log_t_middle(raw_spec)
        if self.kind == "null":
            return [sim.Truth("null", sim.NULL_DROP, float(rng.uniform(0.3, 0.7)), float(rng.uniform(low, high)))
                    for _ in range(conditions)]
        if self.kind in TRANSFER_KINDS:  # the same best temperature at both fidelities
            t0s = [float(rng.uniform(low, high)) for _ in range(conditions)]
            if self.kind == "shifted":
                cheap, full = SHIFT
                return [sim.Truth("peak", sim.POINT, full, t0, drop=SHIFT_DROP,
                                  cheap=sim.Truth("peak", SHIFT_CHEAP_HEIGHT, cheap, t0)) for t0 in t0s]
            optima = [OPTIMA[(study + i) % len(OPTIMA)] for i in range(conditions)]
            return [sim.Truth("peak", sim.POINT, o, t0, cheap=sim.Truth("peak", UNSHIFTED_CHEAP_HEIGHT, o, t0))
                    for o, t0 in zip(optima, t0s)]
        height = sim.POINT if self.kind == "plus1" else margin
        return [sim.Truth("peak", height, OPTIMA[(study + i) % len(OPTIMA)], float(rng.uniform(low, high)))
                for i in range(conditions)]


@dataclass
class Row:
    """One budget and scenario: every simulated study's conditions."""

    budget: str
    scenario: Scenario
    studies: list[list[sim.ConditionResult]]
    seconds: list[float]

    @property
    def conditions(self) -> list[sim.ConditionResult]:
        return [c for study in self.studies for c in study]


def run_row(budget: sim.Budget, scenario: Scenario, studies: int, *, seed: int = 0, overrides: tuple[str, ...] = (),
            progress: Callable[[int, float], None] | None = None) -> Row:
    """``studies`` simulated studies of ``budget`` under ``scenario``; each draws from its own random stream
    (the seed, the budget, the scenario and its index), so rows are reproducible one at a time."""
    raw = sim.load_budget_spec(budget, overrides, fidelity=scenario.fidelity)
    spec = sim.parse_spec(raw)
    conditions = len(sim.expand(spec))
    margin = spec.margin if spec.margin is not None else sim.POINT / 2
    row = Row(budget=budget.name, scenario=scenario, studies=[], seconds=[])
    for index in range(studies):
        rng = np.random.default_rng([seed, zlib.crc32(budget.name.encode()), zlib.crc32(scenario.name.encode()), index])
        truths = scenario.truths(raw, conditions, index, margin, rng)
        results, seconds = sim.simulate_study(budget, raw, truths, scenario.generator, study_seed=100 * index, rng=rng)
        row.studies.append(results)
        row.seconds.append(seconds)
        if progress is not None:
            progress(index + 1, seconds)
    return row


# --------------------------------------------------------------------------------------------------- figures

def rate(hits: int, n: int) -> dict[str, Any]:
    """A share with its two-sided 95% Clopper-Pearson interval (exact; valid at every n and share)."""
    from scipy.stats import binomtest

    if n == 0:
        return {"mean": None, "low": None, "high": None, "k": 0, "n": 0}
    ci = binomtest(hits, n).proportion_ci(CONFIDENCE, method="exact")
    return {"mean": hits / n, "low": float(ci.low), "high": float(ci.high), "k": hits, "n": n}


def median(values: list[float]) -> dict[str, Any]:
    """The median with a distribution-free interval: the order statistics x_(j) and x_(n+1-j) around it, j the
    largest with P(Binomial(n, 1/2) < j) <= 2.5% (coverage >= 95% for any continuous distribution)."""
    from scipy.stats import binom

    x = sorted(values)
    n = len(x)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    j = int(binom.ppf((1 - CONFIDENCE) / 2, n, 0.5))  # the smallest k with P(B <= k) >= 2.5%: P(B <= j - 1) < 2.5%
    low, high = (x[j - 1], x[n - j]) if j >= 1 else (None, None)
    return {"mean": float(np.median(x)), "low": low, "high": high, "n": n}


def mean(values: list[float]) -> dict[str, Any]:
    """The mean with its two-sided 95% t-interval (kdtune's own, ``scoring.t_estimate``)."""
    return t_estimate(values)


def false_distil(c: sim.ConditionResult) -> bool:
    gain = c.judged_gain
    return c.kind == "distil" and gain is not None and gain <= 0


def false_hurts(c: sim.ConditionResult) -> bool:
    gain = c.judged_gain
    return c.kind == "hurts" and gain is not None and gain >= 0


def alpha_figures(conditions: list[sim.ConditionResult]) -> dict[str, Any]:
    """How well the recommended alpha interval locates the true optimum (peaked curves)."""
    covered, widths, whole, fitted, reported = 0, [], 0, [], []
    for c in conditions:
        rec = c.entry["recommended"]
        if rec is None:
            continue
        interval, star = rec["alpha"], c.truth.alpha_star
        covered += interval["low"] - 1e-9 <= star <= interval["high"] + 1e-9
        widths.append(interval["high"] - interval["low"])
        whole += interval["low"] <= 0.0 and interval["high"] >= 1.0
        located = rec.get("located")  # the locate stage's optimum, where it ran; else the search's fitted one
        if located is not None:
            fitted.append(abs(located["alpha"] - star))
        elif (rec.get("fitted") or {}).get("alpha") is not None:  # null where too few configurations to fit
            fitted.append(abs(rec["fitted"]["alpha"] - star))
        reported.append(abs(interval["value"] - star))
    n = len(widths)
    return {"coverage": rate(covered, n), "median_width": median(widths), "whole_range": rate(whole, n),
            "no_fit": rate(n - len(fitted), n), "fitted_error": mean(fitted), "reported_error": mean(reported)}


def transfer_figures(conditions: list[sim.ConditionResult]) -> dict[str, Any]:
    """How the transfer check judged, and what the study ended with at full fidelity (the module docstring).

    Besides each verdict's share, "fails" is counted where it is wrong and where it is plainly due, by the cheap
    choice's true loss against the best configuration the check re-ran (what the check estimates): at most the
    tolerance (the margin), a false alarm; at least twice it, a shift the check must flag. The check cannot see a
    loss against a configuration it did not re-run, which the losses against the full optimum show."""
    checked = [(c, c.transfer) for c in conditions if c.transfer is not None]
    verdicts = [t["verdict"] for _, t in checked]
    n = len(conditions)

    def near(regret: float | None, tolerance: float) -> bool:
        return regret is not None and regret <= tolerance + 1e-12

    def fails_where(keep: Callable[[float, float], bool]) -> dict[str, Any]:
        picked = [t["verdict"] for c, t in checked if c.rerun_regret is not None and keep(c.rerun_regret, t["tolerance"])]
        return rate(picked.count("fails"), len(picked))

    choice = [c.choice_regret for c, _ in checked if c.choice_regret is not None]
    recommended = [c.recommended_regret for c, _ in checked if c.recommended_regret is not None]
    return {**{v: rate(verdicts.count(v), n) for v in ("fails", "holds", "unclear")},
            "no_check": rate(n - len(checked), n),
            "false_alarm": fails_where(near),
            "clear_shift_power": fails_where(lambda regret, tolerance: regret >= 2 * tolerance),
            "spearman": median([t["spearman"]["value"] for _, t in checked if t["spearman"]["value"] is not None]),
            "choice_near_optimal": rate(sum(near(c.choice_regret, t["tolerance"]) for c, t in checked), len(checked)),
            "recommended_near_optimal": rate(sum(near(c.recommended_regret, t["tolerance"]) for c, t in checked),
                                             len(checked)),
            "choice_loss_points": mean([r / sim.POINT for r in choice]),
            "recommended_loss_points": mean([r / sim.POINT for r in recommended])}


def summarise(row: Row) -> dict[str, Any]:
    """Every figure of a row (see the module docstring)."""
    conditions = row.conditions
    n = len(conditions)
    kinds = [c.kind for c in conditions]
    out: dict[str, Any] = {
        "budget": row.budget, "scenario": row.scenario.name, "studies": len(row.studies), "conditions": n,
        "family_false_distil": rate(sum(any(map(false_distil, s)) for s in row.studies), len(row.studies)),
        "family_false_hurts": rate(sum(any(map(false_hurts, s)) for s in row.studies), len(row.studies)),
        "verdicts": {k: rate(kinds.count(k), n) for k in ("distil", "no_gain", "hurts", "inconclusive",
                                                           "unconfirmed", "undetermined")},
        "confirm_pairs": mean([c.confirm_pairs for c in conditions]),
        "seed_runs": mean([c.seed_runs for c in conditions]),
        "seconds_per_study": float(np.mean(row.seconds)) if row.seconds else None,
    }
    if row.scenario.kind != "null":
        out["alpha"] = alpha_figures(conditions)
        optima = [o for o in OPTIMA if any(c.truth.alpha_star == o for c in conditions)]
        out["alpha_by_optimum"] = {str(o): alpha_figures([c for c in conditions if c.truth.alpha_star == o])
                                   for o in optima}
    if row.scenario.fidelity:
        out["transfer"] = transfer_figures(conditions)
    return out


def targets(figures: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(budget, scenario, target, measured, met) for every target a row measures."""
    out = []
    for f in figures:
        measured: dict[str, dict[str, Any]] = {}
        if f["scenario"].startswith("null:"):
            measured["false distil (family-wise)"] = f["family_false_distil"]
            measured["false hurts (family-wise)"] = f["family_false_hurts"]
        elif f["scenario"].startswith("plus1:"):
            measured["power"] = f["verdicts"]["distil"]
            measured["alpha coverage"] = f["alpha"]["coverage"]
            measured["alpha median width"] = f["alpha"]["median_width"]
            measured["fitted-optimum error"] = f["alpha"]["fitted_error"]
        elif f["scenario"].startswith("unshifted:"):
            measured["transfer check false alarm"] = f["transfer"]["fails"]
        for name, op, goal in TARGETS:
            if name not in measured or measured[name]["mean"] is None:
                continue
            est = measured[name]
            clear = est["low"] is not None and _meets(est["low"], op, goal) and _meets(est["high"], op, goal)
            verdict = "met (interval clear)" if clear else "met" if _meets(est["mean"], op, goal) else "NOT MET"
            shown = _fmt(est, percent=name not in ("alpha median width", "fitted-optimum error"))
            out.append((f["budget"], f["scenario"], f"{name} {op} {goal:g}", shown, verdict))
    return out


def _meets(value: float, op: str, goal: float) -> bool:
    return value <= goal if op == "<=" else value >= goal


# ---------------------------------------------------------------------------------------------------- output

def _fmt(est: dict[str, Any] | None, *, percent: bool = True) -> str:
    if est is None or est.get("mean") is None:
        return "–"
    return with_interval(est, "{:.1%}" if percent else "{:.2f}")


def _count(est: dict[str, Any]) -> str:
    """A rate with its interval and its counts, for shares of a subset whose size varies."""
    return f"{_fmt(est)} ({est['k']}/{est['n']})"


def verdict_table(figures: list[dict[str, Any]]) -> str:
    lines = ["| scenario | studies (conditions) | false distil, family-wise | false hurts, family-wise | distil | "
             "no gain | hurts | inconclusive | confirm pairs | seed-runs | s/study |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        null = f["scenario"].startswith("null:")
        v = f["verdicts"]
        lines.append(f"| {f['scenario']} | {f['studies']} ({f['conditions']}) | "
                     f"{_fmt(f['family_false_distil']) if null else '–'} | {_fmt(f['family_false_hurts'])} | "
                     f"{_fmt(v['distil'])} | {_fmt(v['no_gain'])} | {_fmt(v['hurts'])} | {_fmt(v['inconclusive'])} | "
                     f"{f['confirm_pairs']['mean']:.1f} | {f['seed_runs']['mean']:.0f} | {f['seconds_per_study']:.2f} |")
    return "\n".join(lines)


def alpha_table(figures: list[dict[str, Any]]) -> str:
    lines = ["| scenario | true optimum | conditions | coverage | median width | all of [0, 1] | "
             "no fit | fitted-optimum error | reported-alpha error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        if "alpha" not in f:
            continue
        for label, a in [("all", f["alpha"]), *f["alpha_by_optimum"].items()]:
            lines.append(f"| {f['scenario']} | {label} | {a['coverage']['n']} | {_fmt(a['coverage'])} | "
                         f"{_fmt(a['median_width'], percent=False)} | {_fmt(a['whole_range'])} | {_fmt(a['no_fit'])} | "
                         f"{_fmt(a['fitted_error'], percent=False)} | {_fmt(a['reported_error'], percent=False)} |")
    return "\n".join(lines)


def transfer_table(figures: list[dict[str, Any]]) -> str:
    lines = ["| scenario | conditions | fails | holds | unclear | no check | fails where the cheap choice truly "
             "loses <= the margin | fails where it loses >= twice it | median Spearman | cheap choice near-optimal | "
             "recommended near-optimal | cheap choice loses (points) | recommended loses (points) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        if "transfer" not in f:
            continue
        t = f["transfer"]
        lines.append(f"| {f['scenario']} | {f['conditions']} | {_fmt(t['fails'])} | {_fmt(t['holds'])} | "
                     f"{_fmt(t['unclear'])} | {_fmt(t['no_check'])} | {_count(t['false_alarm'])} | "
                     f"{_count(t['clear_shift_power'])} | {_fmt(t['spearman'], percent=False)} | "
                     f"{_fmt(t['choice_near_optimal'])} | {_fmt(t['recommended_near_optimal'])} | "
                     f"{_fmt(t['choice_loss_points'], percent=False)} | "
                     f"{_fmt(t['recommended_loss_points'], percent=False)} |")
    return "\n".join(lines)


def commit() -> str:
    """The commit measured (``+changes`` when the working tree differs from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=sim.REPO, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "--", "kdtune") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per budget and scenario")
    parser.add_argument("--budgets", nargs="+", choices=list(sim.BUDGETS), default=list(sim.BUDGETS))
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS), metavar="KIND[:GENERATOR]",
                        help=f"kinds {', '.join(KINDS)}; generators {', '.join(sim.GENERATORS)}, normal where left "
                             "out (default: every null, and plus1, margin, shifted, unshifted with normal)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change every budget's spec, as `kdtune run --set` does (e.g. budget.confirm_repeats=8)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write every figure (and every condition) here, after every row; the rows an earlier, "
                             "interrupted run of the same commit and settings wrote there are kept, not run again")
    args = parser.parse_args()
    scenarios = [Scenario.parse(s) for s in args.scenarios]
    start_load, start = load_average(), time.perf_counter()
    print(f"load average at start: {start_load}; commit {commit()}; {args.studies} studies per row", flush=True)
    report: dict[str, Any] = {"commit": commit(), "studies": args.studies, "seed": args.seed,
                              "overrides": args.overrides, "load_start": start_load, "budgets": {}}
    earlier = _earlier(args.json, report)
    for name in args.budgets:
        budget = sim.BUDGETS[name]
        figures, records = [], {}
        for scenario in scenarios:
            if scenario.name in earlier.get(name, {}).get("conditions", {}):
                kept = earlier[name]
                figures.append(next(f for f in kept["figures"] if f["scenario"] == scenario.name))
                records[scenario.name] = kept["conditions"][scenario.name]
                report["budgets"][name] = {"figures": figures, "conditions": records}
                continue
            def progress(done: int, seconds: float, label: str = f"{name} {scenario.name}") -> None:
                if done == args.studies or done % max(1, args.studies // 5) == 0:
                    print(f"  {label}: {done}/{args.studies} studies ({time.perf_counter() - start:.0f} s in all)",
                          file=sys.stderr, flush=True)
            row = run_row(budget, scenario, args.studies, seed=args.seed, overrides=tuple(args.overrides),
                          progress=progress)
            figures.append(summarise(row))
            records[scenario.name] = [_record(c) for c in row.conditions]
            report["budgets"][name] = {"figures": figures, "conditions": records}
            if args.json is not None:  # after every row, so that an interrupted run keeps what it measured
                args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\n### {name} ({budget.spec}{', ' + ', '.join(args.overrides) if args.overrides else ''})\n")
        print(verdict_table(figures))
        if any("alpha" in f for f in figures):
            print("\n" + alpha_table(figures))
        if any("transfer" in f for f in figures):
            print("\n" + transfer_table(figures))
    met = [t for name in args.budgets for t in targets(report["budgets"][name]["figures"])]
    print("\n| budget | scenario | target | measured | |\n| --- | --- | --- | --- | --- |")
    for t in met:
        print("| " + " | ".join(t) + " |")
    report["load_end"] = load_average()
    report["seconds"] = time.perf_counter() - start
    print(f"\nload average at end: {report['load_end']}; {report['seconds']:.0f} s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def _earlier(path: Path | None, report: dict[str, Any]) -> dict[str, Any]:
    """The rows an interrupted run with the same commit, studies, seed and overrides left in ``path``."""
    if path is None or not path.exists():
        return {}
    old = json.loads(path.read_text())
    same = all(old.get(k) == report[k] for k in ("commit", "studies", "seed", "overrides"))
    if same:
        print(f"keeping the rows already in {path} (load average then: {old['load_start']})", flush=True)
        report["load_start"] = f"{old['load_start']} (first part), {report['load_start']}"
    return dict(old["budgets"]) if same else {}


def _record(c: sim.ConditionResult) -> dict[str, Any]:
    """One condition, for re-analysis: its truth, verdict, judged gain, alpha interval and cost."""
    rec = c.entry["recommended"] or {}
    gain = c.entry["gain"] or {}
    transfer = c.transfer or {}
    return {"truth": dataclasses.asdict(c.truth), "kind": c.kind, "judged_gain": c.judged_gain,
            "gain": gain.get("mean"), "low": gain.get("low"), "high": gain.get("high"), "n_pairs": gain.get("n_pairs"),
            "alpha": rec.get("alpha"), "fitted_alpha": (rec.get("fitted") or {}).get("alpha"),
            "confirm_pairs": c.confirm_pairs, "seed_runs": c.seed_runs, "trials": c.trials,
            "transfer": transfer.get("verdict"), "spearman": (transfer.get("spearman") or {}).get("value"),
            "choice_regret": c.choice_regret, "rerun_regret": c.rerun_regret,
            "recommended_regret": c.recommended_regret}


if __name__ == "__main__":
    main()
