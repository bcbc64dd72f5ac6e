"""Progress a log and ``kdtune status`` can read, without Ray: the time left weighted by seed-epochs; counts per
condition and phase (a finished study whose trials were pruned or whose confirmation stopped early reads as
finished, with the reason); the plain lines of a log (trials, teachers, confirmation rounds, why the total
shrank); and the log itself: a time stamp on every line, no line longer than 120 characters."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_study_spec

from kdtune.cli import main
from kdtune.log_output import LINE_WIDTH
from kdtune.log_output import StampedLines
from kdtune.log_output import stamped_output
from kdtune.records.progress_lines import best_line
from kdtune.records.progress_lines import confirmation_line
from kdtune.records.progress_lines import locate_line
from kdtune.records.progress_lines import shortfall_lines
from kdtune.records.progress_lines import summary_line
from kdtune.records.progress_lines import teacher_ready_line
from kdtune.records.progress_lines import trial_line
from kdtune.records.results import results_writer
from kdtune.records.results import trials_writer
from kdtune.records.status import TrialView
from kdtune.records.status import from_files
from kdtune.records.status import summarise
from kdtune.records.status import time_left
from kdtune.spec.conditions import expand
from kdtune.spec.rules import TrialBudget
from kdtune.spec.rules import confirmation_seeds
from kdtune.spec.rules import trial_budget
from kdtune.spec.workload import Workload
from kdtune.spec.workload import asha_expected_epochs


STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def test_eta_counts_seed_epochs_left_and_the_confirmation_round_at_its_cost() -> None:
    # per condition: 4 search trials of 8 seeds (expected 15 epochs each under ASHA), rounds of 2 trials x 16 seeds
    work = Workload(epochs=20, search_trials=4, search_units=4 * 8 * 15.0, search_units_worst=4 * 8 * 20.0,
                    round_trials=2, round_units=(2 * 16 * 20.0, 2 * 16 * 20.0))
    views = [TrialView("a", "baseline", "COMPLETE", 0.9, epoch=20), TrialView("a", "search", "PRUNED", 0.5, epoch=10),
             TrialView("a", "search", "RUNNING", None, epoch=5)]
    done = 8 * (20 + 10 + 5)  # seed-epochs in 70 s
    left = 8 * 15 + 1 * 8 * 15.0 + 2 * 16 * 20  # the running trial's rest, one trial not begun, the first round
    assert time_left(views, ["a"], work, repeats=8, elapsed=70.0) == pytest.approx(left * 70.0 / done)
    # the search has ended and round 1 has begun: its trial not yet started counts at 16 seeds x 20 epochs; the
    # second round is not counted until it begins
    views = [TrialView("a", "search", "COMPLETE", 0.9, epoch=20) for _ in range(4)]
    views.append(TrialView("a", "confirm", "RUNNING", None, (7, 8), epoch=4, runs=16))
    assert time_left(views, ["a"], work, repeats=8, elapsed=100.0) == pytest.approx(
        (16 * 16 + 16 * 20) * 100.0 / (4 * 8 * 20 + 16 * 4))
    # round 2 begun: its two trials now count
    views = [*views[:4], TrialView("a", "confirm", "COMPLETE", 0.9, (7, 8), epoch=20, runs=16),
             TrialView("a", "confirm", "COMPLETE", 0.9, (7, 8), epoch=20, runs=16),
             TrialView("a", "confirm", "PENDING", None, (9, 10), epoch=0, runs=16)]
    assert time_left(views, ["a"], work, repeats=8, elapsed=100.0) == pytest.approx(
        2 * 16 * 20 * 100.0 / (4 * 8 * 20 + 2 * 16 * 20))
    assert time_left([TrialView("a", "search", "RUNNING", None)], ["a"], work, repeats=8, elapsed=5.0) is None


def test_eta_counts_every_round_a_verdict_must_wait_for() -> None:
    """When a distil verdict needs both rounds' pairs (Workload.deciding_rounds), both count from the start."""
    work = Workload(epochs=20, search_trials=4, search_units=4 * 8 * 15.0, search_units_worst=4 * 8 * 20.0,
                    round_trials=2, round_units=(2 * 18 * 20.0, 2 * 18 * 20.0), deciding_rounds=2)
    views = [TrialView("a", "search", "COMPLETE", 0.9, epoch=20) for _ in range(4)]
    done = 4 * 8 * 20
    assert time_left(views, ["a"], work, repeats=8, elapsed=100.0) == pytest.approx(2 * 2 * 18 * 20 * 100.0 / done)


