"""``kdtune recommend``: study folders with synthetic but realistic results in, verdicts and intervals out.

Study folders are built the way the study engine writes them: ``study.json`` from a validated spec and its
expanded conditions, ``teachers.json``, and the results/trials tables through kdtune.results' writers. Each
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

from kdtune.cli import main
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.plan import expand
from kdtune.recommend import SCHEMA_VERSION
from kdtune.recommend import recommend
from kdtune.results import CONDITION_COLUMNS
from kdtune.results import results_writer
from kdtune.results import trials_writer
from kdtune.spec import parse_spec


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
    raw: dict[str, Any] = {
        "name": name,
        "dataset": {"name": "digits", "seed": 0},
        "teacher": {"epochs": 8, "select": select},
        "conditions": {"noise_level": noise_levels},
        "search": {"alpha": {"type": "float", "low": 0.1, "high": 0.9, "step": 0.1},
                   "temperature": {"type": "categorical", "choices": GRID_TEMPERATURES}},
        "sampler": "grid",
        "budget": {"repeats": repeats, "seed": seed},
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
        axis = "noise_level" if self.spec.task == "classification" else "teacher_error"
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
            *, phase: str = "search", state: str | None = "COMPLETE", metric: str = "accuracy") -> str:
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
                    row.update(val_accuracy=v + dv, test_accuracy=t + dt)
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


# ----------------------------------------------------------------------------------------------- verdicts

def test_distillation_that_helps_is_recommended_with_intervals(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.1)
    rec = c["recommended"]
    assert rec["params"]["alpha"] == 0.3 and rec["params"]["temperature"] == 4.0
    alpha, temperature = rec["alpha"], rec["temperature"]
    assert alpha["low"] <= 0.3 <= alpha["high"] and alpha["high"] - alpha["low"] <= 0.2
    assert temperature["value"] == 4.0 and temperature["low"] <= 4.0 <= temperature["high"]
    assert 1 <= rec["near_optimal"]["size"] <= 6 and rec["near_optimal"]["coverage"] >= 0.95
    # Reported at the best validation epoch (2), not at the best test epoch (3, +1 point).
    assert rec["test"]["mean"] == pytest.approx(0.96, abs=1e-9)
    assert rec["test"]["low"] < 0.96 < rec["test"]["high"] and rec["test"]["n"] == 10
    gain = c["gain"]
    assert gain["mean"] == pytest.approx(0.02, abs=1e-9) and gain["low"] > 0.01 and gain["n_pairs"] == 10
    assert gain["p_value"] < 0.001 and gain["wilcoxon_p"] < 0.01 and gain["source"] == "search"
    assert c["verdict"]["kind"] == "distil"
    text = c["verdict"]["text"]
    assert "10% symmetric label noise" in text and "distil with alpha ≈ 0.3 (" in text and "T ≈ 4" in text
    assert "weight on the true labels, 1 = no distillation" in text
    assert "+2.0 points test accuracy vs no distillation (95% CI +1." in text


def test_flat_alpha_gives_no_measurable_gain(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.0)
    assert c["gain"]["low"] < 0 < c["gain"]["high"] and c["gain"]["p_value"] > 0.2
    assert c["verdict"]["kind"] == "no_gain"
    assert "distillation does not help here (no measurable gain)" in c["verdict"]["text"]
    assert c["recommended"]["near_optimal"]["size"] > 5  # nothing stands out: many configurations tie


def test_harm_is_explained_by_the_teachers_memorisation(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.2)
    assert c["recommended"]["params"]["alpha"] == 1.0 and c["recommended"]["temperature"] is None
    assert c["gain"]["params"]["alpha"] == 0.9 and c["gain"]["high"] < 0
    assert c["verdict"]["kind"] == "hurts"
    text = c["verdict"]["text"]
    assert "distillation hurts here because the teacher memorised 34% of the flipped training labels" in text
    assert "validation chose no distillation (alpha = 1)" in text
    assert "teacher.select" not in text  # the teacher is already validation-selected: nothing to suggest
    assert c["teacher"]["memorisation_rate"] == 0.34 and c["teacher"]["select"] == "best_val"


def test_a_final_epoch_teacher_that_memorised_gets_the_best_val_suggestion(tmp_path: Path) -> None:
    folder = tmp_path / "final-teacher"
    build(folder, {0.2: harmful}, select="final", teachers={0.2: teacher_info(memorisation=0.34)})
    text = recommend([folder])["conditions"][0]["verdict"]["text"]
    assert "memorised 34%" in text
    assert "a validation-selected teacher is available with `teacher.select: best_val`" in text


def test_a_teacher_worse_than_the_student_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "weak-teacher"
    build(folder, {0.1: harmful}, teachers={0.1: teacher_info(test_accuracy=0.931, memorisation=0.1)})
    c = recommend([folder])["conditions"][0]
    assert c["verdict"]["kind"] == "hurts"
    assert "the teacher (93.1%) is worse than the student trained alone (94.0%)" in c["verdict"]["text"]
    assert c["no_distillation"]["test"]["mean"] == pytest.approx(0.94, abs=1e-9)


def test_baselines_and_teacher_are_reported(three_cases: Cases) -> None:
    c = by_noise(three_cases[1], 0.1)
    assert c["no_distillation"]["params"] == {"alpha": 1.0, "temperature": 4.0, "lr": 0.001, "batch_size": 64,
                                              "epochs": 3}
    assert c["pure_distillation"]["params"]["alpha"] == 0.0
    assert c["pure_distillation"]["test"]["mean"] == pytest.approx(peaked(0.0, 4.0), abs=1e-9)
    for arm in (c["no_distillation"], c["pure_distillation"]):
        assert arm["source"] == "search" and arm["test"]["n"] == 10
        assert arm["test"]["low"] < arm["test"]["mean"] < arm["test"]["high"]
    assert c["teacher"]["test_accuracy"] == 0.97 and c["teacher"]["selected_epoch"] == 4
    assert c["trials"] == {"complete": 29, "pruned": 0, "failed": 0, "unfinished": 0}


def test_pruned_failed_and_unfinished_trials_are_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    builder = build(folder, {0.1: peaked})
    lucky = [0.99] * 10  # far better than anything: used, it would win
    for state in ("PRUNED", "FAIL", None):  # None: never ended (RUNNING)
        builder.add(0.1, {"alpha": 0.55, "temperature": 4.0}, list(range(10)), lucky, lucky, state=state)
    c = recommend([folder])["conditions"][0]
    assert c["recommended"]["params"]["alpha"] == 0.3
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
    assert c["gain"]["low"] is None and c["gain"]["p_value"] is None


def test_few_seeds_are_flagged(tmp_path: Path) -> None:
    folder = tmp_path / "three-seeds"
    build(folder, {0.1: peaked}, seeds=[0, 1, 2])
    c = recommend([folder])["conditions"][0]
    assert any("few paired seeds (n = 3)" in note for note in c["notes"])


# ------------------------------------------------------------------------------------------- confirmation

def test_confirmation_runs_decide_and_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "confirmed"
    builder = StudyBuilder(folder, classification_spec(folder.name, [0.1]))
    # In the search, alpha 0.4 got lucky on validation (+0.3 points) and beats the truly better 0.3 (by 0.08
    # points); over search and confirmation runs together, 0.3 is ahead again (by 0.05 points).
    fill(builder, 0.1, peaked, seeds=list(range(10)), rng_seed=3, phase_luck={(0.4, 4.0): 0.003})
    builder.teacher(0.1, teacher_info())
    rng = np.random.default_rng(9)
    seeds = list(range(1000, 1008))
    for alpha in (0.4, 0.3, 1.0):  # top 2 of the search, and the baseline
        shared = centred(rng, 8, SD)
        val = peaked(alpha, 4.0) + shared + centred(rng, 8, SD)
        test = peaked(alpha, 4.0) + shared + centred(rng, 8, SD)
        builder.add(0.1, {"alpha": alpha, "temperature": 4.0}, seeds, list(val), list(test), phase="confirm")
    c = recommend([folder])["conditions"][0]
    rec = c["recommended"]
    assert rec["params"]["alpha"] == 0.3 and rec["selected_on"] == "search+confirm"
    assert rec["source"] == "confirm" and rec["validation"]["n"] == 8
    assert rec["test"]["n"] == 8 and rec["test"]["mean"] == pytest.approx(0.96, abs=1e-9)
    assert c["gain"]["source"] == "confirm" and c["gain"]["n_pairs"] == 8
    assert c["no_distillation"]["source"] == "confirm"
    assert "confirmation changed the choice from alpha 0.4, T 4 (search) to alpha 0.3, T 4" in c["notes"]


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
    assert pooled["recommended"]["test"]["n"] == 10
    assert all(t.startswith(("seeds-low/", "seeds-high/")) for t in pooled["recommended"]["trial_ids"])
    assert len(pooled["recommended"]["trial_ids"]) == 2
    assert [s["label"] for s in pooled_report["studies"]] == ["seeds-low", "seeds-high"]
    assert pooled_report["notes"] == []


def test_pooling_studies_with_the_same_seeds_warns(tmp_path: Path) -> None:
    build(tmp_path / "x", {0.1: peaked}, seeds=[0, 1, 2])
    build(tmp_path / "y", {0.1: peaked}, seeds=[0, 1, 2], rng_seed=5)
    notes = recommend([tmp_path / "x", tmp_path / "y"])["notes"]
    assert len(notes) == 1 and "x and y share student seeds [0, 1, 2]" in notes[0]


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

def test_linear_study_recommends_near_alpha_star(tmp_path: Path) -> None:
    """Rows from the real closed-form students (kdtune.linear), as the study engine writes them."""
    from kdtune.data import make_linear
    from kdtune.linear import closed_form
    from kdtune.linear import fit_student
    from kdtune.linear import make_teacher_weights

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
    seeds = list(range(8))
    for alpha in np.round(np.linspace(0, 1, 21), 2):
        fits = [fit_student(data, teacher, float(alpha), s) for s in seeds]
        phase = "baseline" if alpha in (0.0, 1.0) else "search"
        builder.add(0.1, {"alpha": float(alpha)}, seeds, [f["val_loss"] for f in fits],
                    [f["test_excess_mse"] for f in fits], phase=phase, metric="mse")
    report = recommend([tmp_path / "linear"])
    c = report["conditions"][0]
    header = (report["objective"], report["mode"], report["test_metric"])
    assert header == ("val_mse", "min", "test_excess_mse")
    assert c["closed_form"] == pytest.approx(form)
    assert c["recommended"]["params"]["alpha"] == pytest.approx(form["alpha_star"], abs=0.07)
    assert c["recommended"]["temperature"] is None
    assert c["recommended"]["alpha"]["low"] <= form["alpha_star"] <= c["recommended"]["alpha"]["high"]
    assert c["verdict"]["kind"] == "distil" and c["gain"]["low"] > 0
    assert f"closed-form α* = {form['alpha_star']:.3g}" in c["verdict"]["text"]
    assert "reduction of test_excess_mse vs no distillation" in c["verdict"]["text"]


# ------------------------------------------------------------------------------------------- schema and CLI

ARM_KEYS = {"params", "trial_ids", "source", "validation", "test"}
ESTIMATE_KEYS = {"mean", "low", "high", "n"}


def test_schema_is_pinned(three_cases: Cases) -> None:
    report = three_cases[1]
    assert report["schema_version"] == SCHEMA_VERSION == 1
    assert set(report) == {"schema_version", "kdtune_version", "created_at", "studies", "objective", "mode",
                           "test_metric", "method", "conditions", "notes"}
    assert set(report["studies"][0]) == {"path", "label", "name", "cut_short", "finished"}
    assert set(report["method"]) == {"selection", "interval", "resamples", "bootstrap_seed", "confidence",
                                     "near_optimal_coverage", "test_interval", "gain_test"}
    for c in report["conditions"]:
        assert set(c) == {"key", "condition", "description", "trials", "cut_short", "recommended",
                          "no_distillation", "pure_distillation", "teacher", "gain", "closed_form", "verdict",
                          "notes"}
        assert set(c["trials"]) == {"complete", "pruned", "failed", "unfinished"}
        assert set(c["recommended"]) == ARM_KEYS | {"alpha", "temperature", "near_optimal", "selected_on"}
        assert set(c["recommended"]["alpha"]) == {"value", "low", "high"}
        assert set(c["recommended"]["near_optimal"]) == {"size", "coverage", "alpha_low", "alpha_high",
                                                         "configurations"}
        for arm in (c["recommended"], c["no_distillation"], c["pure_distillation"]):
            assert ARM_KEYS <= set(arm) and set(arm["validation"]) == set(arm["test"]) == ESTIMATE_KEYS
        assert set(c["teacher"]) == {"test_accuracy", "val_accuracy", "correction_rate", "memorisation_rate",
                                     "ece", "selected_epoch", "select", "cache_key"}
        assert set(c["gain"]) == {"params", "mean", "low", "high", "n_pairs", "p_value", "wilcoxon_p",
                                  "source"}
        assert set(c["verdict"]) == {"kind", "text"} and c["verdict"]["kind"] in (
            "distil", "no_gain", "hurts", "undetermined")
    assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_the_bootstrap_is_deterministic(three_cases: Cases) -> None:
    again = recommend([three_cases[0]])
    for a, b in zip(again["conditions"], three_cases[1]["conditions"]):
        assert a["recommended"]["alpha"] == b["recommended"]["alpha"]
        assert a["recommended"]["near_optimal"] == b["recommended"]["near_optimal"]


def test_cli_json_writes_the_file_and_prints_it(three_cases: Cases,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = three_cases[0]
    assert main(["recommend", str(folder), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((folder / "recommendation.json").read_text())
    assert printed == written and printed["schema_version"] == 1
    assert by_noise(printed, 0.1)["recommended"]["params"]["alpha"] == 0.3


def test_cli_table_shows_verdicts(three_cases: Cases, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(three_cases[0])]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "distil with alpha ≈ 0.3" in out
    assert "distillation hurts here because the teacher memorised 34%" in out
    assert "alpha = weight on the true labels; 1 = no distillation" in out
    assert "recommendation.json" in out


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
