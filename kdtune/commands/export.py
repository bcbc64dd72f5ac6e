"""Export the recommended student of one condition: trained once more, weights (safetensors) + a model card.

alpha is the weight on the true labels: alpha = 1 means no distillation.

The configuration is the one `kdtune recommend` recommends for the condition (the confirmed configuration when
its verdict is "distil", else the optimum of the surface fitted to the search; see docs/recommendation_schema.md).
The student is trained from the study's cached teacher logits (no Ray; the teacher does not run when its
logits are in the cache) with one seed (default: the study's first student seed, budget.seed, so the run
repeats that seed of the study), and the weights of its best validation epoch are written to PATH. Beside
them, PATH with the suffix .json is the model card: spec, condition, alpha, temperature and the other
parameters, the teacher's fingerprint and cache key, this run's validation and test metrics, the study's
estimates with their intervals, and the kdtune version.

--condition KEY=VALUE (repeatable) picks the condition by its axes (noise_level=0.2, student_arch=mlp, ...);
it may be left out when the study has one condition.

examples:
  kdtune export runs/quickstart --condition noise_level=0.1 --out student.safetensors
  kdtune export runs/teacher-quality --condition teacher_epochs=2 --out s.safetensors --seed 7
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdtune.commands import positive_int


HELP = "train and export the recommended student of one condition (safetensors + model card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="DIR", help="the study folder")
    parser.add_argument("--condition", action="append", default=[], metavar="KEY=VALUE",
                        help="select the condition by one of its axes (repeatable), e.g. noise_level=0.2")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the weights file (.safetensors); the model card goes to PATH with suffix .json")
    parser.add_argument("--seed", type=int, default=None,
                        help="student seed: initialisation and batch order (default: the study's budget.seed)")
    parser.add_argument("--cache-dir", default=None,
                        help="teacher-logit cache (default: the study's, else $KDTUNE_CACHE_DIR)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: all cores)")


def run(args: argparse.Namespace) -> int:
    from kdtune.analysis.export import export

    card = export(Path(args.study), args.condition, Path(args.out), seed=args.seed, cache_dir=args.cache_dir,
                  threads=args.threads)
    m = card["metrics"]
    print(f"exported {card['condition']['key']}: alpha {card['alpha']:g}, temperature {card['temperature']:g}, "
          f"seed {card['seed']}, epoch {m['epoch']}: validation accuracy {m['val_accuracy']:.4f}, "
          f"test accuracy {m['test_accuracy']:.4f}")
    print(f"  weights:    {args.out}")
    print(f"  model card: {Path(args.out).with_suffix('.json')}")
    return 0
