"""Multi-fidelity studies (``fidelity`` section): the spec's checks, what a cheap trial trains, the transfer check's
statistics, the plan's stages, and one tiny study end to end through real Ray Tune (cheap search, transfer check
at full fidelity, confirmation at full fidelity, a recommendation that says so)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_study_spec

from kdtune.analysis.transfer import Rerun
from kdtune.analysis.transfer import check_transfer
from kdtune.errors import SpecError
from kdtune.spec.schema import parse_spec


# ------------------------------------------------------------------------------------------------- the transfer check

def _reruns(cheap_means: list[float], full_means: list[float], *, sd: float, seeds: int = 8,
            seed: int = 0) -> list[Rerun]:
    """Configurations (alpha 0.1, 0.2, ...) whose runs are their means plus paired seed noise at each fidelity."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, sd, (2, seeds))  # a seed's effect, the same for every configuration (paired)
    return [Rerun(params={"alpha": round(0.1 * (i + 1), 1)},
                  cheap={("s", s): c + shared[0, s] + rng.normal(0, sd / 2) for s in range(seeds)},
                  full={("s", s): f + shared[1, s] + rng.normal(0, sd / 2) for s in range(seeds)})
            for i, (c, f) in enumerate(zip(cheap_means, full_means))]


def test_a_ranking_that_carries_over_holds() -> None:
    cheap = [0.80, 0.82, 0.84, 0.86, 0.88]
    full = [0.950, 0.955, 0.960, 0.965, 0.970]
    t = check_transfer(_reruns(cheap, full, sd=0.002), choice=4, baseline=0, sign=1.0, tolerance=0.005)
    assert t is not None and t.verdict == "holds", t
    assert t.spearman == pytest.approx(1.0) and t.spearman_low is not None and t.spearman_low > 0.5
    assert t.regret == pytest.approx(0.0) and t.regret_high <= 0.005
    assert t.choice_near_optimal and t.full_best == {"alpha": 0.5}
    assert t.recovered == pytest.approx(1.0)
    assert t.seeds == {"cheap": 8, "full": 8} and len(t.configurations) == 5


def test_a_shifted_optimum_fails_and_names_the_full_best() -> None:
    cheap = [0.80, 0.82, 0.84, 0.86, 0.88]  # cheap: the largest alpha is best
    full = [0.975, 0.970, 0.965, 0.960, 0.950]  # full: the smallest is, 2.5 points above the cheap choice
    t = check_transfer(_reruns(cheap, full, sd=0.002), choice=4, baseline=None, sign=1.0, tolerance=0.005)
    assert t is not None and t.verdict == "fails", t
    assert t.regret == pytest.approx(0.025, abs=0.004) and t.regret_low > 0.005
    assert t.full_best == {"alpha": 0.1} and not t.choice_near_optimal
    assert t.spearman is not None and t.spearman < -0.5
    assert t.recovered is None  # no alpha = 1 among the re-runs


def test_noise_larger_than_the_difference_is_unclear_not_fails() -> None:
    cheap = [0.80, 0.82, 0.84, 0.86, 0.88]
    full = [0.960, 0.960, 0.960, 0.960, 0.954]  # the choice 0.6 points below, seeds 1 point apart
    t = check_transfer(_reruns(cheap, full, sd=0.02, seeds=4), choice=4, baseline=None, sign=1.0, tolerance=0.005)
    assert t is not None and t.verdict == "unclear", t
    assert t.regret_low <= 0.005 < t.regret_high


def test_lower_is_better_objectives_and_too_few_seeds() -> None:
    cheap = [2.0, 1.9, 1.8]
    full = [1.5, 1.4, 1.3]
    t = check_transfer(_reruns(cheap, full, sd=0.01), choice=2, baseline=0, sign=-1.0, tolerance=0.02)
    assert t is not None and t.verdict == "holds" and t.full_best == {"alpha": 0.3}
    assert t.spearman == pytest.approx(1.0)
    one_seed = [Rerun(params=r.params, cheap=r.cheap, full=dict(list(r.full.items())[:1]))
                for r in _reruns(cheap, full, sd=0.01)]
    assert check_transfer(one_seed, choice=2, baseline=0, sign=-1.0, tolerance=0.02) is None