def test_eta_starts_from_the_plans_costs_and_moves_to_the_measured_pace() -> None:
    """With the plan's costs (wall seconds per seed-epoch and per report), the measured pace scales them, shrunk
    towards 1 with a quarter of the expected work as the plan's weight: early on the ETA lies between the plan's
    and the measured pace's, and once the work done dwarfs that weight it follows the measured pace."""
    work = Workload(epochs=20, search_trials=4, search_units=4 * 8 * 15.0, search_units_worst=4 * 8 * 20.0,
                    round_trials=2, round_units=(2 * 16 * 20.0,))
    planned = (0.1, 0.0)  # seed-epochs only: the plan and the measurement count the same units
    early = [TrialView("a", "search", "RUNNING", None, epoch=2)]
    measured = time_left(early, ["a"], work, repeats=8, elapsed=10.0)  # 16 seed-epochs in 10 s
    blended = time_left(early, ["a"], work, repeats=8, elapsed=10.0, planned=planned)
    assert measured is not None and blended is not None
    left = measured * 16 / 10.0  # seed-epochs left
    assert left * 0.1 < blended < measured
    prior = 0.25 * work.expected * 0.1
    assert blended == pytest.approx(left * 0.1 * (10.0 + prior) / (16 * 0.1 + prior))
    late = [TrialView("a", "search", "COMPLETE", 0.9, epoch=20) for _ in range(4)]
    late += [TrialView("a", "confirm", "COMPLETE", 0.9, (7, 8), epoch=20, runs=16),
             TrialView("a", "confirm", "RUNNING", None, (7, 8), epoch=10, runs=16)]
    measured = time_left(late, ["a"], work, repeats=8, elapsed=300.0)
    blended = time_left(late, ["a"], work, repeats=8, elapsed=300.0, planned=planned)
    assert measured is not None and blended is not None and blended == pytest.approx(measured, rel=0.2)


def test_eta_counts_reports_so_long_confirmation_trials_go_faster_per_seed_epoch() -> None:
    """A report costs the same whatever a trial's seeds: with the plan's report cost, the seed-epochs of a
    confirmation trial of 16 seeds are cheaper than a search trial's of 2, and the time left for a confirmation
    round is less than the search's pace per seed-epoch says."""
    work = Workload(epochs=10, search_trials=2, search_units=2 * 2 * 10.0, search_units_worst=2 * 2 * 10.0,
                    round_trials=2, round_units=(2 * 16 * 10.0,))
    ended = [TrialView("a", "search", "COMPLETE", 0.9, epoch=10) for _ in range(2)]  # 40 seed-epochs, 20 reports
    per_seed_epoch = time_left(ended, ["a"], work, repeats=2, elapsed=40.0)
    with_reports = time_left(ended, ["a"], work, repeats=2, elapsed=40.0, planned=(0.5, 1.0))
    assert per_seed_epoch == pytest.approx(320 * 40.0 / 40)  # the round's 320 seed-epochs at 1 s each
    # done cost 40 x 0.5 + 20 x 1 = 40 (the plan was right); left 320 x 0.5 + 20 x 1 = 180 s
    assert with_reports == pytest.approx(180.0)


