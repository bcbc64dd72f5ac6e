"""Write a study's HTML report: DIR/report.html (self-contained, opens offline) and the PNGs behind it in
DIR/report/. Works on a finished study and on one still running (a snapshot: running trials are marked).

alpha is the weight on the true labels: alpha = 1 means no distillation. Runs are scored at their best
validation epoch (the validation objective selects; the test metric at that epoch is reported).

With several DIRs, one comparison report puts the studies side by side (e.g. two student architectures, or
MNIST vs Fashion-MNIST): the same plots, one colour per study, conditions matched by their values (e.g.
noise_level), and each study's own recommendation. It goes to ./report-compare.html (or --out PATH), its PNGs
into a folder named after the HTML file. A linear (regression) study cannot be compared with classification
studies.

With --wandb (one DIR), also publish a W&B Report (panels per condition over the study's runs) and print its
URL. That needs the runs on the W&B server and an API key: offline runs must be uploaded first with
`wandb sync DIR/wandb/offline-run-*`.

examples:
  kdtune report runs/mnist-noise
  kdtune report runs/mnist-noise --wandb
  kdtune report runs/mnist-noise runs/fashion-noise --out compare/mnist-vs-fashion.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


HELP = "HTML report with plots (several DIRs: side by side; a W&B Report with --wandb)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dirs", nargs="+", metavar="DIR",
                        help="the study folder (e.g. runs/mnist-noise); several: one comparison report")
    parser.add_argument("--out", default=None, metavar="PATH", help="where to write the HTML (default: "
                        "DIR/report.html, the PNGs in a report/ folder beside it; with several DIRs "
                        "./report-compare.html, the PNGs in report-compare/ beside it)")
    parser.add_argument("--wandb", action="store_true",
                        help="also publish a W&B Report of the study's runs (one DIR; online: needs a W&B API key)")
    parser.add_argument("--entity", default=None,
                        help="W&B entity for --wandb (default: tracking.wandb.entity, else your default entity)")


def run(args: argparse.Namespace) -> int:
    from kdtune.errors import UsageError
    from kdtune.report import write_comparison
    from kdtune.report import write_report

    dirs = [Path(d) for d in args.study_dirs]
    out = Path(args.out) if args.out else None
    if len(dirs) > 1:
        if args.wandb:
            raise UsageError("--wandb publishes the W&B Report of one study: give one DIR")
        result = write_comparison(dirs, out=out)
        state = "; some not finished (snapshots)" if result.snapshot else ""
        print(f"comparison report: {result.html} ({len(dirs)} studies, {len(result.figures)} figures{state})")
        return 0
    result = write_report(dirs[0], out=out)
    state = "snapshot of a running study" if result.snapshot else "finished study"
    print(f"report: {result.html} ({len(result.figures)} figures, {state})")
    if not args.wandb:
        return 0
    return _publish(dirs[0], args.entity)


def _publish(study_dir: Path, entity: str | None) -> int:
    from kdtune.records.folder import StudyFolder
    from kdtune.report import publish_wandb_report
    from kdtune.wandb_settings import credentials_configured
    from kdtune.wandb_settings import resolve_mode
    from kdtune.wandb_settings import sync_command

    if resolve_mode("online") != "online" or not credentials_configured():
        print("kdtune: error: W&B is offline (WANDB_MODE=offline or no API key): sync the study's runs first, "
              "then run `kdtune report --wandb` again with a W&B API key", file=sys.stderr)
        print(sync_command(StudyFolder(study_dir).wandb_dir), file=sys.stderr)
        return 1
    print(f"W&B report: {publish_wandb_report(study_dir, entity=entity)}")
    return 0
