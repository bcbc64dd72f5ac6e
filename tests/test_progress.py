"""Progress a log can read: the time left weighted by seed-epochs, and the plain lines (no Ray needed)."""

from __future__ import annotations

import pytest

from kdtune.records.status import TrialView
from kdtune.records.status import epoch_weighted_eta
from kdtune.records.status import summarise
from kdtune.records.status import summary_line
from kdtune.records.status import trial_line


def test_eta_counts_seed_epochs_left_not_trials() -> None:
    # 100 seed-epochs in 50 s; left: 20 in running trials and 3 trials of 10 each (pruned ones made them short)
    assert epoch_weighted_eta(done_units=100, running_left=20, trials_left=3, units_per_trial=10,
                              elapsed=50) == pytest.approx((20 + 3 * 10) * 50 / 100)
    assert epoch_weighted_eta(done_units=0, running_left=20, trials_left=3, units_per_trial=10, elapsed=5) is None
    assert epoch_weighted_eta(done_units=10, running_left=0, trials_left=0, units_per_trial=10, elapsed=5) == 0.0


def test_one_plain_line_per_trial_and_per_summary() -> None:
    line = trial_line("noise_level=0.1", {"alpha": 0.25, "temperature": 4.0, "lr": 0.001}, ["alpha", "temperature"],
                      "search", "PRUNED", 0.61234, "val_accuracy", (10, 30))
    assert line == "trial ended: noise_level=0.1 alpha=0.25 T=4 (search): PRUNED at epoch 10/30, val_accuracy 0.6123"
    summary = summarise([TrialView("a", "COMPLETE", 0.9), TrialView("a", "PRUNED", 0.5), TrialView("b", "RUNNING", None)],
                        conditions=["a", "b"], per_condition=4, mode="max", elapsed=75.0)
    summary.update(eta_seconds=130.0, objective="val_accuracy")
    text = summary_line(summary)
    assert "\n" not in text
    assert text == ("progress: 2/8 trials ended (1 complete, 1 pruned, 0 failed), 1 running, 1m15s elapsed, "
                    "~2m10s left; best val_accuracy: a 0.9000; b -")
