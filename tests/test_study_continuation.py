"""Studies that confirm and go on confirming, end to end (real local Ray, SQLite Optuna, real files): a resume with
a larger confirmation budget continues an inconclusive confirmation on new seeds; the margin a study fixed when
it started marks a verdict given with another; the shipped grid spec confirms with its own alpha = 1 point.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from conftest import tiny_study_spec

import kdtune
from kdtune.analysis.sequential import Design
from kdtune.analysis.verdicts import DECISIVE
from kdtune.records.folder import StudyFolder
from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.spec.rules import confirmation_seeds
from kdtune.spec.schema import load_spec
from kdtune.study.driver import RunOptions
from kdtune.study.driver import resume_study
from kdtune.study.driver import run_study


pytestmark = pytest.mark.slow


def _kdtune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def _confirm_trials(study: Path) -> list[dict]:  # type: ignore[type-arg]
    return [t for t in read_trials(study).to_pylist() if t["phase"] == "confirm"]


def test_a_larger_budget_continues_an_inconclusive_confirmation_on_new_seeds(ray_local: None, short_tmp: Path) -> None:
    """One look at 2 paired seeds cannot settle anything (a t-interval with 1 degree of freedom); the verdict says
    how to continue, and doing so runs one more round on the confirmation stream's next seeds, judged at the level
    the planned look left for it."""
    spec = tiny_study_spec("extend", conditions={"noise_level": [0.2]},
                           budget={"trials_per_condition": 2, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 2,
                                   "confirm_max_repeats": 2, "confirm_failure_rate": 0})
    study = run_study(spec, RunOptions(out=short_tmp / "extend", progress=False))
    condition = kdtune.recommend(study)["conditions"][0]
    assert condition["verdict"]["kind"] == "inconclusive" and condition["gain"]["n_pairs"] == 2
    need = condition["gain"]["seeds_to_resolve"]
    assert need is not None and need > 2 and need % 2 == 0  # a look of the raised design: 2 + rounds of 2
    assert f"`kdtune resume {study} --confirm-max-repeats {need}`" in condition["verdict"]["text"]
    first = {t["trial_id"] for t in _confirm_trials(study)}
    assert len(first) == 2  # the candidate and alpha = 1, one round

    refused = _kdtune("resume", str(study), "--confirm-max-repeats", "3")  # off the rounds of 2: nothing runs
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "--confirm-max-repeats = 3: must be the planned 2 plus a whole number of rounds" in refused.stderr
    assert StudyFolder(study).spec().budget.confirm_max_repeats == 2

    resume_study(study, confirm_max_repeats=4, progress=False)
    raised = StudyFolder(study).spec()
    assert raised.budget.confirm_max_repeats == 4 and raised.budget.confirm_planned_repeats == 2
    trials = _confirm_trials(study)
    assert first < {t["trial_id"] for t in trials} and len(trials) == 4  # the first round is not run again
    seeds = {r["seed"] for r in read_results(study).to_pylist() if r["phase"] == "confirm"}
    assert seeds == set(confirmation_seeds(raised, 0)) | set(confirmation_seeds(raised, 1))
    report = kdtune.recommend(study)
    gain = report["conditions"][0]["gain"]
    assert gain["n_pairs"] == 4 and report["studies"][0]["finished"]
    assert gain["nominal_level"] == pytest.approx(Design(2, 4, 2).level(4, gain["family_level"]), rel=1e-12)
    assert report["method"]["looks"] == [2, 4]

    # The margin was fixed when the study started; another one still answers, marked.
    assert report["study_margin"] == pytest.approx(0.005) and json.loads(StudyFolder(study).study_json.read_text())[
        "margin"] == pytest.approx(0.005)
    assert not report["conditions"][0]["verdict"]["margin_chosen_after_study"]
    assert not kdtune.recommend(study, margin=0.5)["conditions"][0]["verdict"]["margin_chosen_after_study"]
    after = kdtune.recommend(study, margin=0.3)
    verdict = after["conditions"][0]["verdict"]
    assert after["margin"] == pytest.approx(0.003) and verdict["margin_chosen_after_study"]
    assert "margin chosen after the study (±0.3 points; the study fixed ±0.5 points before its data)" in verdict["text"]
    cli = _kdtune("recommend", str(study), "--margin", "0.3", "--format", "json", "--out", str(short_tmp / "r.json"))
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["conditions"][0]["verdict"]["margin_chosen_after_study"] is True


def test_the_seed_alpha_grid_spec_confirms_with_its_own_alpha_1_point(ray_local: None, short_tmp: Path,
                                                                      test_data_root: Path) -> None:
    """search_spaces/seed_alpha_grid.yaml at small sizes (2,000 MNIST images, MLPs, few epochs, 2 seeds): its grid
    holds alpha = 1 at the default T = 10, so no alpha = 1 baseline is enqueued; that grid point is the baseline,
    the grid's last point does not stop the search (SQLite storage), and the study ends in a confirmed verdict.

    At these sizes and T = 10 distillation moves test accuracy by well under a point either way (measured: -0.6 to
    +0.6 points over five teacher/student settings, paired SD about 0.8 points), which 16 paired seeds cannot
    place within the spec's 0.5-point margin; with a 1-point margin the confirmation can say "no gain"."""
    spec = load_spec(REPO / "search_spaces" / "seed_alpha_grid.yaml", overrides=[
        f"dataset.data_root={test_data_root}", "dataset.train_size=2000", "teacher.arch=mlp",
        "teacher.kwargs={widths: [256]}", "teacher.epochs=15", "teacher.lr=3e-3", "student.arch=mlp",
        "student.kwargs={widths: [16]}", "student.epochs=3", "student.lr=3e-3", "budget.repeats=2",
        "recommend.margin=1", "tracking=none"])
    study = run_study(spec, RunOptions(out=short_tmp / "grid", progress=False))
    trials = read_trials(study).to_pylist()
    search = [t for t in trials if t["phase"] != "confirm"]
    assert len(search) == 11  # the 10 grid points and the alpha = 0 baseline: alpha = 1 is not run twice
    baselines = sorted(json.loads(t["params"])["alpha"] for t in search if t["phase"] == "baseline")
    assert baselines == [0.0, 1.0]
    report = kdtune.recommend(study)
    condition = report["conditions"][0]
    assert condition["gain"]["source"] == "confirm" and condition["verdict"]["kind"] in DECISIVE, condition["verdict"]
    no_kd = condition["no_distillation"]
    assert no_kd["source"] == "confirm" and no_kd["params"]["alpha"] == 1.0 and no_kd["params"]["temperature"] == 10.0