def test_the_transfer_check_flags_a_shift_in_most_draws_and_a_non_shift_rarely() -> None:
    """Small simulation through check_transfer alone (the searcher's is tests/test_transfer_calibration.py): 5
    configurations on 5 full-fidelity seeds of 0.5-point noise; a 2-point shift is flagged in most studies, none
    when the choice is the full optimum."""
    flagged = {"shift": 0, "none": 0}
    for study in range(40):
        for kind, full in (("shift", [0.97, 0.965, 0.96, 0.955, 0.95]), ("none", [0.95, 0.955, 0.96, 0.965, 0.97])):
            reruns = _reruns([0.80, 0.82, 0.84, 0.86, 0.88], full, sd=0.005, seeds=5, seed=study)
            t = check_transfer(reruns, choice=4, baseline=None, sign=1.0, tolerance=0.005, seed=study)
            flagged[kind] += t is not None and t.verdict == "fails"
    assert flagged["shift"] >= 32 and flagged["none"] == 0, flagged


# ------------------------------------------------------------------------------------------------------- the spec

def _spec(**fidelity: object) -> object:
    """A tiny digits spec (4 epochs, 4 proposals besides the two baselines) with this fidelity section."""
    return tiny_study_spec("fid", conditions={"noise_level": 0.2},
                           budget={"trials_per_condition": 4, "repeats": 2},
                           fidelity={"transfer_top": 2, **fidelity})


def test_fidelity_fields_and_their_refusals() -> None:
    spec = _spec(data_fraction=0.5, epochs=2, width_factor=0.5)
    assert spec.fidelity is not None and spec.fidelity.cheap_epochs(4) == 2  # type: ignore[attr-defined]
    assert spec.fidelity.words(4) == "50% of the training data, 2 of 4 epochs, the student at 0.5 of its width"  # type: ignore[attr-defined]
    other = _spec(student="mlp", student_kwargs={"widths": [4]})
    assert other.fidelity.trial(4)["student"] == "mlp"  # type: ignore[attr-defined]
    refusals = {
        "cannot be combined with fidelity.student": {"width_factor": 0.5, "student": "mlp"},
        "needs fidelity.student": {"data_fraction": 0.5, "student_kwargs": {"widths": [4]}},
        r"at most student.epochs \(4\)": {"epochs": 5},
        r"at most 4: the configurations the search proposes": {"data_fraction": 0.5, "transfer_top": 5},
    }
    for expected, fields in refusals.items():
        with pytest.raises(SpecError, match=expected):
            _spec(**fields)
    with pytest.raises(SpecError, match="scheduler.grace_period"):
        tiny_study_spec("fid", budget={"trials_per_condition": 4, "repeats": 2},
                        scheduler={"type": "asha", "grace_period": 3}, fidelity={"epochs": 2, "transfer_top": 2})
    with pytest.raises(SpecError, match="cannot be combined with a searched epochs"):
        tiny_study_spec("fid", budget={"trials_per_condition": 4, "repeats": 2},
                        fidelity={"epochs": 2, "transfer_top": 2},
                        search={"alpha": {"type": "float", "low": 0, "high": 1},
                                "epochs": {"type": "int", "low": 2, "high": 4}})
    raw = _spec(data_fraction=0.5).to_dict()  # type: ignore[attr-defined]
    raw["dataset"] = {"name": "linear"}
    raw["student"] = {"arch": "linear"}
    raw["teacher"] = {"arch": "linear"}
    raw["search"] = {"alpha": {"type": "float", "low": 0, "high": 1}}
    raw["scheduler"] = {"type": "fifo"}
    with pytest.raises(SpecError, match="can cheapen: nothing"):
        parse_spec(raw)


def test_seeds_of_the_transfer_check_stay_apart_from_confirmation() -> None:
    from kdtune.spec.rules import confirmation_seeds
    from kdtune.spec.rules import search_seeds
    from kdtune.spec.rules import transfer_seeds

    plain = tiny_study_spec("fid", budget={"trials_per_condition": 4, "repeats": 2, "confirm_top_k": 1})
    cheap = _spec(data_fraction=0.5, transfer_repeats=6)
    assert transfer_seeds(plain) == [] and search_seeds(cheap) == [0, 1]  # type: ignore[arg-type]
    assert transfer_seeds(cheap) == [0, 1, 2, 3, 4, 5]  # type: ignore[arg-type]  # paired with the cheap search's
    raw = cheap.to_dict()  # type: ignore[attr-defined]
    raw["budget"]["confirm_top_k"] = 1
    confirming = parse_spec(raw)
    assert not set(confirmation_seeds(confirming, 0)) & set(transfer_seeds(confirming))
    # a spec without a fidelity section keeps the confirmation seeds it always had
    raw = plain.to_dict()
    assert confirmation_seeds(plain, 0) == confirmation_seeds(parse_spec(raw), 0)


