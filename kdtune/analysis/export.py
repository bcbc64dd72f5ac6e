"""Export the recommended student of one condition: trained once more, weights (safetensors) + a model card.

alpha is the weight on the true labels: alpha = 1 means no distillation.

The configuration is the one :func:`kdtune.analysis.recommendation.recommend` recommends for the condition, the
verdict's answer (the confirmed configuration for "distil" and "inconclusive", alpha = 1 for "hurts" and "no
gain", the optimum of the surface fitted to the search without confirmation; ``docs/recommendation_schema.md``).
The student is trained from the study's cached teacher logits (no Ray; the teacher does not run when its logits
are in the cache, and the entry is rebuilt the study's way when it was pruned) with one seed, and the weights of
its first best validation epoch are written. Beside them, the same path with the suffix .json is the model card:
spec, condition, alpha, temperature and the other parameters, the teacher's fingerprint and cache key, this run's
validation and test metrics, the study's estimates with their intervals, and the kdtune version. ``kdtune export``
is the command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune._version import __version__
from kdtune.cache import LogitCache
from kdtune.core.train import TrainConfig
from kdtune.errors import CacheError
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write
from kdtune.spec.conditions import Condition
from kdtune.tasks import task_for


if TYPE_CHECKING:
    from kdtune.core.data import DataBundle
    from kdtune.core.train import EpochMetrics
    from kdtune.core.train import TeacherLogits
    from kdtune.spec.schema import StudySpec
    from kdtune.tasks import Objective


def export(study_dir: Path, selectors: list[str], out: Path, *, seed: int | None = None,
           cache_dir: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train the recommended student of the selected condition and write ``out`` + its model card (returned)."""
    from kdtune.analysis.recommendation import recommend

    folder = StudyFolder(study_dir)
    meta = folder.meta()
    spec = folder.spec()
    task = task_for(spec)
    if not task.by_epochs:
        raise UsageError(f"{study_dir}: export trains a student; the {task.kind} task's students are solved in closed "
                         "form (see `kdtune recommend`)")
    condition = select_condition([Condition(**c) for c in meta["conditions"]], selectors)
    report = recommend([study_dir])
    entry = next(c for c in report["conditions"] if c["key"] == condition.key)
    if entry["recommended"] is None:
        raise StudyError(f"{study_dir}: condition {condition.key} has no completed trials (nothing to export)")
    params = entry["recommended"]["params"]
    teacher_info = folder.teachers().get(condition.key, {})
    seed = spec.budget.seed if seed is None else seed

    data = condition.load_data(spec)
    recorded_key = teacher_info.get("cache_key")
    logits, cache_key, rebuilt = _teacher_logits(LogitCache(cache_dir or meta.get("cache_dir")), recorded_key,
                                                 condition, spec, data)
    temperature = float(params.get("temperature") if params.get("temperature") is not None
                        else spec.default_temperature)
    config = TrainConfig.from_params({**params, "temperature": temperature}, seed=seed, recipe=spec.student.recipe())
    model, best = _train_best(condition, spec, data, logits, config, threads, task.objective(spec.objective))
    _save_weights(model, out, condition.student_arch)
    card = {
        "kdtune_version": __version__,
        "study": {"path": str(study_dir), "name": spec.name},
        "spec": spec.to_dict(),
        "condition": condition.as_dict(),
        "model": {"arch": condition.student_arch, "kwargs": condition.student_kwargs(spec),
                  "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                  "weights": out.name, "format": "safetensors",
                  "load": "kdtune.tasks.image.models.build_model(arch, input_shape=..., num_classes=..., kwargs=...) then "
                          "load_state_dict(safetensors.torch.load_file(...))"},
        "alpha": config.alpha,
        "temperature": config.temperature,
        "params": {**params, "temperature": temperature},
        "seed": seed,
        "selection": "kdtune.analysis.recommendation: " + report["method"]["recommended"],
        "teacher": {"source": teacher_info.get("source", "trained"), "fingerprint": teacher_info.get("fingerprint"),
                    "teacher_key": teacher_info.get("teacher_key"), "cache_key": cache_key,
                    "cache_key_in_study": recorded_key, "logits_rebuilt": rebuilt,
                    "diagnostics": teacher_info.get("diagnostics")},
        "dataset": {"description": data.description, "fingerprint": data.fingerprint(),
                    "samples": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}},
        "metrics": {"epoch": best.epoch, "val_accuracy": best.val_accuracy, "val_loss": best.val_loss,
                    "test_accuracy": best.test_accuracy, "test_loss": best.test_loss,
                    "test_macro_f1": best.test_macro_f1, "teacher_agreement": best.teacher_agreement,
                    "correction_rate": best.correction_rate, "memorisation_rate": best.memorisation_rate},
        "study_estimates": {"confirmed": entry["confirmed"], "best_observed": entry["best_observed"],
                            "alpha_interval": entry["recommended"]["alpha"],
                            "temperature_interval": entry["recommended"]["temperature"],
                            "source": entry["recommended"]["source"], "gain_over_no_distillation": entry["gain"],
                            "verdict": entry["verdict"]},
    }
    atomic_write(out.with_suffix(".json"), json.dumps(card, indent=2, default=str) + "\n", mode=None)
    return card


