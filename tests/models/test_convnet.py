"""`normtheory.models.convnet`: every second conv layer halves the resolution while it is above
2 (the stride pattern of 1-D and 2-D inputs)."""

import pytest
from model_cases import build


@pytest.mark.parametrize(
    ("in_shape", "depth", "strides"),
    [((1, 8, 8), 6, [1, 2, 1, 2, 1, 1]), ((1, 40), 4, [1, 2, 1, 2]), ((1, 3, 3), 2, [1, 1])],
)
def test_convnet_strides(in_shape, depth, strides):
    model = build("convnet", in_shape, "batch", depth=depth)
    assert [model.get_submodule(f"conv{i}").stride[0] for i in range(1, depth + 1)] == strides
