"""Step allocation by sensitivity: the gradient measure, the offsets' arithmetic, and the recipe around them."""

import math

import pytest
import torch
from torch import nn

import vcwc
from vcwc.quant.inputs import CalibrationInputs, GaussianNoise
from vcwc.quant.noise import noise_statistics
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


def test_each_batch_counts_alike_however_large_its_gradients():
    """Random inputs now and then drive a model where its gradients are orders of magnitude larger: summed
    as they are, that batch would set every tensor's share. Here the second batch is the same draw scaled
    1000x (every squared gradient of this bias-free linear net grows 10^12x): the shares stay the same."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 4, bias=False))
    first, second = torch.randn(6, 8), torch.randn(6, 8)
    names = ["0.weight", "1.weight"]
    plain = sensitivities(model, names, CalibrationInputs({"": torch.cat([first, second]).numpy()}, "x", 6))
    loud = sensitivities(model, names, CalibrationInputs({"": torch.cat([first, 1000 * second]).numpy()}, "x", 6))
    assert loud["0.weight"] / loud["1.weight"] == pytest.approx(plain["0.weight"] / plain["1.weight"], rel=1e-6)


def test_column_sums_split_each_tensors_sensitivity_by_input_feature():
    """An input feature scaled up 100x makes its column's gradients 100x larger (the gradient of a linear
    layer's weight is the output gradient times the input); the columns add up to the tensor's value."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Conv1d(8, 4, 3, bias=False))
    inputs = torch.randn(12, 8)
    inputs[:, 3] *= 100.0
    columns: dict[str, torch.Tensor] = {}
    measured = sensitivities(
        nn.Sequential(model[0], model[1], nn.Unflatten(1, (8, 1)), nn.ConstantPad1d(1, 0.0), model[2]),
        ["0.weight", "4.weight"],
        CalibrationInputs({"": inputs.numpy()}, "x", 6),
        columns=columns,
    )
    assert columns["0.weight"].shape == (8,) and columns["4.weight"].shape == (24,)  # 8 channels x 3 taps
    for name, shape in (("0.weight", (8, 8)), ("4.weight", (4, 24))):
        assert float(columns[name].sum()) / math.prod(shape) == pytest.approx(measured[name], rel=1e-9)
    others = torch.cat([columns["0.weight"][:3], columns["0.weight"][4:]])
    assert columns["0.weight"][3] > 1000 * others.max()


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
    assert with_arch.recipe["quantizer"]["allocation"] == "sensitivity_columns"
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


class MaskedTokens(nn.Module):
    """Token ids and a Hugging Face style attention_mask in; per-token outputs."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 3)

    def forward(self, input_ids, attention_mask):
        return self.proj(self.embed(input_ids))


def test_padding_counts_in_no_statistic():
    torch.manual_seed(0)
    model = MaskedTokens().eval()
    real = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    padded = torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 0, 0]])  # token 0 only ever pads
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]] * 2)
    unpadded = CalibrationInputs({"input_ids": real.numpy(), "attention_mask": torch.ones_like(real).numpy()}, "a")
    with_padding = CalibrationInputs({"input_ids": padded.numpy(), "attention_mask": mask.numpy()}, "b")
    expected = noise_statistics(model, ["proj.weight"], unpadded, means=True, moments=True)
    got = noise_statistics(model, ["proj.weight"], with_padding, means=True, moments=True)
    torch.testing.assert_close(got.means["proj.weight"], expected.means["proj.weight"])
    torch.testing.assert_close(got.moments["proj.weight"], expected.moments["proj.weight"])
    # the padding's outputs get no gradient: its embedding row is untouched by the sensitivity pass
    padding_gradients = []
    model.embed.weight.register_post_accumulate_grad_hook(
        lambda p: padding_gradients.append(float(p.grad[0].abs().sum()))
    )
    sensitivities(model, ["proj.weight", "embed.weight"], with_padding)
    assert padding_gradients and not any(padding_gradients)