def _teacher_logits(cache: LogitCache, recorded_key: str | None, condition: Condition, spec: StudySpec,
                    data: DataBundle) -> tuple[TeacherLogits, str, bool]:
    """The condition's teacher logits from the cache entry the study recorded: (logits, cache key, rebuilt)."""
    import torch

    from kdtune.core.train import TeacherLogits

    try:
        if recorded_key is None:
            raise CacheError("no cache key recorded")
        arrays = cache.read(recorded_key, data)
        logits = TeacherLogits(*(torch.from_numpy(arrays[n].astype("float32")) for n in ("train", "val", "test")))
        return logits, recorded_key, False
    except CacheError:  # pruned or damaged: rebuild it the way the study built it
        prepared = cache.prepare(condition.teacher_spec(spec), data, dtype=spec.cache.logits_dtype)
        return prepared.logits, prepared.key, True


def _train_best(condition: Condition, spec: StudySpec, data: DataBundle, logits: TeacherLogits,
                config: TrainConfig, threads: int | None, objective: Objective) -> tuple[Any, EpochMetrics]:
    """The student trained with ``config``, holding the weights of its first best validation epoch (as in the
    study), and that epoch's metrics."""
    import copy

    from kdtune.core.train import Trainer
    from kdtune.tasks.image.models import build_model

    model = build_model(condition.student_arch, input_shape=data.input_shape, num_classes=data.num_classes,
                        kwargs=condition.student_kwargs(spec), field="student.arch", seed=config.seed)
    trainer = Trainer(model, data, config, teacher=logits, threads=threads or os.cpu_count() or 1)
    best, best_state = None, None
    for _ in range(config.epochs):
        metrics = trainer.step()
        value = metrics.as_dict()[objective.column]
        if best is None or objective.better(value, best.as_dict()[objective.column]):  # the first best, as in the study
            best, best_state = metrics, copy.deepcopy(model.state_dict())
    assert best is not None and best_state is not None
    model.load_state_dict(best_state)
    return model, best


def _save_weights(model: Any, out: Path, arch: str) -> None:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"format": "pt", "kdtune_version": __version__, "arch": arch})


def select_condition(conditions: list[Any], selectors: list[str]) -> Any:
    """The one condition every ``KEY=VALUE`` selector matches; one-line UsageError otherwise."""
    available = ", ".join(c.key for c in conditions)
    axes = set(conditions[0].as_dict()) - {"key"} if conditions else set()
    chosen = list(conditions)
    for item in selectors:
        name, sep, text = item.partition("=")
        if not sep or name not in axes:
            raise UsageError(f"--condition {item!r}: must be AXIS=VALUE with an axis of "
                             f"{', '.join(sorted(axes))}; available conditions: {available}")
        chosen = [c for c in chosen if _matches(getattr(c, name), text)]
    if len(chosen) == 1:
        return chosen[0]
    if not chosen:
        raise UsageError(f"--condition {' '.join(selectors)}: no such condition; available conditions: {available}")
    what = " ".join(selectors) or "(none given)"
    raise UsageError(f"--condition {what}: ambiguous, {len(chosen)} conditions match ("
                     f"{', '.join(c.key for c in chosen)}); available conditions: {available}")


def _matches(value: Any, text: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return str(value) == text
