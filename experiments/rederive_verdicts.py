"""Part 3's verdicts of docs/reproduction.md re-derived under the confirmation rules of `kdtune recommend`.

Those studies ran one confirmation round of 3 fresh paired seeds per condition. Their recorded confirmed gain
(mean and 95% t-interval over the 3 pairs, docs/reproduction/open_questions.csv) gives the spread of the
paired differences; the interval is then recomputed as today's rule computes it for that design (one look,
Bonferroni over the study's conditions) and judged with the default 0.5-point margin. No run is repeated.

    python experiments/rederive_verdicts.py docs/reproduction/open_questions.csv \
        --out docs/reproduction/open_questions_rederived.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy import stats  # noqa: E402

from kdtune.analysis.sequential import Design  # noqa: E402
from kdtune.analysis.sequential import Interval  # noqa: E402
from kdtune.analysis.sequential import seeds_to_resolve  # noqa: E402
from kdtune.analysis.verdicts import classify  # noqa: E402
from kdtune.analysis.verdicts import family_level  # noqa: E402
from kdtune.spec.sections import DEFAULT_MARGIN_POINTS  # noqa: E402


def rederive(row: dict[str, str], conditions: int, margin: float) -> dict[str, object]:
    n = int(row["pairs"])
    mean, low, high = float(row["gain"]), float(row["gain_low"]), float(row["gain_high"])
    sd = (high - low) / 2 / float(stats.t.ppf(0.975, n - 1)) * math.sqrt(n)
    level = family_level(conditions, 1)
    design = Design(round_size=n, max_n=n)  # one planned look: the design those studies ran
    assert design.looks == (n,)
    half = float(stats.t.ppf(1 - level / 2, n - 1)) * sd / math.sqrt(n)
    interval = Interval(mean=mean, low=mean - half, high=mean + half, n=n, sd=sd, nominal_level=level,
                        confidence=1 - level)
    kind = classify(interval, margin)
    need = seeds_to_resolve(interval, margin, design, level) if kind == "inconclusive" else None
    return {"study": row["study"], "condition": row["condition"], "pairs": n, "gain": mean,
            "low": interval.low, "high": interval.high, "confidence": 1 - level, "old_verdict": row["verdict"],
            "verdict": kind, "seeds_to_resolve": need}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = list(csv.DictReader(args.csv.open()))
    per_study = Counter(r["study"] for r in rows)
    out = [rederive(r, per_study[r["study"]], DEFAULT_MARGIN_POINTS / 100) for r in rows]
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    for r in out:
        print(f"| {r['study']} | {r['condition']} | {100 * r['gain']:+.1f} ({100 * r['low']:+.1f} to "
              f"{100 * r['high']:+.1f}; {r['confidence']:.1%}) | {r['old_verdict']} | {r['verdict']}"
              + (f", about {r['seeds_to_resolve']} pairs to resolve" if r["seeds_to_resolve"] else "") + " |")


if __name__ == "__main__":
    main()