def test_asha_expected_epochs_follows_rays_rule() -> None:
    # reduction factor 2: past the first arrivals, half of the proposals stop at each rung
    assert asha_expected_epochs(16, 2, 20, 10, 2) == pytest.approx(15.0, abs=0.2)
    # rungs at 4, 8, 16 of 20: many stop early; the baselines (never stopped) lower the cutoffs a little
    assert 8.5 < asha_expected_epochs(24, 2, 20, 4, 2) < 11.0
    assert asha_expected_epochs(8, 2, 20, 20, 2) == 20.0  # no rung below max_t: nothing stops
    assert asha_expected_epochs(30, 2, 27, 1, 3) < asha_expected_epochs(30, 2, 27, 3, 3)  # an earlier rung stops sooner
    # a learning sampler's proposals after its random start sit in the better half: ASHA stops fewer of them
    learned = asha_expected_epochs(24, 2, 20, 4, 2, random_start=6)
    assert asha_expected_epochs(24, 2, 20, 4, 2) + 1.5 < learned < 20.0


def test_one_plain_line_per_trial_and_per_summary() -> None:
    line = trial_line("noise_level=0.1", {"alpha": 0.25, "temperature": 4.0, "lr": 0.001}, ["alpha", "temperature"],
                      "search", "PRUNED", 0.61234, "val_accuracy", (10, 30))
    assert line == "trial ended: noise_level=0.1 alpha=0.25 T=4 (search): PRUNED at epoch 10/30, val_accuracy 0.6123"
    views = [TrialView("a", "search", "COMPLETE", 0.9), TrialView("a", "baseline", "PRUNED", 0.5),
             TrialView("b", "search", "RUNNING", None), TrialView("b", "confirm", "COMPLETE", 0.99, (1000, 1001))]
    summary = summarise(views, conditions=["a", "b"], budget=TrialBudget(search=4, confirm=6), confirm_rounds=3,
                        mode="max", elapsed=75.0)
    assert summary["eta_seconds"] is None  # no workload given: no time left
    summary.update(eta_seconds=130.0)
    assert summary_line(summary) == ("progress: 3 of at most 20 trials ended (2 complete, 1 pruned, 0 failed), "
                                     "1 running, 1m15s elapsed, ~2m10s left")
    # per condition and phase; the baseline counts with the search; confirmation runs never enter the search's best
    a, b = summary["conditions"]
    assert a["phases"]["search"] == {"planned": 4, "ended": 2, "complete": 1, "pruned": 1, "failed": 0, "running": 0,
                                     "best": 0.9, "rounds": None}
    assert b["phases"]["search"]["best"] is None and b["phases"]["confirm"]["best"] == 0.99
    assert b["phases"]["confirm"]["rounds"] == 1 and b["running"] == 1


def _study_folder(folder: Path, *, finished: bool) -> dict[str, Any]:
    """A study folder written as the engine writes one (study.json, results and trials through the writers):
    one condition, 4 search trials of which 3 were pruned, the 2 baselines, and 1 confirmation round of up to 3
    (2 trials), so 8 of at most 12 planned trials ran. Returns the spec's budget and the seeds of round 1."""
    spec = tiny_study_spec("statused", conditions={"noise_level": [0.1]},
                           budget={"trials_per_condition": 4, "repeats": 2, "confirm_top_k": 1, "confirm_repeats": 2,
                                   "confirm_max_repeats": 6, "confirm_failure_rate": 0, "locate_alphas": 0})
    (condition,) = expand(spec)
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({
        "id": "abc123", "spec": spec.to_dict(), "conditions": [condition.as_dict()], "created_at": time.time() - 90,
        "cut_short": False, **({"finished_at": time.time()} if finished else {})}))
    confirm_seeds = confirmation_seeds(spec, 0)
    trials = [("search", "PRUNED", [0, 1])] * 3 + [("search", "COMPLETE", [0, 1])] + \
        [("baseline", "COMPLETE", [0, 1])] * 2 + [("confirm", "COMPLETE", confirm_seeds)] * 2
    rows, ends = [], []
    for i, (phase, state, seeds) in enumerate(trials):
        epochs = 2 if state == "PRUNED" else 4
        rows += [{"study": spec.name, "condition": condition.key, "trial_id": f"t{i}", "phase": phase, "alpha": 0.5,
                  "temperature": 4.0, "seed": s, "epoch": e, "val_accuracy": 0.8 + i / 100}
                 for s in seeds for e in range(1, epochs + 1)]
        ends.append({"trial_id": f"t{i}", "condition": condition.key, "phase": phase, "params": "{}", "state": state,
                     "objective": 0.8 + i / 100, "epochs_done": epochs, "ended_at": time.time()})
    results_writer(folder).append(rows)
    trials_writer(folder).append(ends if finished else ends[:-1])  # unfinished: the last trial still runs
    return {"budget": trial_budget(spec), "seeds": confirm_seeds}