# ---------------------------------------------------------------------------------------------- what a trial trains

def test_a_cheap_trial_trains_fewer_epochs_on_a_subset_with_a_narrower_student() -> None:
    from kdtune.core.train import training_subset
    from kdtune.study.trial import cheapened
    from kdtune.tasks import TASKS
    from kdtune.tasks.image.models import build_model
    from kdtune.tasks.image.models import count_parameters

    task = TASKS["image"]
    spec = _spec(data_fraction=0.25, epochs=2, width_factor=0.5)
    params = {"alpha": 0.5, "temperature": 4.0, "lr": 1e-3, "batch_size": 32, "epochs": 4}
    student = {"arch": "mlp", "kwargs": {"widths": [16]}}
    cheap_params, cheap_student = cheapened(task, params, student, spec.fidelity.trial(4))  # type: ignore[attr-defined]
    assert cheap_params == {**params, "epochs": 2, "data_fraction": 0.25}
    assert cheap_student == {"arch": "mlp", "kwargs": {"widths": [8]}}
    assert cheapened(task, params, student, None) == (params, student)  # full fidelity: as handed out
    assert task.narrower("reference_student", {}, 0.5) == {"filters": [8, 16]}
    assert task.narrower("cifar_resnet", {"depth": 8}, 0.5) == {"depth": 8, "widths": [8, 8, 16, 32]}
    narrow = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10,
                         kwargs=task.narrower("reference_student", {}, 0.5), field="student.arch", seed=0)
    full = build_model("reference_student", input_shape=(1, 28, 28), num_classes=10, kwargs={}, field="x", seed=0)
    assert count_parameters(narrow) < count_parameters(full) / 2
    subset = training_subset(1000, 0.25)
    assert subset is not None and len(subset) == 250 and bool((subset[1:] > subset[:-1]).all())
    assert training_subset(1000, 0.25).tolist() == subset.tolist() and training_subset(1000, 1.0) is None  # type: ignore[union-attr]


