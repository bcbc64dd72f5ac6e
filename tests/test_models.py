"""Architectures by name."""

from __future__ import annotations

import pytest
import torch

from kdtune.errors import SpecError
from kdtune.tasks.image.models import build_model
from kdtune.tasks.image.models import count_parameters


@pytest.mark.parametrize("arch", ["reference_teacher", "reference_student", "cnn_teacher", "hinton_teacher", "hinton_student",
                                  "mlp", "linear"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_output_shapes(arch: str, shape: tuple[int, ...]) -> None:
    model = build_model(arch, input_shape=shape, num_classes=10)
    assert model(torch.rand(3, *shape)).shape == (3, 10)


def test_reference_parameter_counts_match_the_keras_models() -> None:
    # Keras: teacher 1,433,610 and student 20,490 parameters on 28x28 inputs.
    assert count_parameters(build_model("reference_teacher", input_shape=(1, 28, 28), num_classes=10)) == 1_433_610
    assert count_parameters(build_model("reference_student", input_shape=(1, 28, 28), num_classes=10)) == 20_490


def test_same_pad_maxpool_pads_right_and_bottom_with_minus_infinity() -> None:
    from kdtune.tasks.image.models import SamePadMaxPool

    x = -torch.arange(9.0).reshape(1, 1, 3, 3) - 1  # all negative: zero padding would show up as 0
    out = SamePadMaxPool()(x)
    assert out.shape == x.shape
    assert out[0, 0, 2, 2] == x[0, 0, 2, 2]  # the bottom-right window sees only the real pixel
    assert out[0, 0, 0, 0] == max(x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1])


def test_seed_fixes_initial_weights_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("reference_student", input_shape=(1, 8, 8), num_classes=10, seed=7)
    after = torch.rand(1)
    b = build_model("reference_student", input_shape=(1, 8, 8), num_classes=10, seed=7)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_mlp_widths_from_kwargs() -> None:
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, kwargs={"widths": [32, 16]})
    assert count_parameters(model) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(SpecError, match="student.arch = 'resnet': must be one of reference_teacher, reference_student"):
        build_model("resnet", input_shape=(1, 8, 8), num_classes=10, field="student.arch")


def test_bad_kwargs_name_the_field() -> None:
    with pytest.raises(SpecError, match="teacher.arch kwargs"):
        build_model("mlp", input_shape=(1, 8, 8), num_classes=10, kwargs={"depth": 3}, field="teacher.arch")


def test_cnn_refuses_flat_inputs() -> None:
    with pytest.raises(SpecError, match=r"needs image inputs \(C, H, W\)"):
        build_model("reference_student", input_shape=(20,), num_classes=1)
