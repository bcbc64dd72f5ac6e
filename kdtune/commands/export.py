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
import json
from pathlib import Path
from typing import Any

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
    card = export(Path(args.study), args.condition, Path(args.out), seed=args.seed, cache_dir=args.cache_dir,
                  threads=args.threads)
    m = card["metrics"]
    print(f"exported {card['condition']['key']}: alpha {card['alpha']:g}, temperature {card['temperature']:g}, "
          f"seed {card['seed']}, epoch {m['epoch']}: validation accuracy {m['val_accuracy']:.4f}, "
          f"test accuracy {m['test_accuracy']:.4f}")
    print(f"  weights:    {args.out}")
    print(f"  model card: {Path(args.out).with_suffix('.json')}")
    return 0


def export(study_dir: Path, selectors: list[str], out: Path, *, seed: int | None = None,
           cache_dir: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train the recommended student of the selected condition and write ``out`` + its model card."""
    import copy
    import os

    import torch
    from safetensors.torch import save_file

    from kdtune._version import __version__
    from kdtune.cache import LogitCache
    from kdtune.errors import CacheError
    from kdtune.errors import StudyError
    from kdtune.errors import UsageError
    from kdtune.models import build_model
    from kdtune.plan import Condition
    from kdtune.recommendation import recommend
    from kdtune.spec import StudySpec
    from kdtune.study import load_study_json
    from kdtune.train import TrainConfig
    from kdtune.train import Trainer

    meta = load_study_json(study_dir)
    spec = StudySpec.model_validate(meta["spec"])
    if spec.task != "classification":
        raise UsageError(f"{study_dir}: export trains classification students; the linear task is solved in closed "
                         "form (see `kdtune recommend`)")
    condition = select_condition([Condition(**c) for c in meta["conditions"]], selectors)
    report = recommend([study_dir])
    entry = next(c for c in report["conditions"] if c["key"] == condition.key)
    if entry["recommended"] is None:
        raise StudyError(f"{study_dir}: condition {condition.key} has no completed trials (nothing to export)")
    params = entry["recommended"]["params"]
    teachers = json.loads((study_dir / "teachers.json").read_text()) if (study_dir / "teachers.json").exists() else {}
    teacher_info = teachers.get(condition.key, {})
    seed = spec.budget.seed if seed is None else seed

    data = condition.load_data(spec)
    cache = LogitCache(cache_dir or meta.get("cache_dir"))
    recorded_key = teacher_info.get("cache_key")
    try:
        if recorded_key is None:
            raise CacheError("no cache key recorded")
        arrays = cache.read(recorded_key, data)
        from kdtune.train import TeacherLogits

        logits = TeacherLogits(*(torch.from_numpy(arrays[n].astype("float32")) for n in ("train", "val", "test")))
        cache_key, rebuilt = recorded_key, False
    except CacheError:  # pruned or damaged: rebuild it the way the study built it
        prepared = cache.prepare(condition.teacher_spec(spec), data)
        logits, cache_key, rebuilt = prepared.logits, prepared.key, True

    model = build_model(condition.student_arch, input_shape=data.input_shape, num_classes=data.num_classes,
                        kwargs=dict(spec.student.kwargs), field="student.arch", seed=seed)
    temperature = float(params.get("temperature") if params.get("temperature") is not None
                        else spec.default_temperature)
    config = TrainConfig(epochs=int(params["epochs"]), lr=float(params["lr"]), batch_size=int(params["batch_size"]),
                         alpha=float(params["alpha"]), temperature=temperature, seed=seed, **spec.student.recipe())
    trainer = Trainer(model, data, config, teacher=logits, threads=threads or os.cpu_count() or 1)
    best, best_state = None, None
    for _ in range(config.epochs):
        metrics = trainer.step()
        if best is None or metrics.val_accuracy > best.val_accuracy:  # the first best epoch, as in the study
            best, best_state = metrics, copy.deepcopy(model.state_dict())
    assert best is not None and best_state is not None
    model.load_state_dict(best_state)

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"format": "pt", "kdtune_version": __version__, "arch": condition.student_arch})
    card = {
        "kdtune_version": __version__,
        "study": {"path": str(study_dir), "name": spec.name},
        "spec": spec.to_dict(),
        "condition": condition.as_dict(),
        "model": {"arch": condition.student_arch, "kwargs": dict(spec.student.kwargs),
                  "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                  "weights": out.name, "format": "safetensors",
                  "load": "kdtune.models.build_model(arch, input_shape=..., num_classes=..., kwargs=...) then "
                          "load_state_dict(safetensors.torch.load_file(...))"},
        "alpha": config.alpha,
        "temperature": config.temperature,
        "params": {**params, "temperature": temperature},
        "seed": seed,
        "selection": "kdtune.recommendation: " + report["method"]["recommended"],
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
    card_path = out.with_suffix(".json")
    tmp = card_path.with_name(f".{card_path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    tmp.replace(card_path)
    return card


def select_condition(conditions: list[Any], selectors: list[str]) -> Any:
    """The one condition every ``KEY=VALUE`` selector matches; one-line UsageError otherwise."""
    from kdtune.errors import UsageError

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
