"""Step allocation by sensitivity: the gradient measure, the offsets' arithmetic, and the recipe around them."""

import math

import pytest
import torch
from torch import nn

import vcwc
from vcwc.quant.inputs import GaussianNoise
from vcwc.quant.sensitivity import output_tensor, sensitivities, step_offsets


def test_offsets_follow_the_square_root_law_around_the_weighted_geometric_mean():
    offsets = step_offsets({"a": 4.0, "b": 1.0 / 4.0}, {"a": 100, "b": 100})
    assert offsets == pytest.approx({"a": -4.0, "b": 4.0})  # 16x the sensitivity: a quarter of the step
    skewed = step_offsets({"a": 4.0, "b": 1.0}, {"a": 300, "b": 100})
    assert 300 * skewed["a"] + 100 * skewed["b"] == pytest.approx(0.0)  # the base step stays the centre
    assert step_offsets({"a": 1e12, "b": 1.0}, {"a": 1, "b": 1}, limit=8) == {"a": -8.0, "b": 8.0}


def test_a_layer_scaled_up_downstream_is_more_sensitive():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    with torch.no_grad():
        model[2].weight.mul_(10.0)  # the first layer's errors reach the output ten times larger
    measured = sensitivities(model, ["0.weight", "2.weight"], GaussianNoise((16,)))
    assert set(measured) == {"0.weight", "2.weight"}
    assert measured["0.weight"] > 10 * measured["2.weight"]
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # left as found


def test_output_tensor_finds_the_tensor():
    class Output:
        logits = torch.ones(2)

    assert torch.equal(output_tensor((torch.zeros(1), 5)), torch.zeros(1))
    assert torch.equal(output_tensor(Output()), torch.ones(2))
    with pytest.raises(vcwc.InputError, match="no tensor"):
        output_tensor(object())


@pytest.mark.slow
def test_the_smallest_recipe_moves_steps_by_sensitivity_where_the_architecture_is_known(models_dir):
    model = vcwc.load_model(models_dir / "digits_resnet.safetensors")
    recipe = vcwc.RECIPES["smallest"].with_changes(allocation="auto")
    with_arch = vcwc.compress(model, recipe, arch="digits_resnet")
    assert with_arch.recipe["quantizer"]["allocation"] == "sensitivity"
    offsets = with_arch.meta.methods["step_allocation"]["step_qp_offsets"]
    assert len(offsets) == 7 and max(map(abs, offsets.values())) > 0.5
    weights = {t.name: math.prod(t.shape) for t in with_arch.meta.tensors if t.coded}
    assert abs(sum(weights[n] * q for n, q in offsets.items())) < 1e-3 * sum(weights.values())
    without = vcwc.compress(model, recipe)
    assert without.recipe["quantizer"]["allocation"] == "uniform" and "step_allocation" not in (
        without.meta.methods or {}
    )
    with pytest.raises(vcwc.InputError, match="step allocation by sensitivity needs the model.s architecture"):
        vcwc.compress(model, recipe.with_changes(allocation="sensitivity"))
