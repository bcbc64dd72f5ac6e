"""``kdtune recommend``: study folders with synthetic but realistic results in, verdicts and intervals out.

Study folders are built the way the study engine writes them: ``study.json`` from a validated spec and its
expanded conditions, ``teachers.json``, and the results/trials tables through kdtune.records.results' writers. Each
run has several epochs whose best validation epoch is not the best test epoch, so reading the test number at
the wrong epoch shows. Noise is drawn from fixed seeds and centred per configuration over its seeds, so every
configuration's mean is exactly its designed accuracy while the per-seed spread (and so every interval) stays
realistic: the assertions are deterministic and far from their thresholds.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdtune.analysis.recommendation import SCHEMA_VERSION
from kdtune.analysis.recommendation import recommend
from kdtune.cli import main
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.results import CONDITION_COLUMNS
from kdtune.records.results import results_writer
from kdtune.records.results import trials_writer
from kdtune.spec.conditions import expand
from kdtune.spec.schema import parse_spec


GRID_ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
GRID_TEMPERATURES = [2.0, 4.0, 8.0]
SD = 0.003  # seed-to-seed SD of a student's accuracy: 0.3 points
Truth = Callable[[float, float], float]  # (alpha, temperature) -> expected accuracy
Cases = tuple[Path, dict[str, Any]]  # a study folder and its recommendation


def peaked(alpha: float, temperature: float) -> float:
    """Distillation helps: +2 points at alpha = 0.3, T = 4 over the alpha = 1 student at 0.94."""
    bump = max(0.0, 1 - ((alpha - 0.3) / 0.3) ** 2) * (1.0 if temperature == 4.0 else 0.8)
    return 0.94 + 0.02 * bump


def flat(alpha: float, temperature: float) -> float:
    return 0.94


def harmful(alpha: float, temperature: float) -> float:
    """Every distilled student is worse: 1 point, and up to 2 more the more it listens to the teacher."""
    return 0.94 if alpha == 1.0 else 0.93 - 0.02 * (1 - alpha)


def classification_spec(name: str, noise_levels: list[float], *, repeats: int = 10, seed: int = 0,
                        select: str = "best_val", **overrides: Any) -> dict[str, Any]:
    """A grid study's spec; confirmation in rounds of 8 fresh seeds up to 24."""
    raw: dict[str, Any] = {
        "name": name,
        "dataset": {"name": "digits", "seed": 0},
        "teacher": {"epochs": 8, "select": select},
        "conditions": {"noise_level": noise_levels},
        "search": {"alpha": {"type": "float", "low": 0.1, "high": 0.9, "step": 0.1},
                   "temperature": {"type": "categorical", "choices": GRID_TEMPERATURES}},
        "sampler": "grid",
        "budget": {"repeats": repeats, "seed": seed, "confirm_repeats": 8, "confirm_max_repeats": 24,
                   "confirm_failure_rate": 0},
    }
    for path, value in overrides.items():
        node: dict[str, Any] = raw
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return raw


def teacher_info(test_accuracy: float = 0.97, memorisation: float | None = 0.05) -> dict[str, Any]:
    return {"cache_key": "abc123", "selected_epoch": 4, "cache_hit": False,
            "diagnostics": {"test_accuracy": test_accuracy, "val_accuracy": test_accuracy - 0.05,
                            "correction_rate": None if memorisation is None else 0.6,
                            "memorisation_rate": memorisation, "ece": 0.02, "entropy": {"4.0": 0.3}}}


