"""The study report: ``DIR/report.html`` (self-contained: figures as base64 PNGs, inline CSS, opens offline),
the PNGs behind it in ``DIR/report/`` with ``figures.json`` (each figure's axes and labels), and the same
comparison as a W&B Report (:func:`build_wandb_report`, published by ``kdtune report DIR --wandb``).

alpha is the weight on the true labels: alpha = 1 means no distillation. Every axis that shows alpha is
labelled :data:`ALPHA_LABEL`.

A *run* (one seed of one trial) is scored the way :mod:`kdtune.analysis.scoring` says: the validation objective at the
run's best validation epoch selects, the test metric at that same epoch is reported. Means and intervals use
the runs of COMPLETE trials; runs of RUNNING (snapshot of a study still going) or PRUNED trials are drawn
hollow and left out of the means. The answer is the study's recommendation (:func:`kdtune.analysis.recommendation.recommend`,
what ``kdtune recommend`` prints): the table, the verdicts and the answer's figures read it, and the search's
aggregates read the search and baseline runs only, never the confirmation runs. The panels:

* the gain over no distillation per condition with its interval, zero line and margin (a forest plot);
* the recommended alpha on the validation objective: the fitted curve with its band, the alphas that may be
  best, the fitted optimum, the baselines as points;
* with a ``fidelity`` section, the transfer check: each re-run configuration's cheap mean against its
  full-fidelity mean, the cheap choice and the full-fidelity best marked, the verdict in words beside it;
* test accuracy vs alpha (search runs as points, configuration means with 95% t-intervals, baselines as points,
  confirmation means apart);
* alpha x temperature: the objective binned over the searched ranges, per condition, the recommended point marked;
* learning curves: each trial's mean of its seeds' best so far per epoch, with ASHA's rungs;
* Optuna parameter importances per condition (from the study's Optuna storage);
* per-class test accuracy differences, judged configuration minus no distillation (alpha = 1);
* flipped-label correction and memorisation vs alpha (conditions with label noise);
* teacher vs student test accuracy per condition, on the verdict's runs;
* search progress: best objective vs search trial index per condition;
* linear task (objective val_mse): validation and test excess MSE vs alpha, with the closed-form alpha*.

:func:`write_comparison` (``kdtune report DIR1 DIR2 ...``) puts several studies side by side in one report
(``report-compare.html``, PNGs in ``report-compare/``): the same panels through the same functions (a
:class:`View` says what each colour is), one colour per study, conditions matched across studies by the values
of the condition axes that vary in any of them, and each study's own recommendation in its section. The
studies may differ in dataset, teacher and student; a linear (regression) study is not compared with
classification ones.

The package, one module per section: :mod:`~kdtune.report.data` (a study folder read and scored),
:mod:`~kdtune.report.view` (what each colour is), :mod:`~kdtune.report.panels` (one function per figure;
the answer's in :mod:`~kdtune.report.answer_panels`, the transfer check's in
:mod:`~kdtune.report.transfer_panel`, what the models learned in
:mod:`~kdtune.report.learned_panels`),
:mod:`~kdtune.report.figures` (what the panels draw with), :mod:`~kdtune.report.html` (the page and the
verdicts), :mod:`~kdtune.report.write` (writing it all) and :mod:`~kdtune.report.wandb_report` (the W&B Report).
Matplotlib with the Agg backend; no Ray, no torch, and W&B only inside :func:`build_wandb_report` and
:func:`publish_wandb_report`.
"""

from kdtune.records.folder import FIGURES_DIR
from kdtune.records.folder import REPORT_HTML
from kdtune.report.data import StudyData
from kdtune.report.data import load_study
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import Figure
from kdtune.report.wandb_report import build_wandb_report
from kdtune.report.wandb_report import publish_wandb_report
from kdtune.report.write import COMPARE_HTML
from kdtune.report.write import MANIFEST
from kdtune.report.write import ReportResult
from kdtune.report.write import write_comparison
from kdtune.report.write import write_report


__all__ = ["ALPHA_LABEL", "COMPARE_HTML", "FIGURES_DIR", "MANIFEST", "REPORT_HTML", "Figure", "ReportResult",
           "StudyData", "build_wandb_report", "load_study", "publish_wandb_report", "write_comparison",
           "write_report"]
