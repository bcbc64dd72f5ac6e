"""Vision models by name: torchvision and timm architectures, the small-image stem, input channels, pretrained
weights from the machine's own caches, the CIFAR ResNets, and the one-line refusals (no weights, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kdtune.errors import SpecError
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.models import check_arch
from kdtune.tasks.image.models import count_parameters


REPO = Path(__file__).resolve().parents[1]


def kdtune(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdtune", *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy(), cwd=REPO)


@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_torchvision_resnet18_with_the_small_stem_fits_the_data(shape: tuple[int, int, int], classes: int) -> None:
    model = build_model("torchvision:resnet18", input_shape=shape, num_classes=classes, kwargs={"small_input": True},
                        seed=0)
    assert isinstance(model.conv1, nn.Conv2d)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (shape[0], (3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert model.fc.out_features == classes
    out = model(torch.rand(2, *shape).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, classes) and out.dtype == torch.float32


def test_without_the_small_stem_the_imagenet_stem_stays_and_takes_the_datas_channels() -> None:
    model = build_model("torchvision:resnet18", input_shape=(1, 28, 28), num_classes=10)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_other_families_take_the_datas_channels_and_classes() -> None:
    model = build_model("torchvision:mobilenet_v3_small", input_shape=(1, 32, 32), num_classes=7, seed=0)
    model.eval()
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 7)


def test_the_seed_fixes_a_library_models_weights() -> None:
    a, b = (build_model("torchvision:resnet18", input_shape=(3, 32, 32), num_classes=10, kwargs={"small_input": True},
                        seed=3) for _ in range(2))
    c = build_model("torchvision:resnet18", input_shape=(3, 32, 32), num_classes=10, kwargs={"small_input": True}, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_an_unknown_torchvision_name_is_one_line_naming_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        check_arch("torchvision:resnet19", field="student.arch")
    text = str(caught.value)
    assert text.startswith("student.arch = 'torchvision:resnet19': is not a torchvision classification model")
    assert "torchvision:resnet18" in text and "\n" not in text


def test_timm_without_timm_installed_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError, as on a machine without it
    with pytest.raises(SpecError, match=r"^teacher\.arch = 'timm:resnet18': timm models need the optional extra: "
                       r"pip install 'kdtune\[vision\]'"):
        check_arch("timm:resnet18", field="teacher.arch")


def test_timm_models_build_with_the_small_stem() -> None:
    pytest.importorskip("timm")
    model = build_model("timm:resnet18", input_shape=(1, 28, 28), num_classes=10, kwargs={"small_input": True}, seed=0)
    assert (model.conv1.in_channels, model.conv1.stride) == (1, (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(SpecError, match="student.arch = 'timm:resnet1000x': is not a timm classification model"):
        check_arch("timm:resnet1000x", field="student.arch")


def test_the_small_stem_is_refused_for_a_model_without_a_resnet_stem() -> None:
    with pytest.raises(SpecError, match=r"student.arch kwargs.small_input = True: needs a model with a ResNet stem"):
        build_model("torchvision:vgg11", input_shape=(3, 32, 32), num_classes=10, kwargs={"small_input": True},
                    field="student.arch")


def test_input_channels_in_the_kwargs_are_refused() -> None:
    with pytest.raises(SpecError, match=r"student.arch kwargs = \{'in_chans': 3\}: is set from the data's image channels"):
        build_model("torchvision:resnet18", input_shape=(1, 28, 28), num_classes=10, kwargs={"in_chans": 3},
                    field="student.arch")


def test_pretrained_weights_load_only_from_this_machines_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing weights are one line saying how to fetch them; weights put where torch hub keeps them are loaded,
    summed over RGB for a 1-channel input, with a new head for the class count. The 'weights' are a random
    resnet18's, written here: nothing is downloaded."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(SpecError, match=r"teacher.arch kwargs.pretrained = True: weights ResNet18_Weights.IMAGENET1K_V1 "
                       r"are not on this machine .*fetch them once with"):
        build_model("torchvision:resnet18", input_shape=(1, 28, 28), num_classes=10, kwargs={"pretrained": True},
                    field="teacher.arch")
    source = torchvision.models.resnet18()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / os.path.basename(url))
    model = build_model("torchvision:resnet18", input_shape=(1, 28, 28), num_classes=10, kwargs={"pretrained": True})
    assert torch.equal(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.fc.out_features == 10
    with pytest.raises(SpecError, match="is not a weights name of torchvision:resnet18; allowed: true, IMAGENET1K_V1"):
        build_model("torchvision:resnet18", input_shape=(3, 32, 32), num_classes=10, kwargs={"pretrained": "V9"})


def test_the_cifar_resnets_have_the_published_sizes() -> None:
    # CRD (Tian et al. 2020), Table 1's pair: resnet32x4 7.43 M parameters, resnet8x4 1.23 M (on 100 classes).
    teacher = build_model("resnet32x4", input_shape=(3, 32, 32), num_classes=100)
    student = build_model("resnet8x4", input_shape=(3, 32, 32), num_classes=100)
    assert round(count_parameters(teacher) / 1e6, 2) == 7.43
    assert round(count_parameters(student) / 1e6, 2) == 1.23
    assert student(torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)).shape == (2, 100)
    with pytest.raises(SpecError, match=r"kwargs.depth = 10: must be 6n \+ 2"):
        build_model("cifar_resnet", input_shape=(3, 32, 32), num_classes=10, kwargs={"depth": 10})


def test_a_study_with_an_unknown_torchvision_name_stops_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = kdtune("run", "search_spaces/quickstart.yaml", "--set", "student.arch=torchvision:resnet19", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "student.arch = 'torchvision:resnet19'" in lines[0], result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_distill_with_a_torchvision_resnet18_student_on_digits() -> None:
    """End to end on the CPU at tiny sizes: a torchvision ResNet-18 with the small stem, distilled from the
    reference teacher on 8x8 digits, trains and reports all three models."""
    result = kdtune("distill", "--dataset", "digits", "--train-size", "300", "--student", "torchvision:resnet18",
                    "--student-kwargs", "{small_input: true}", "--epochs", "2", "--teacher-epochs", "2",
                    "--batch-size", "32", "--alpha", "0.5", "--temperature", "4", "--format", "json")
    assert result.returncode == 0, result.stderr
    teacher, distilled, alone = json.loads(result.stdout)["models"]
    assert distilled["alpha"] == 0.5 and alone["alpha"] == 1.0
    for row in (distilled, alone):
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_accuracy"] > 0.1  # better than chance on 10 classes