class StudyBuilder:
    """Writes one study folder as the engine does; ``add`` appends one trial (all its seeds) at a time."""

    def __init__(self, folder: Path, raw_spec: dict[str, Any], *, meta: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.spec = parse_spec(raw_spec)
        axis = "noise_level" if self.spec.task.by_epochs else "teacher_error"
        self.conditions = {getattr(c, axis): c for c in expand(self.spec)}
        folder.mkdir(parents=True)
        study = {"kdtune_version": "0.1.0", "spec": self.spec.to_dict(), "created_at": time.time(),
                 "conditions": [c.as_dict() for c in self.conditions.values()], "cut_short": False,
                 "finished_at": time.time(), **(meta or {})}
        (folder / "study.json").write_text(json.dumps(study))
        self.results = results_writer(folder)
        self.trials = trials_writer(folder)
        self.teachers: dict[str, Any] = {}
        self.count = 0

    def teacher(self, level: float, info: dict[str, Any]) -> None:
        self.teachers[self.conditions[level].key] = info
        (self.folder / "teachers.json").write_text(json.dumps(self.teachers))

    def add(self, level: float, params: dict[str, Any], seeds: list[int], val: list[float], test: list[float],
            *, phase: str = "search", state: str | None = "COMPLETE", metric: str = "accuracy",
            extra: Callable[[int, float], dict[str, Any]] | None = None) -> str:
        """``extra(seed, test accuracy)``: more columns for each of the seed's rows (per-class accuracy, ...)."""
        self.count += 1
        trial_id = f"t{self.count:04d}"
        condition = self.conditions[level]
        rows = []
        for seed, v, t in zip(seeds, val, test):
            for epoch, dv, dt in _EPOCH_SHAPE:
                row = {**{k: getattr(condition, k) for k in CONDITION_COLUMNS},
                       "study": self.spec.name, "condition": condition.key, "trial_id": trial_id,
                       "phase": phase, "alpha": params["alpha"], "temperature": params.get("temperature"),
                       "lr": 1e-3, "batch_size": 64, "epochs": 3, "seed": seed, "epoch": epoch,
                       "written_at": time.time()}
                if metric == "accuracy":
                    row.update(val_accuracy=v + dv, test_accuracy=t + dt, **(extra(seed, t + dt) if extra else {}))
                else:  # the linear task: one epoch, losses
                    row.update(val_loss=v, test_excess_mse=t, test_loss=t + 1.0)
                rows.append(row)
                if metric != "accuracy":
                    break
        self.results.append(rows)
        if state is not None:
            self.trials.append([{"trial_id": trial_id, "condition": condition.key, "phase": phase,
                                 "params": json.dumps(params), "state": state, "epochs_done": 3,
                                 "objective": float(np.mean(val)), "ended_at": time.time()}])
        return trial_id


# (epoch, validation offset, test offset): epoch 2 is the best on validation; epoch 3 is better on test.
_EPOCH_SHAPE = ((1, -0.02, -0.02), (2, 0.0, 0.0), (3, -0.004, 0.01))


def centred(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    x = rng.normal(0.0, sd, (n,))
    centered: np.ndarray = x - x.mean()
    return centered


def fill(builder: StudyBuilder, level: float, truth: Truth, *, seeds: list[int], rng_seed: int,
         phase_luck: dict[tuple[float, float], float] | None = None) -> None:
    """The grid plus the two baselines (alpha = 1 and 0 at T = 4, phase baseline) under ``truth``.

    Per seed: a common seed effect, a configuration × seed effect shared by validation and test (the same
    model is evaluated on both), and independent validation and test noise, each of SD ~0.3 points.
    """
    rng = np.random.default_rng(rng_seed)
    seed_effect = centred(rng, len(seeds), SD)
    configs = [(a, t, "search") for a in GRID_ALPHAS for t in GRID_TEMPERATURES] + \
              [(1.0, 4.0, "baseline"), (0.0, 4.0, "baseline")]
    for alpha, temperature, phase in configs:
        shared = seed_effect + centred(rng, len(seeds), SD)
        luck = (phase_luck or {}).get((alpha, temperature), 0.0)
        val = truth(alpha, temperature) + luck + shared + centred(rng, len(seeds), SD)
        test = truth(alpha, temperature) + shared + centred(rng, len(seeds), SD)
        params = {"alpha": alpha, "temperature": temperature}
        builder.add(level, params, seeds, list(val), list(test), phase=phase)


def build(folder: Path, scenarios: dict[float, Truth], *, seeds: list[int] | None = None,
          select: str = "best_val", teachers: dict[float, dict[str, Any]] | None = None,
          meta: dict[str, Any] | None = None, rng_seed: int = 0, **overrides: Any) -> StudyBuilder:
    """A classification study, one condition per noise level of ``scenarios``, 10 seeds by default."""
    seeds = seeds if seeds is not None else list(range(10))
    raw = classification_spec(folder.name, sorted(scenarios), repeats=len(seeds), seed=seeds[0],
                              select=select, **overrides)
    builder = StudyBuilder(folder, raw, meta=meta)
    for i, (level, truth) in enumerate(sorted(scenarios.items())):
        fill(builder, level, truth, seeds=seeds, rng_seed=rng_seed + i)
        default = teacher_info(memorisation=None if level == 0 else 0.05)
        builder.teacher(level, (teachers or {}).get(level, default))
    return builder


def by_noise(report: dict[str, Any], level: float) -> dict[str, Any]:
    return next(c for c in report["conditions"] if c["condition"]["noise_level"] == level)


@pytest.fixture(scope="module")
def three_cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    folder = tmp_path_factory.mktemp("studies") / "noise-study"
    build(folder, {0.0: flat, 0.1: peaked, 0.2: harmful},
          teachers={0.2: teacher_info(test_accuracy=0.95, memorisation=0.34)})
    return folder, recommend([folder])


def confirm(builder: StudyBuilder, level: float, truth: Truth, alphas: list[float], *, seeds: list[int],
            rng_seed: int, temperature: float = 4.0) -> None:
    """Confirmation runs (fresh seeds, phase confirm) of the given alphas at ``temperature`` and of alpha = 1."""
    rng = np.random.default_rng(rng_seed)
    seed_effect = centred(rng, len(seeds), SD)
    for alpha in [*alphas, 1.0]:
        shared = seed_effect + centred(rng, len(seeds), SD)
        val = truth(alpha, temperature) + shared + centred(rng, len(seeds), SD)
        test = truth(alpha, temperature) + shared + centred(rng, len(seeds), SD)
        builder.add(level, {"alpha": alpha, "temperature": 4.0 if alpha == 1.0 else temperature}, seeds,
                    list(val), list(test), phase="confirm")


FRESH = list(range(1000, 1024))  # 24 fresh seeds: three rounds of 8


@pytest.fixture(scope="module")
def confirmed_cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    """Three conditions, each confirmed on 24 fresh seeds: the search's best distilled configuration vs alpha = 1."""
    folder = tmp_path_factory.mktemp("studies") / "confirmed-study"
    builder = build(folder, {0.0: flat, 0.1: peaked, 0.2: harmful},
                    teachers={0.2: teacher_info(test_accuracy=0.95, memorisation=0.34)})
    for i, (level, truth, alpha) in enumerate(((0.0, flat, 0.9), (0.1, peaked, 0.3), (0.2, harmful, 0.9))):
        confirm(builder, level, truth, [alpha], seeds=FRESH, rng_seed=50 + i)
    return folder, recommend([folder])


# ----------------------------------------------------------------------------------------------- verdicts

def test_without_confirmation_runs_the_verdict_is_unconfirmed(three_cases: Cases) -> None:
    """The search's gain is optimistic (its best configuration won on these seeds): no verdict from it."""
    for c in three_cases[1]["conditions"]:
        assert c["verdict"]["kind"] == "unconfirmed" and c["gain"]["source"] == "search"
    c = by_noise(three_cases[1], 0.1)
    assert c["gain"]["mean"] == pytest.approx(0.02, abs=1e-9) and c["gain"]["n_pairs"] == 10
    text = c["verdict"]["text"]
    assert "unconfirmed" in text and "optimistic (winner's curse)" in text and "budget.confirm_top_k" in text
    assert "+2.0 points test accuracy vs no distillation (95% CI +1." in text


def test_the_recommended_alpha_comes_from_the_fitted_curve_with_an_interval(three_cases: Cases) -> None:
    rec = by_noise(three_cases[1], 0.1)["recommended"]
    assert rec["method"] == "polynomial surface" and rec["configurations"] == 29 and rec["source"] == "fit"
    assert rec["params"]["alpha"] == pytest.approx(0.3, abs=0.08)  # the designed optimum
    assert rec["alpha"]["low"] <= 0.3 <= rec["alpha"]["high"] and rec["alpha"]["high"] - rec["alpha"]["low"] <= 0.4
    assert rec["temperature"]["low"] <= rec["temperature"]["value"] <= rec["temperature"]["high"]
    near = rec["near_optimal"]
    assert near["alpha_low"] <= rec["params"]["alpha"] <= near["alpha_high"] and near["tolerance"] == 0.005
    flat_rec = by_noise(three_cases[1], 0.0)["recommended"]
    assert flat_rec["alpha"]["high"] - flat_rec["alpha"]["low"] >= 0.8  # nothing stands out: a wide interval


def test_confirmed_gain_gives_distil(confirmed_cases: Cases) -> None:
    c = by_noise(confirmed_cases[1], 0.1)
    gain = c["gain"]
    assert c["verdict"]["kind"] == "distil" and gain["source"] == "confirm" and gain["n_pairs"] == 24
    assert gain["mean"] == pytest.approx(0.02, abs=1e-9) and gain["low"] > 0.01
    assert gain["confidence"] == pytest.approx(1 - 0.05 / 3)  # Bonferroni over the three conditions
    assert c["confirmed"]["params"]["alpha"] == 0.3 and c["confirmed"]["source"] == "confirm"
    assert c["recommended"]["source"] == "confirm" and c["recommended"]["params"]["alpha"] == 0.3
    # Reported at the best validation epoch (2), not at the best test epoch (3, +1 point).
    assert c["confirmed"]["test"]["mean"] == pytest.approx(0.96, abs=1e-9)
    text = c["verdict"]["text"]
    assert "student reference_student: distil: alpha 0.3, T 4 vs no distillation on 24 fresh paired seeds" in text
    assert "+2.0 points test accuracy vs no distillation (repeated 98.3% CI +1." in text
    assert "weight on the true labels, 1 = no distillation" in text


def test_the_recommended_configuration_is_the_verdicts_answer(confirmed_cases: Cases) -> None:
    """One answer per condition: the confirmed configuration where it pays, alpha = 1 where confirmation found
    that distilling does not; the fitted optimum and the best search configuration keep their own names, and
    one sentence says which is recommended and why."""
    distil, no_gain, hurts = (by_noise(confirmed_cases[1], level) for level in (0.1, 0.0, 0.2))
    rec = distil["recommended"]
    assert rec["source"] == "confirm" and rec["params"] == distil["confirmed"]["params"]
    assert rec["fitted"]["alpha"] != rec["params"]["alpha"]  # the fit's maximum is a point of its own
    assert rec["why"].startswith("Recommended: the confirmed configuration (alpha 0.3, T 4): it beat no distillation")
    assert f"the fitted optimum (alpha ≈ {rec['fitted']['alpha']:.3g}" in rec["why"]
    assert "recommended: alpha 0.3 (may be best: " in distil["verdict"]["text"]
    assert "fitted optimum" not in distil["verdict"]["text"]  # the verdict names the answer, not the fit
    for c, did in ((no_gain, "did no better, within the margin"), (hurts, "did worse")):
        rec = c["recommended"]
        assert rec["source"] == "no_distillation" and rec["params"] == c["no_distillation"]["params"]
        assert rec["params"]["alpha"] == 1.0 and rec["temperature"] is None and rec["alpha"]["high"] == 1.0
        assert rec["why"].startswith(f"Recommended: alpha = 1 (no distillation): the confirmed configuration "
                                     f"(alpha 0.9, T 4) {did}")


def _four_fresh_seeds(tmp_path: Path) -> dict[str, Any]:
    """A flat condition whose candidate alpha 0.9 is confirmed on only 4 fresh seeds: too few to settle."""
    folder = tmp_path / "four-fresh"
    builder = build(folder, {0.0: flat})
    confirm(builder, 0.0, flat, [0.9], seeds=FRESH[:4], rng_seed=7)
    return recommend([folder])["conditions"][0]


def test_an_inconclusive_verdict_recommends_its_candidate(tmp_path: Path) -> None:
    c = _four_fresh_seeds(tmp_path)
    assert c["verdict"]["kind"] == "inconclusive"
    assert c["recommended"]["source"] == "confirm" and c["recommended"]["params"] == c["confirmed"]["params"]
    assert "have not settled yet" in c["recommended"]["why"]
    assert "recommended until more seeds settle it: alpha 0.9" in c["verdict"]["text"]


def test_without_confirmation_the_fitted_optimum_is_recommended_by_that_name(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.1)
    rec = c["recommended"]
    assert rec["source"] == "fit" and rec["params"]["alpha"] == rec["fitted"]["alpha"]
    assert rec["why"].startswith(f"Recommended: the fitted optimum (alpha ≈ {rec['fitted']['alpha']:.3g}")
    assert "recommended from the search alone: alpha ≈ " in c["verdict"]["text"]
    surface = rec["surface"]
    k = len(rec["terms"])
    assert len(surface["coefficients"]) == k and len(surface["covariance"]) == k and surface["df"] == 29 - k


def test_too_few_configurations_say_there_is_no_fitted_interval_and_why_the_alpha_interval(tmp_path: Path) -> None:
    folder = tmp_path / "few"
    builder = StudyBuilder(folder, classification_spec("few", [0.1]))
    rng = np.random.default_rng(3)
    for alpha in (0.0, 0.3, 1.0):
        val = peaked(alpha, 4.0) + centred(rng, 10, SD)
        builder.add(0.1, {"alpha": alpha, "temperature": 4.0}, list(range(10)), list(val), list(val),
                    phase="baseline" if alpha in (0.0, 1.0) else "search")
    c = recommend([folder])["conditions"][0]
    rec = c["recommended"]
    assert rec["method"] == "best observed" and rec["source"] == "best_observed" and rec["surface"] is None
    assert rec["fitted"] == {"alpha": None, "temperature": None}  # no fit: nothing is called fitted
    (note,) = [n for n in c["notes"] if n.startswith("only 3 completed configurations")]
    assert "no fitted optimum and no fitted interval" in note and "without an interval" not in note
    if rec["alpha"]["low"] != rec["alpha"]["high"]:
        assert "holds the configurations the search cannot tell from its best" in note
    assert "the fitted optimum" not in c["verdict"]["text"] + rec["why"]


def test_a_flat_curve_confirms_no_gain_within_the_margin(confirmed_cases: Cases) -> None:
    c = by_noise(confirmed_cases[1], 0.0)
    gain = c["gain"]
    assert c["verdict"]["kind"] == "no_gain"
    assert -0.005 < gain["low"] < 0 < gain["high"] < 0.005
    assert "no gain: any gain or loss is within ±0.5 points" in c["verdict"]["text"]


def test_harm_is_confirmed_and_the_teacher_is_shown_not_blamed(confirmed_cases: Cases) -> None:
    c = by_noise(confirmed_cases[1], 0.2)
    assert c["verdict"]["kind"] == "hurts" and c["gain"]["high"] < 0
    text = c["verdict"]["text"]
    assert "distillation hurts here" in text and "use alpha = 1" in text
    assert "because" not in text  # no causal claim from one teacher number
    assert "Teacher: 95.0% test accuracy; the student alone: 94.0% (95% CI 93." in text
    assert any("predicts the noisy label on 34% of the flipped training labels" in n for n in c["notes"])
    assert not any("teacher.select" in n for n in c["notes"])  # already validation-selected: nothing to suggest


def test_too_few_confirmation_seeds_are_inconclusive_with_the_seeds_needed(tmp_path: Path) -> None:
    c = _four_fresh_seeds(tmp_path)
    assert c["verdict"]["kind"] == "inconclusive"
    assert c["gain"]["low"] < -0.005 and c["gain"]["high"] > 0.005 and c["gain"]["seeds_to_resolve"] > 4
    text = c["verdict"]["text"]
    assert "inconclusive (can't tell yet, which is not the same as no effect)" in text
    assert f"about {c['gain']['seeds_to_resolve']} paired seeds would resolve it" in text


def test_a_wider_margin_turns_inconclusive_into_no_gain(tmp_path: Path) -> None:
    folder = tmp_path / "margin"
    builder = build(folder, {0.0: flat})
    confirm(builder, 0.0, flat, [0.9], seeds=FRESH[:8], rng_seed=7)
    assert recommend([folder])["conditions"][0]["verdict"]["kind"] == "inconclusive"
    wide = recommend([folder], margin=5.0)
    assert wide["margin"] == 0.05 and wide["conditions"][0]["verdict"]["kind"] == "no_gain"


def test_a_final_epoch_teacher_that_memorised_gets_the_best_val_suggestion(tmp_path: Path) -> None:
    folder = tmp_path / "final-teacher"
    build(folder, {0.2: harmful}, select="final", teachers={0.2: teacher_info(memorisation=0.34)})
    notes = recommend([folder])["conditions"][0]["notes"]
    assert any("34%" in n and "a validation-selected teacher is available with `teacher.select: best_val`" in n
               for n in notes)


def test_baselines_and_teacher_are_reported(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.1)
    assert c["no_distillation"]["params"] == {"alpha": 1.0, "temperature": 4.0, "lr": 0.001, "batch_size": 64,
                                              "epochs": 3}
    assert c["pure_distillation"]["params"]["alpha"] == 0.0
    assert c["pure_distillation"]["test"]["mean"] == pytest.approx(peaked(0.0, 4.0), abs=1e-9)
    for arm in (c["no_distillation"], c["pure_distillation"]):
        assert arm["source"] == "search" and arm["test"]["n"] == 10
        assert arm["test"]["low"] < arm["test"]["mean"] < arm["test"]["high"]
    assert c["best_observed"]["params"]["alpha"] == 0.3 and c["best_observed"]["params"]["temperature"] == 4.0
    assert c["teacher"]["test_accuracy"] == 0.97 and c["teacher"]["selected_epoch"] == 4
    assert c["trials"] == {"complete": 29, "pruned": 0, "failed": 0, "unfinished": 0}


def test_pruned_failed_and_unfinished_trials_are_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    builder = build(folder, {0.1: peaked})
    lucky = [0.99] * 10  # far better than anything: used, it would win
    for state in ("PRUNED", "FAIL", None):  # None: never ended (RUNNING)
        builder.add(0.1, {"alpha": 0.55, "temperature": 4.0}, list(range(10)), lucky, lucky, state=state)
    c = recommend([folder])["conditions"][0]
    assert c["best_observed"]["params"]["alpha"] == 0.3 and c["recommended"]["configurations"] == 29
    assert c["trials"] == {"complete": 29, "pruned": 1, "failed": 1, "unfinished": 1}
    assert "1 trial(s) had not ended" in c["verdict"]["text"]


def test_cut_short_study_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "short"
    build(folder, {0.1: peaked}, meta={"cut_short": True})
    report = recommend([folder])
    c = report["conditions"][0]
    assert c["cut_short"] is True and report["studies"][0]["cut_short"] is True
    assert "The study was cut short (29 trials of this condition completed)" in c["verdict"]["text"]


def test_too_few_seeds_cannot_decide(tmp_path: Path) -> None:
    folder = tmp_path / "one-seed"
    build(folder, {0.1: peaked}, seeds=[0])
    c = recommend([folder])["conditions"][0]
    assert c["verdict"]["kind"] == "undetermined"
    assert "only 1 paired seed(s); raise budget.repeats" in c["verdict"]["text"]
    assert c["gain"]["low"] is None


# ------------------------------------------------------------------------------------------------- pooling

def test_pooling_two_studies_narrows_the_intervals(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "seeds-low", tmp_path / "b" / "seeds-high"
    first.parent.mkdir()
    second.parent.mkdir()
    build(first, {0.1: peaked}, seeds=list(range(0, 5)), rng_seed=1)
    build(second, {0.1: peaked}, seeds=list(range(5, 10)), rng_seed=2, dataset__data_root="/elsewhere")
    alone = recommend([first])["conditions"][0]
    pooled_report = recommend([first, second])
    pooled = pooled_report["conditions"][0]
    assert pooled["gain"]["n_pairs"] == 10 and alone["gain"]["n_pairs"] == 5
    width = {name: c["gain"]["high"] - c["gain"]["low"] for name, c in (("alone", alone), ("pooled", pooled))}
    assert width["pooled"] < 0.7 * width["alone"]
    assert pooled["best_observed"]["test"]["n"] == 10
    assert all(t.startswith(("seeds-low/", "seeds-high/")) for t in pooled["best_observed"]["trial_ids"])
    assert [s["label"] for s in pooled_report["studies"]] == ["seeds-low", "seeds-high"]


def test_pooling_studies_that_share_seeds_is_refused(tmp_path: Path) -> None:
    """The same seeds on the same data and teacher are the same runs twice (pseudo-replication)."""
    build(tmp_path / "x", {0.1: peaked}, seeds=[0, 1, 2])
    build(tmp_path / "y", {0.1: peaked}, seeds=[2, 3, 4], rng_seed=5)
    with pytest.raises(UsageError, match=r"cannot pool .*x and .*y: they share student seeds 2, so their runs "
                                         r"repeat each other .*give each study its own budget.seed$"):
        recommend([tmp_path / "x", tmp_path / "y"])


def test_mismatched_studies_are_refused_naming_the_field(tmp_path: Path) -> None:
    build(tmp_path / "eight", {0.1: peaked}, seeds=[0, 1])
    build(tmp_path / "four", {0.1: peaked}, seeds=[2, 3], teacher__epochs=4)
    message = r"cannot pool .*eight and .*four: spec.teacher.epochs differs \(8 vs 4\)"
    with pytest.raises(UsageError, match=message):
        recommend([tmp_path / "eight", tmp_path / "four"])


def test_studies_with_different_conditions_are_refused(tmp_path: Path) -> None:
    build(tmp_path / "one", {0.1: peaked}, seeds=[0, 1])
    build(tmp_path / "two", {0.1: peaked, 0.2: harmful}, seeds=[2, 3])
    with pytest.raises(UsageError, match=r"condition noise_level=0.2 .* is only in .*two"):
        recommend([tmp_path / "one", tmp_path / "two"])


# -------------------------------------------------------------------------------------------------- linear

def test_linear_study_recommends_near_alpha_star_and_confirms_the_gain(tmp_path: Path) -> None:
    """Rows from the real closed-form students (kdtune.tasks.linear.closed_form), as the study engine writes them."""
    from kdtune.tasks.linear.closed_form import closed_form
    from kdtune.tasks.linear.closed_form import fit_student
    from kdtune.tasks.linear.closed_form import make_teacher_weights
    from kdtune.tasks.linear.data import make_linear

    sizes = {"dim": 50, "n_train": 500, "n_val": 5000, "n_test": 5000}
    raw = {"name": "linear", "dataset": {"name": "linear", "linear": sizes}, "teacher": {"error": 0.1},
           "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.05}},
           "sampler": "grid", "budget": {"repeats": 8}}
    builder = StudyBuilder(tmp_path / "linear", raw)
    data = make_linear(**sizes, seed=0)
    assert data.linear_truth is not None
    teacher = make_teacher_weights(data.linear_truth, 0.1, seed=0)
    form = closed_form(data, 0.1)
    builder.teacher(0.1, {"cache_key": None, "selected_epoch": None, "linear": form})

    def add(alpha: float, seeds: list[int], phase: str) -> None:
        fits = [fit_student(data, teacher, alpha, s) for s in seeds]
        builder.add(0.1, {"alpha": alpha}, seeds, [f["val_loss"] for f in fits],
                    [f["test_excess_mse"] for f in fits], phase=phase, metric="mse")

    for alpha in np.round(np.linspace(0, 1, 21), 2):
        add(float(alpha), list(range(8)), "baseline" if alpha in (0.0, 1.0) else "search")
    report = recommend([tmp_path / "linear"])
    c = report["conditions"][0]
    header = (report["objective"], report["mode"], report["test_metric"], report["margin"])
    assert header == ("val_mse", "min", "test_excess_mse", None)  # no margin: excess MSE has no points
    assert c["closed_form"] == pytest.approx(form)
    assert c["recommended"]["params"]["alpha"] == pytest.approx(form["alpha_star"], abs=0.07)
    assert c["recommended"]["temperature"] is None
    assert c["recommended"]["alpha"]["low"] <= form["alpha_star"] <= c["recommended"]["alpha"]["high"]
    assert c["verdict"]["kind"] == "unconfirmed"
    best = c["best_observed"]["params"]["alpha"]
    for alpha in (best, 1.0):
        add(alpha, list(range(1000, 1008)), "confirm")
    c = recommend([tmp_path / "linear"])["conditions"][0]
    # 8 pairs exclude 0, but a one-condition verdict waits for 29: a failure in one run in ten would show by then
    assert c["verdict"]["kind"] == "inconclusive" and c["gain"]["low"] > 0 and c["gain"]["n_pairs"] == 8
    assert "the interval lies above 0, but a verdict here rests on at least 29 paired seeds" in c["verdict"]["text"]
    for alpha in (best, 1.0):
        add(alpha, list(range(1008, 1029)), "confirm")
    c = recommend([tmp_path / "linear"])["conditions"][0]
    assert c["verdict"]["kind"] == "distil" and c["gain"]["low"] > 0 and c["gain"]["source"] == "confirm"
    assert c["gain"]["n_pairs"] == 29
    assert f"closed-form α* = {form['alpha_star']:.3g}" in c["verdict"]["text"]
    assert "reduction of test_excess_mse vs no distillation" in c["verdict"]["text"]


# ------------------------------------------------------------------------------------------- schema and CLI

ARM_KEYS = {"params", "trial_ids", "source", "validation", "test"}
ESTIMATE_KEYS = {"mean", "low", "high", "n"}


def test_schema_is_pinned(confirmed_cases: Cases) -> None:
    report = confirmed_cases[1]
    assert report["schema_version"] == SCHEMA_VERSION == 6
    assert set(report) == {"schema_version", "kdtune_version", "created_at", "studies", "objective", "mode",
                           "test_metric", "margin", "study_margin", "method", "conditions", "notes"}
    assert set(report["studies"][0]) == {"path", "label", "name", "cut_short", "finished"}
    assert set(report["method"]) == {"scoring", "recommended", "located", "verdict", "multiplicity", "equivalence",
                                     "looks", "confidence", "coverage"}
    assert report["method"]["looks"] == [8, 16, 24]
    for c in report["conditions"]:
        assert set(c) == {"key", "condition", "description", "trials", "cut_short", "recommended",
                          "best_observed", "confirmed", "no_distillation", "pure_distillation", "teacher", "gain",
                          "closed_form", "verdict", "notes", "fidelity", "transfer"}
        assert set(c["recommended"]) == {"params", "source", "fitted", "alpha", "temperature", "indistinguishable_from_best",
                                         "method", "terms", "configurations", "near_optimal", "surface", "why",
                                         "located", "searched_at"}
        assert set(c["recommended"]["surface"]) == {"coefficients", "covariance", "df", "log_t_centre"}
        assert set(c["recommended"]["alpha"]) == {"value", "low", "high"}
        assert set(c["recommended"]["near_optimal"]) == {"alpha_low", "alpha_high", "tolerance"}
        for arm in (c["best_observed"], c["confirmed"], c["no_distillation"], c["pure_distillation"]):
            assert set(arm) == ARM_KEYS and set(arm["validation"]) == set(arm["test"]) == ESTIMATE_KEYS
        assert set(c["gain"]) == {"params", "source", "family_level", "mean", "low", "high", "n_pairs", "sd",
                                  "skewness", "nominal_level", "confidence", "seeds_to_resolve"}
        assert set(c["verdict"]) == {"kind", "text", "margin_chosen_after_study"} and c["verdict"]["kind"] in (
            "distil", "hurts", "no_gain", "inconclusive", "unconfirmed", "undetermined")
    assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_the_recommendation_is_deterministic(three_cases: Cases) -> None:
    again = recommend([three_cases[0]])
    for a, b in zip(again["conditions"], three_cases[1]["conditions"]):
        assert a["recommended"] == b["recommended"]


def test_cli_json_writes_the_file_and_prints_it(confirmed_cases: Cases,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = confirmed_cases[0]
    assert main(["recommend", str(folder), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((folder / "recommendation.json").read_text())
    assert printed == written and printed["schema_version"] == 6
    assert by_noise(printed, 0.1)["verdict"]["kind"] == "distil"


def test_cli_table_shows_verdicts(confirmed_cases: Cases, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(confirmed_cases[0])]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "distil: alpha 0.3, T 4 vs no distillation" in out and "distillation hurts here" in out
    assert "alpha = weight on the true labels; 1 = no distillation" in out
    assert "recommendation.json" in out


def test_in_a_log_the_table_keeps_each_condition_on_one_line(confirmed_cases: Cases,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    from kdtune.analysis.recommendation_output import print_recommendation
    from kdtune.log_output import LINE_WIDTH
    from kdtune.log_output import stamped_output

    folder, report = confirmed_cases
    with stamped_output():  # as `kdtune run > log` prints it: 120 characters a line, time stamps first
        print_recommendation(report, folder / "recommendation.json")
    lines = capfd.readouterr().out.splitlines()
    assert max(map(len, lines)) <= LINE_WIDTH
    for c in report["conditions"]:  # its verdict, gain and seeds on its own line, no cell wrapped onto the next
        row = next(line for line in lines if f" {c['key']} " in f"{line} ")
        gain = c["gain"]
        assert c["verdict"]["kind"] in row and f"{100 * gain['mean']:+.1f} ({100 * gain['low']:+.1f} to " in row
        assert f"{c['recommended']['alpha']['value']:.3g}" in row.split(f"{100 * gain['high']:+.1f})")[1]
    assert not any("test accuracy: distilled" in line for line in lines)  # the results are in the lines below
    assert any("the student alone" in line for line in lines)
    print_recommendation(report, folder / "recommendation.json")  # a file or pipe: no width, the whole table
    assert "test accuracy: distilled" in capfd.readouterr().out


@pytest.mark.parametrize(("margin", "message"), [
    ("-1", "--margin = -1.0: must be a number of points of test accuracy in (0, 100]"),
    ("nan", "--margin = nan: must be a number of points of test accuracy in (0, 100]"),
    ("wide", "argument --margin: invalid float value: 'wide'"),
])
def test_cli_bad_margin_is_one_line_exit_2(three_cases: Cases, capsys: pytest.CaptureFixture[str], margin: str,
                                           message: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) if margin == "wide" else _no_exit() as caught:
        code = main(["recommend", str(three_cases[0]), "--margin", margin, "--out", str(out)])
    code = caught.value.code if margin == "wide" else code  # type: ignore[union-attr]
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not out.exists()


def test_cli_margin_on_the_linear_task_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = {"name": "lin", "dataset": {"name": "linear"}, "search": {"alpha": {"type": "float", "low": 0, "high": 1}}}
    builder = StudyBuilder(tmp_path / "lin", raw)
    builder.add(0.1, {"alpha": 1.0}, [0, 1], [1.0, 1.1], [0.1, 0.2], phase="baseline", metric="mse")
    assert main(["recommend", str(tmp_path / "lin"), "--margin", "0.5"]) == 2
    assert "--margin = 0.5: is in points of test accuracy; the linear task's test metric" in capsys.readouterr().err


class _no_exit:
    """A context that expects no SystemExit (the parametrized test's other branch)."""

    value: Any = None

    def __enter__(self) -> _no_exit:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False


def test_cli_pools_into_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path / "p", {0.1: peaked}, seeds=[0, 1, 2])
    build(tmp_path / "q", {0.1: peaked}, seeds=[3, 4, 5], rng_seed=4)
    out = tmp_path / "pooled.json"
    folders = [str(tmp_path / "p"), str(tmp_path / "q")]
    assert main(["recommend", *folders, "--out", str(out), "--format", "json"]) == 0
    assert json.loads(out.read_text())["conditions"][0]["gain"]["n_pairs"] == 6
    assert not (tmp_path / "p" / "recommendation.json").exists()
    capsys.readouterr()


def test_cli_no_completed_trials_is_one_line_exit_1(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    StudyBuilder(tmp_path / "empty", classification_spec("empty", [0.1]))
    assert main(["recommend", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty: no completed trials yet" in err and "Traceback" not in err


def test_cli_missing_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(tmp_path / "nope")]) == 2
    assert "nope: no such study folder" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert main(["recommend", str(tmp_path / "plain")]) == 2
    assert "is not a kdtune study folder (no study.json)" in capsys.readouterr().err


def test_no_completed_trials_raises_a_study_error(tmp_path: Path) -> None:
    StudyBuilder(tmp_path / "fresh", classification_spec("fresh", [0.1]))
    with pytest.raises(StudyError, match=r"fresh: no completed trials yet"):
        recommend([tmp_path / "fresh"])
