"""Summarise a finished alpha study as a small CSV: per alpha, the clean test accuracy over seeds at each
seed's best validation epoch (what kdtune reports) and at the last epoch (what the seed study plotted),
with 95% t-intervals, plus flipped-label correction and memorisation at the best epoch.

    python experiments/alpha_curve.py runs/seed-alpha-grid docs/reproduction/alpha_curve.csv

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from kdtune.analysis.scoring import t_estimate
from kdtune.records.results import read_results


def main(study_dir: str, out: str) -> None:
    rows = read_results(Path(study_dir)).to_pandas()
    rows = rows[rows.trial_state == "COMPLETE"]
    best = rows.loc[rows.groupby(["trial_id", "seed"]).val_accuracy.idxmax()]
    last = rows.loc[rows.groupby(["trial_id", "seed"]).epoch.idxmax()]
    table = []
    for alpha in sorted(best.alpha.unique()):
        b, l_ = best[best.alpha == alpha], last[last.alpha == alpha]
        table.append({
            "alpha": alpha, "seeds": len(b),
            **_mean_ci("test_acc_best_val_epoch", b.test_accuracy.to_numpy()),
            **_mean_ci("test_acc_last_epoch", l_.test_accuracy.to_numpy()),
            "best_epoch_mean": round(float(b.epoch.mean()), 1),
            "correction_rate": round(float(b.correction_rate.mean()), 4),
            "memorisation_rate": round(float(b.memorisation_rate.mean()), 4),
        })
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    for row in table:
        print(row)


def _mean_ci(name: str, values: np.ndarray) -> dict[str, float]:
    e = t_estimate(list(values))
    return {name: round(e["mean"], 4), **{f"{name}_ci_{side}": round(e[side], 4) if e[side] is not None else float("nan")
                                          for side in ("low", "high")}}


if __name__ == "__main__":
    main(*sys.argv[1:3])
