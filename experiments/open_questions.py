"""One row per condition of finished, recommended studies: teacher, student alone, kdtune's recommendation.

Reads each study folder's ``recommendation.json`` (written by ``kdtune recommend``), ``teachers.json`` and
results, and writes a CSV with, per condition: the teacher's clean test accuracy and how it treats the flipped
training labels (corrects = predicts the true class, memorises = predicts the flipped label), the student
trained alone (alpha = 1) and the recommended configuration, each at its seeds' best validation epochs (flipped
labels also at the last epoch), the paired gain and the verdict. It also prints the rows as a Markdown table.

alpha is the weight on the true labels: alpha = 1 means no distillation.

    python experiments/open_questions.py runs/noise runs/teacher-quality ... --out docs/reproduction/open_questions.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from kdtune.records.results import read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", help="study folders, each with recommendation.json")
    parser.add_argument("--out", required=True, help="CSV to write")
    args = parser.parse_args()
    table = [row for study in args.studies for row in _rows(Path(study))]
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print("| study | condition | teacher | teacher corrects / memorises | student alone | its corrects / memorises "
          "| recommended alpha (T) | its test accuracy | its corrects / memorises | gain, points (95% CI), p | verdict |")
    print("| --- " * 11 + "|")
    for r in table:
        print(f"| {r['study']} | {r['condition']} | {r['teacher_test']:.3f} | {_rates(r, 'teacher')} "
              f"| {r['alone_test']:.3f} ({r['alone_low']:.3f}–{r['alone_high']:.3f}) | {_rates(r, 'alone')} "
              f"| {r['alpha']:.2f} ({r['alpha_low']:.2f}–{r['alpha_high']:.2f}){_t(r['temperature'])} "
              f"| {r['best_test']:.3f} ({r['best_low']:.3f}–{r['best_high']:.3f}) | {_rates(r, 'best')} "
              f"| {100 * r['gain']:+.1f} ({100 * r['gain_low']:+.1f} to {100 * r['gain_high']:+.1f}), "
              f"p = {r['p_value']:.3f} | {r['verdict']} |")


def _rows(study: Path) -> list[dict[str, Any]]:
    recommendation = json.loads((study / "recommendation.json").read_text())
    rows = read_results(study).to_pandas()
    best = rows.loc[rows.groupby(["trial_id", "seed"]).val_accuracy.idxmax()]  # each run at its best val epoch
    last = rows.loc[rows.groupby(["trial_id", "seed"]).epoch.idxmax()]
    out = []
    for c in recommendation["conditions"]:
        rec, alone, teacher, gain = c["recommended"], c["no_distillation"], c["teacher"], c["gain"]
        out.append({
            "study": recommendation["studies"][0]["name"], "condition": c["key"],
            "teacher_test": teacher["test_accuracy"], "teacher_selected_epoch": teacher["selected_epoch"],
            "teacher_corrects": teacher["correction_rate"], "teacher_memorises": teacher["memorisation_rate"],
            "alone_test": alone["test"]["mean"], "alone_low": alone["test"]["low"], "alone_high": alone["test"]["high"],
            **_flip_rates("alone", best, alone["trial_ids"]), **_flip_rates("alone_last", last, alone["trial_ids"]),
            "alpha": rec["alpha"]["value"], "alpha_low": rec["alpha"]["low"], "alpha_high": rec["alpha"]["high"],
            "temperature": (rec["temperature"] or {}).get("value"),  # none when no distillation is recommended
            "best_test": rec["test"]["mean"], "best_low": rec["test"]["low"], "best_high": rec["test"]["high"],
            **_flip_rates("best", best, rec["trial_ids"]), **_flip_rates("best_last", last, rec["trial_ids"]),
            "gain": gain["mean"], "gain_low": gain["low"], "gain_high": gain["high"], "p_value": gain["p_value"],
            "pairs": gain["n_pairs"], "verdict": c["verdict"]["kind"],
        })
    return out


def _flip_rates(prefix: str, best: Any, trial_ids: list[str]) -> dict[str, float | None]:
    runs = best[best.trial_id.isin(trial_ids)]
    if runs.correction_rate.isna().all():  # clean labels: nothing was flipped
        return {f"{prefix}_corrects": None, f"{prefix}_memorises": None}
    return {f"{prefix}_corrects": float(runs.correction_rate.mean()),
            f"{prefix}_memorises": float(runs.memorisation_rate.mean())}


def _t(temperature: float | None) -> str:
    return "" if temperature is None else f", T {temperature:.1f}"


def _rates(row: dict[str, Any], prefix: str) -> str:
    corrects, memorises = row[f"{prefix}_corrects"], row[f"{prefix}_memorises"]
    if corrects is None:
        return "–"
    text = f"{corrects:.0%} / {memorises:.0%}"
    if f"{prefix}_last_memorises" in row:
        text += f"; last epoch {row[f'{prefix}_last_corrects']:.0%} / {row[f'{prefix}_last_memorises']:.0%}"
    return text


if __name__ == "__main__":
    main()
