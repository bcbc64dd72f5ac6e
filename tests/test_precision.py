"""GPU precision: the spec's precision, compile and logits-dtype fields, how a CPU runs them (fp32, eager, exactly as
without them), the cache keys they change and the ones they keep; the CUDA path where a GPU is present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kdtune.cache import LogitCache
from kdtune.cache.keys import logits_key
from kdtune.cache.keys import teacher_key
from kdtune.cache.teacher import TeacherSpec
from kdtune.core.data import DataBundle
from kdtune.core.train import TrainConfig
from kdtune.core.train import Trainer
from kdtune.core.train import gpu_execution
from kdtune.errors import SpecError
from kdtune.errors import SpecErrors
from kdtune.spec.conditions import expand
from kdtune.spec.schema import parse_spec
from kdtune.tasks import task_for
from kdtune.tasks.datasets import load_dataset
from kdtune.tasks.image.models import build_model


def _spec(**sections: Any) -> dict[str, Any]:
    return {"name": "precision", "dataset": {"name": "digits"}, "teacher": {"arch": "linear", "epochs": 1},
            "student": {"arch": "linear", "epochs": 1}, "scheduler": {"type": "fifo"}, "tracking": "none",
            **sections}


@pytest.mark.parametrize(("sections", "line"), [
    ({"student": {"precision": "fp64"}}, "student.precision = 'fp64': must be 'fp32', 'bf16' or 'fp16'"),
    ({"teacher": {"precision": "half"}}, "teacher.precision = 'half': must be 'fp32', 'bf16' or 'fp16'"),
    ({"student": {"compile": "yes please"}}, "student.compile = 'yes please': "),
    ({"cache": {"logits_dtype": "float64"}}, "cache.logits_dtype = 'float64': must be 'float32' or 'float16'"),
])
def test_bad_precision_fields_are_one_line_naming_the_field(sections: dict[str, Any], line: str) -> None:
    with pytest.raises((SpecError, SpecErrors)) as caught:
        parse_spec(_spec(**sections))
    text = str(caught.value)
    assert text.startswith(line) and "\n" not in text


def test_precision_fields_reach_the_teacher_and_the_students_recipe() -> None:
    spec = parse_spec(_spec(teacher={"arch": "linear", "precision": "bf16", "compile": True},
                            student={"precision": "fp16"}, cache={"logits_dtype": "float16"}))
    teacher = expand(spec)[0].teacher_spec(spec)
    assert (teacher.precision, teacher.compile) == ("bf16", True)
    assert (teacher.config().precision, teacher.config().compile) == ("bf16", True)
    from kdtune.core.train import student_recipe

    recipe = student_recipe(spec.student.model_dump())
    assert (recipe["precision"], recipe["compile"]) == ("fp16", False)


def test_a_cpu_ignores_precision_and_compile_and_trains_exactly_as_fp32() -> None:
    data = load_dataset("digits", train_size=200)
    runs = []
    for precision, compile in (("fp32", False), ("bf16", True), ("fp16", False)):
        model = build_model("reference_student", input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
        trainer = Trainer(model, data, TrainConfig(epochs=1, seed=0, precision=precision, compile=compile),
                          device="cpu")
        assert trainer.autocast_dtype is None and trainer.scaler is None and trainer.forward is trainer.model
        trainer.step()
        runs.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_on_cuda_the_precision_picks_the_autocast_dtype() -> None:
    model = build_model("linear", input_shape=(1, 8, 8), num_classes=10)
    cuda = torch.device("cuda")
    assert gpu_execution(model, TrainConfig(precision="fp32"), cuda) == (None, None, model)
    assert gpu_execution(model, TrainConfig(precision="bf16"), cuda) == (torch.bfloat16, None, model)


def test_teacher_keys_of_fp32_teachers_are_unchanged_and_other_precisions_differ() -> None:
    fp32 = TeacherSpec(arch="linear", epochs=1)
    assert "precision" not in fp32.to_dict() and "compile" not in fp32.to_dict()  # keys from before stay valid
    bf16 = TeacherSpec(arch="linear", epochs=1, precision="bf16")
    compiled = TeacherSpec(arch="linear", epochs=1, compile=True)
    assert teacher_key(bf16, "data") != teacher_key(fp32, "data")
    assert teacher_key(compiled, "data") == teacher_key(fp32, "data")  # how it runs, not what it learns
    # a CPU trains it in fp32: its key says so, and a GPU's bf16 teacher is another entry
    assert teacher_key(bf16.for_device("cpu"), "data") == teacher_key(fp32, "data")
    assert bf16.for_device("cuda") is bf16


def test_the_logits_key_includes_the_dtype_and_float32_is_the_old_default() -> None:
    assert logits_key("w", "d") == logits_key("w", "d", "float32")
    assert logits_key("w", "d", "float16") != logits_key("w", "d", "float32")


def test_float16_logits_are_their_own_cache_entry_and_read_back_close(tmp_path: Path) -> None:
    data: DataBundle = load_dataset("digits", train_size=300)
    cache = LogitCache(tmp_path)
    spec = TeacherSpec(arch="linear", epochs=1)
    full = cache.prepare(spec, data, dtype="float32")
    half = cache.prepare(spec, data, dtype="float16")
    assert half.key != full.key and half.teacher_key == full.teacher_key and not half.trained  # teacher reused
    assert half.arrays["train"].dtype == "float16" and half.logits.train.dtype == torch.float32
    assert torch.allclose(half.logits.train, full.logits.train, atol=0.01)
    assert cache.prepare(spec, data, dtype="float16").hit


def test_the_image_task_caches_logits_in_the_specs_dtype(tmp_path: Path) -> None:
    keys = {}
    for dtype in ("float32", "float16"):
        spec = parse_spec(_spec(cache={"logits_dtype": dtype}))
        (condition,) = expand(spec)
        info, _ = task_for(spec).prepare(spec, condition, cache_dir=str(tmp_path), on_epoch=lambda epoch: None)
        keys[dtype] = info["cache_key"]
    assert keys["float16"] != keys["float32"]
    records = {entry.key: entry.dtype for entry in LogitCache(tmp_path).entries()}
    assert records[keys["float16"]] == "float16" and records[keys["float32"]] == "float32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("precision", "compile"), [("bf16", False), ("fp16", False), ("bf16", True)])
def test_cuda_trains_under_autocast(precision: str, compile: bool) -> None:
    data = load_dataset("digits", train_size=400)
    model = build_model("torchvision:resnet18", input_shape=data.input_shape, num_classes=data.num_classes,
                        kwargs={"small_input": True}, seed=0)
    trainer = Trainer(model, data, TrainConfig(epochs=2, seed=0, lr=1e-3, precision=precision,  # type: ignore[arg-type]
                                               compile=compile), device="cuda")
    assert trainer.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (trainer.scaler is not None) == (precision == "fp16")
    first, second = trainer.step(), trainer.step()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert second.train_loss < first.train_loss
    assert next(trainer.model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights
    if precision == "fp16":
        assert "scaler" in trainer.state_dict()
