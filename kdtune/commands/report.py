"""Write a study's HTML report: DIR/report.html (self-contained, opens offline) and the PNGs behind it in
DIR/report/. Works on a finished study and on one still running (a snapshot: running trials are marked).

alpha is the weight on the true labels: alpha = 1 means no distillation. Runs are scored at their best
validation epoch (the validation objective selects; the test metric at that epoch is reported).

With --wandb, also publish a W&B Report (panels per condition over the study's runs) and print its URL. That
needs the runs on the W&B server and an API key: offline runs must be uploaded first with
`wandb sync DIR/wandb/offline-run-*`.

examples:
  kdtune report runs/mnist-noise
  kdtune report runs/mnist-noise --wandb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


HELP = "HTML report with plots (and a W&B Report with --wandb)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="DIR", help="the study folder (e.g. runs/mnist-noise)")
    parser.add_argument("--out", default=None, metavar="PATH", help="where to write the HTML "
                        "(default: DIR/report.html; the PNGs go into a report/ folder beside it)")
    parser.add_argument("--wandb", action="store_true",
                        help="also publish a W&B Report of the study's runs (online: needs a W&B API key)")
    parser.add_argument("--entity", default=None,
                        help="W&B entity for --wandb (default: tracking.wandb.entity, else your default entity)")


def run(args: argparse.Namespace) -> int:
    from kdtune.report import write_report

    study_dir = Path(args.study_dir)
    result = write_report(study_dir, out=Path(args.out) if args.out else None)
    state = "snapshot of a running study" if result.snapshot else "finished study"
    print(f"report: {result.html} ({len(result.figures)} figures, {state})")
    if not args.wandb:
        return 0
    return _publish(study_dir, args.entity)


def _publish(study_dir: Path, entity: str | None) -> int:
    from kdtune.report import publish_wandb_report
    from kdtune.tracking import credentials_configured
    from kdtune.tracking import resolve_mode
    from kdtune.tracking import sync_command

    if resolve_mode("online") != "online" or not credentials_configured():
        print("kdtune: error: W&B is offline (WANDB_MODE=offline or no API key): sync the study's runs first, "
              "then run `kdtune report --wandb` again with a W&B API key", file=sys.stderr)
        print(sync_command(study_dir), file=sys.stderr)
        return 1
    print(f"W&B report: {publish_wandb_report(study_dir, entity=entity)}")
    return 0
