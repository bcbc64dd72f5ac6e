"""The same comparison as a W&B Report (``kdtune report DIR --wandb``); the only part of the report that
imports W&B (``wandb``, ``wandb_workspaces``), and only when called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdtune.analysis.scoring import finite
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.report.data import load_study
from kdtune.report.figures import ALPHA_LABEL


def build_wandb_report(study_dir: Path | str, *, entity: str, project: str | None = None) -> Any:
    """The W&B Report of a study, built without network (call ``.save()`` to publish it).

    Run sets filter on the study's group (its name and id: :func:`kdtune.wandb_settings.study_group`) and, per
    condition, on ``config.condition_id`` (the condition key with ``:`` for ``=``, which W&B's filter expressions
    cannot hold inside a value); teachers on job type ``teacher``.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise UsageError("W&B Reports need the wandb-workspaces package: pip install 'kdtune[wandb-reports]'") from None

    from kdtune.wandb_settings import condition_id
    from kdtune.wandb_settings import study_group

    data = load_study(Path(study_dir))
    spec = data.spec
    project = project or (spec.tracking.wandb.project if spec.tracking.wandb else "kdtune")
    group = f"Group = '{study_group(spec.name, data.meta.get('id'))}'"
    select, test = data.objective.column, data.objective.test_column

    def runset(name: str, extra: str) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=f"{group} and {extra}")

    def condition_runset(condition: str) -> Any:
        return runset(condition, f"Config('condition_id') = '{condition_id(condition)}'")

    def alpha_scatter(metric: str, what: str) -> Any:
        return wr.ScatterPlot(title=f"{what} vs {ALPHA_LABEL}", x=wr.Config("alpha"), y=wr.SummaryMetric(metric))

    verdicts = {c["key"]: c["verdict"]["text"] for c in (data.recommendation or {}).get("conditions", [])}
    blocks: list[Any] = [
        wr.H1(f"kdtune study {spec.name}"),
        wr.P(f"alpha is the {ALPHA_LABEL[len('alpha ('):-1]}. Every run's summary holds its metrics at its best "
             f"validation epoch; the objective is {spec.objective_name}."),
    ]
    if verdicts:
        blocks.append(wr.MarkdownBlock("\n".join(f"* **{k}**: {v}" for k, v in verdicts.items())))
    blocks += [wr.H2("All conditions"), wr.PanelGrid(
        runsets=[condition_runset(c) for c in data.conditions],
        panels=[alpha_scatter(test, "test metric at the best validation epoch"),
                alpha_scatter(select, "validation objective")])]
    for condition in data.conditions:
        panels = [alpha_scatter(test, "test metric at the best validation epoch"),
                  wr.LinePlot(title=f"{select} per epoch", x="Step", y=[select]),
                  wr.ParallelCoordinatesPlot(title="configurations", columns=[
                      wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in spec.search
                  ] + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(m)) for m in (select, test)])]
        if len(spec.search) > 1:
            panels.append(wr.ParameterImportancePlot(with_respect_to=select))
        if "temperature" in spec.search:
            panels.append(wr.ScatterPlot(title=f"temperature vs {ALPHA_LABEL}", x=wr.Config("alpha"),
                                         y=wr.Config("temperature")))
        if any(r.condition == condition and finite(r.row.get("correction_rate")) for r in data.runs):
            panels += [alpha_scatter("correction_rate", "flipped-label correction"),
                       alpha_scatter("memorisation_rate", "flipped-label memorisation")]
        blocks += [wr.H2(f"Condition {condition}"), wr.PanelGrid(runsets=[condition_runset(condition)],
                                                                 panels=panels)]
    if data.task.cache_codec is not None:  # a teacher trained (or given) as a model, whose runs W&B holds
        blocks += [wr.H2("Teachers"), wr.PanelGrid(
            runsets=[runset("teachers", "JobType = 'teacher'")],
            panels=[wr.LinePlot(title=f"teacher {data.objective.label} per epoch", x="Step",
                                y=[data.objective.column, data.objective.test_column])])]
    return wr.Report(entity=entity, project=project, title=f"kdtune: {spec.name}",
                     description=f"alpha/temperature study {spec.name}, one section per condition", blocks=blocks)


def publish_wandb_report(study_dir: Path | str, *, entity: str | None = None) -> str:
    """Save the study's W&B Report to the W&B server (network, API key) and return its URL."""
    import wandb

    spec = load_study(Path(study_dir)).spec
    entity = entity or (spec.tracking.wandb.entity if spec.tracking.wandb else None) or wandb.Api().default_entity
    if not entity:
        raise StudyError("no W&B entity: set tracking.wandb.entity in the spec or log in with `wandb login`")
    report = build_wandb_report(study_dir, entity=entity)
    report.save()
    return str(report.url)