def test_a_finished_study_reads_as_finished_with_why_fewer_trials_ran(short_tmp: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    made = _study_folder(short_tmp / "study", finished=True)
    assert made["budget"] == TrialBudget(search=6, confirm=6)  # 4 proposals + 2 baselines; 3 rounds of 2 trials
    summary = from_files(short_tmp / "study")
    (row,) = summary["conditions"]
    assert (summary["finished"], summary["ended"], summary["planned"], summary["running"]) == (True, 8, 12, 0)
    assert row["phases"]["search"] == {"planned": 6, "ended": 6, "complete": 3, "pruned": 3, "failed": 0,
                                       "running": 0, "best": pytest.approx(0.85), "rounds": None}
    assert row["phases"]["confirm"]["ended"] == 2 and row["phases"]["confirm"]["rounds"] == 1
    assert summary["notes"] == [
        "trials: 8 ran, of at most 12 planned:",
        "  all: confirmation ran 2 of at most 6 trials: its verdict was clear after round 1 of up to 3"]
    assert main(["status", str(short_tmp / "study")]) == 0
    out = capsys.readouterr().out
    assert "statused: finished, 8 trials (5 complete, 3 pruned, 0 failed)" in out
    assert re.search(r"│ all\s+│ search\s+│\s+6/6 │\s+3 │\s+3 │", out), out
    assert re.search(r"│\s+│ confirm\s+│\s+2/≤6 │\s+2 │\s+0 │", out), out
    assert "left" not in out and out.rstrip().endswith(summary["notes"][-1])
    assert main(["status", str(short_tmp / "study"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "condition,phase,planned,ended,complete,pruned,failed,running,best,teacher_test_accuracy"
    assert lines[1].startswith("all,search,6,6,3,3,0,0,0.85") and lines[2].startswith(
        "all,confirm,6,2,2,0,0,0,0.87")


def test_a_running_study_counts_its_running_trials_and_gives_no_reasons_yet(short_tmp: Path) -> None:
    _study_folder(short_tmp / "study", finished=False)
    summary = from_files(short_tmp / "study")
    (row,) = summary["conditions"]
    assert (summary["finished"], summary["ended"], summary["running"]) == (False, 7, 1)
    assert row["phases"]["confirm"]["running"] == 1 and summary["notes"] == []
    assert summary_line(summary).startswith("progress: 7 of at most 12 trials ended (4 complete, 3 pruned, 0 failed), "
                                            "1 running, 1m")


def test_shortfall_reasons_name_the_wall_budget_and_an_empty_confirmation() -> None:
    views = [TrialView("a", "search", "COMPLETE", 0.9)] + [TrialView("b", "search", "PRUNED", 0.5)] * 2
    summary = summarise(views, conditions=["a", "b"], budget=TrialBudget(search=2, confirm=4), confirm_rounds=2,
                        mode="max", elapsed=10.0, finished=True)
    assert shortfall_lines(summary) == [
        "trials: 3 ran, of at most 12 planned:",
        "  a: the search ran 1 of 2 trials: the study was stopped",
        "  a: confirmation ran 0 of at most 4 trials: nothing to confirm (no distilled configuration or no alpha = 1 "
        "baseline completed)",
        "  b: confirmation ran 0 of at most 4 trials: nothing to confirm (no distilled configuration or no alpha = 1 "
        "baseline completed)"]
    summary["cut_short"] = True
    assert shortfall_lines(summary)[1] == "  a: the search ran 1 of 2 trials: budget.max_wall_minutes was reached"
    assert summary_line(summary) == "progress: finished: 3 trials (1 complete, 2 pruned, 0 failed) in 10s"
    summary["objective"] = "val_accuracy"
    assert best_line(summary) == "best val_accuracy of the search: a 0.9000, b -"  # pruned trials have no best


def test_phase_lines_say_what_a_teacher_and_a_round_did() -> None:
    info = {"trained": True, "cache_hit": False, "selected_epoch": 3,
            "curve": [{"epoch": e, "val_accuracy": v} for e, v in ((1, 0.5), (2, 0.8), (3, 0.9), (4, 0.85))],
            "diagnostics": {"test_accuracy": 0.93}}
    assert teacher_ready_line("noise_level=0.2", info, "val_accuracy", 75.0) == (
        "teacher noise_level=0.2: trained 4 epochs, kept epoch 3, val_accuracy 0.9000, after 1m15s")
    cached = {"trained": False, "cache_hit": True, "selected_epoch": 3, "curve": [], "diagnostics": {"val_loss": 1.25}}
    assert teacher_ready_line("all", cached, "val_loss", 2.0) == (
        "teacher all: read from the cache (epoch 3 kept), val_loss 1.2500, after 2s")
    assert confirmation_line("noise_level=0.2", 1, 8, [1004, 1005, 1006, 1007]) == (
        "confirmation: noise_level=0.2 round 2 of up to 8: the candidates and alpha = 1 on 4 fresh seeds")
    assert locate_line("noise_level=0.2", {"alpha": 0.4, "temperature": 4.0}, 21) == (
        "locate: noise_level=0.2: distil confirmed; more alphas at T 4 on 21 of its fresh seeds, to say where the "
        "best alpha lies")


def test_every_log_line_has_a_time_stamp_and_at_most_120_characters() -> None:
    target = io.StringIO()
    stream = StampedLines(target, clock=lambda: 0.0)
    long_words = " ".join(f"word{i}" for i in range(60))
    path = "/very/long/path" * 12
    stream.write(f"short\n  {long_words}\n{path}\nno newline")
    assert "no newline" not in target.getvalue()  # a partial line waits for its newline, or for end()
    stream.end()
    lines = target.getvalue().splitlines()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S ", time.localtime(0))
    assert all(line.startswith(stamp) for line in lines) and max(map(len, lines)) <= LINE_WIDTH
    texts = [line[len(stamp):] for line in lines]
    assert texts[0] == "short" and texts[-1] == "no newline"
    words = [t for t in texts if "word" in t]
    assert len(words) > 2 and words[0].startswith("  word0 ") and all(w.startswith("      word") for w in words[1:])
    assert " ".join(t.strip() for t in words) == long_words  # wrapped at spaces, continuation indented, nothing lost
    cut = [t.strip() for t in texts if "/very" in t or t.strip().startswith(("/", "path", "very", "long"))]
    assert len(cut) == 2 and "".join(cut) == path  # a word longer than a line is cut


def test_stamped_output_covers_print_tables_and_logging_and_is_undone(capfd: pytest.CaptureFixture[str]) -> None:
    import logging
    import sys

    from rich.table import Table

    from kdtune.tables import console

    handler = logging.StreamHandler(sys.stderr)  # as the command line's logging.basicConfig makes it
    logging.root.addHandler(handler)
    try:
        with stamped_output():
            print("a plain line")
            table = Table(title="a table wider than a log")
            for i in range(8):
                table.add_column(f"column {i}")
            table.add_row(*["a cell of some length" for _ in range(8)])
            console().print(table)
            logging.getLogger("kdtune.test").warning("a warning")
        print("after")
    finally:
        logging.root.removeHandler(handler)
    out, err = capfd.readouterr()
    *logged, after = out.splitlines()
    assert after == "after"  # put back on the way out
    assert logged[0].endswith(" a plain line") and all(STAMP.match(line) for line in logged)
    assert len(logged) > 5 and max(map(len, logged)) <= LINE_WIDTH  # the table laid out to the log's width
    assert STAMP.match(err) and err.rstrip().endswith("a warning")
