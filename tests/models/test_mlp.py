"""`normtheory.models.mlp`: the module names in forward order for each placement."""

from model_cases import build


def test_placement_orders_in_mlp():
    def names(placement):
        model = build("mlp", (16,), placement=placement)
        return [n for n, _ in model.named_children()]

    assert names("norm_act")[:4] == ["flatten", "fc1", "norm1", "act1"]
    assert names("act_norm")[:4] == ["flatten", "fc1", "act1", "norm1"]
    assert names("ic")[:5] == ["flatten", "fc1", "act1", "norm1", "drop1"]