def test_a_trainer_on_a_fraction_steps_over_that_share_only(noisy_digits: object) -> None:
    import torch

    from kdtune.core.train import TrainConfig
    from kdtune.core.train import Trainer
    from kdtune.tasks.image.models import build_model

    data = noisy_digits
    model = build_model("mlp", input_shape=data.input_shape, num_classes=10, kwargs={"widths": [8]},  # type: ignore[attr-defined]
                        field="x", seed=0)
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=10, data_fraction=0.1), threads=1)  # type: ignore[arg-type]
    assert trainer.positions is not None
    assert trainer.steps_per_epoch == -(-len(trainer.positions) // 10)
    seen: list[torch.Tensor] = []
    original = trainer._batches
    trainer._batches = lambda order, view: (seen.append(order) or original(order, view))  # type: ignore[method-assign]
    trainer.step()
    assert sorted(seen[0].tolist()) == trainer.positions.tolist()  # only the subset, each once


# --------------------------------------------------------------------------------------------------------- the plan

def test_the_plan_prints_the_stages_and_the_saving() -> None:
    from kdtune.spec.workload import workload
    from kdtune.study.estimate import make_plan

    spec = _spec(data_fraction=0.5, epochs=2, transfer_repeats=3)
    work = workload(spec)  # type: ignore[arg-type]
    assert work.search_epochs == 2 and work.epochs == 4 and work.search_cost == 0.5
    assert work.transfer_trials == 2 + 2 and work.transfer_units == 4 * 3 * 4  # (top 2 + both baselines) x 3 seeds
    assert work.sweep_units == 5 * 3 * 4  # the alphas a failed check adds, counted in the worst case only
    plan = make_plan(spec, worker_start_s=0.0)
    phases = plan["total"]["phases_s"]
    assert set(phases) == {"search", "transfer", "confirm", "locate", "search_at_full_fidelity"}
    assert phases["search"] < phases["search_at_full_fidelity"] and phases["transfer"] > 0
    line = plan["total"]["stages"]
    assert line.startswith("stages (CPU time): cheap search ") and "transfer check" in line
    assert "(50% of the training data, 2 of 4 epochs)" in line and "the search at full fidelity would take" in line
    assert make_plan(tiny_study_spec("plain"), worker_start_s=0.0)["total"]["stages"] is None


# ------------------------------------------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_a_cheap_study_checks_transfer_and_confirms_at_full_fidelity(ray_local: None, short_tmp: Path) -> None:
    """A digits study searched at half the data, half the epochs and half the student's width: the search and its
    baselines train cheap; the best 2 configurations, alpha = 1 and alpha = 0 re-run at full length on 3 paired
    seeds; confirmation runs at full length on its fresh seeds, on the configuration the transfer check's verdict
    names; the recommendation states the fidelity of its verdict and the check's figures."""
    from kdtune.analysis.recommendation import recommend
    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials
    from kdtune.spec.rules import SWEEP_ALPHAS
    from kdtune.spec.rules import confirmation_seeds
    from kdtune.spec.rules import transfer_seeds
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    spec = tiny_study_spec(
        "cheap", conditions={"noise_level": 0.2},
        student={"arch": "mlp", "epochs": 4, "kwargs": {"widths": [16]}, "lr": 3e-3},
        scheduler={"type": "fifo"},
        budget={"trials_per_condition": 4, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 4,
                "confirm_max_repeats": 4, "confirm_failure_rate": 0, "locate_alphas": 0},
        fidelity={"data_fraction": 0.5, "epochs": 2, "width_factor": 0.5, "transfer_top": 2, "transfer_repeats": 3})
    study_dir = run_study(spec, RunOptions(out=short_tmp / "study", progress=False))
    trials = read_trials(study_dir).to_pylist()
    rows = read_results(study_dir).to_pylist()
    (condition,) = recommend([study_dir])["conditions"]
    transfer, fidelity = condition["transfer"], condition["fidelity"]
    phases = [t["phase"] for t in trials]
    swept = phases.count("transfer") - 4  # the alphas a failed check adds at full fidelity
    assert (0 < swept <= SWEEP_ALPHAS) if transfer["verdict"] == "fails" else swept == 0, (phases, transfer["verdict"])
    assert phases.count("confirm") == 2, phases
    longest = {p: max(r["epoch"] for r in rows if r["phase"] == p) for p in {r["phase"] for r in rows}}
    assert longest == {"search": 2, "baseline": 2, "transfer": 4, "confirm": 4}, longest
    assert {r["seed"] for r in rows if r["phase"] == "transfer"} == set(transfer_seeds(spec))
    assert {r["seed"] for r in rows if r["phase"] == "confirm"} == set(confirmation_seeds(spec, 0))
    assert all(t["state"] == "COMPLETE" for t in trials if t["phase"] != "search"), trials
    assert fidelity["verdict_at"] == "full" and fidelity["data_fraction"] == 0.5 and fidelity["width_factor"] == 0.5
    assert transfer["verdict"] in ("holds", "fails", "unclear") and len(transfer["configurations"]) == 4
    assert transfer["seeds"] == {"cheap": 2, "full": 3}
    assert transfer["regret"]["low"] <= transfer["regret"]["value"] <= transfer["regret"]["high"]
    confirmed = {json.dumps(json.loads(t["params"]), sort_keys=True) for t in trials if t["phase"] == "confirm"}
    if transfer["verdict"] == "fails":  # a distilled configuration that ran at full fidelity
        full = {json.dumps(json.loads(t["params"]), sort_keys=True) for t in trials if t["phase"] == "transfer"}
        assert len(confirmed) == 2 and confirmed <= full, (confirmed, full)
    else:
        assert json.dumps(transfer["cheap_choice"], sort_keys=True) in confirmed
    text = condition["verdict"]["text"]
    assert "Verdicts hold at full fidelity" in text and "Transfer check on 4 configurations" in text
    assert "50% of the training data, 2 of 4 epochs, the student at 0.5 of its width" in text
