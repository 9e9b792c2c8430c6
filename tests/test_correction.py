"""Data-free bias correction: the shift formula, where shifts go, and that it helps a real model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vcwc
from vcwc.errors import InputError
from vcwc.quant.correction import BiasCorrection, Target, output_shift
from vcwc.quant.noise import noise_statistics

pytestmark = pytest.mark.slow  # real codecs or models end to end

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video


@pytest.mark.parametrize("groups", [1, 2])
def test_output_shift_is_the_convolution_of_the_error_with_the_mean_input(groups):
    torch.manual_seed(0)
    error = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64) * 0.01
    means = torch.randn(4, dtype=torch.float64)
    constant = means.reshape(1, 4, 1, 1).expand(1, 4, 5, 5)  # an input equal to its mean everywhere
    centre = F.conv2d(constant, error, groups=groups)[0, :, 1, 1]  # a pixel that sees no padding
    torch.testing.assert_close(output_shift(error, means, groups), centre)


@pytest.mark.parametrize("groups", [1, 2])
def test_a_transposed_convolutions_shift_is_its_mean_output_change_over_a_stride_period(groups):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=groups, bias=False)
    error = torch.randn_like(layer.weight, dtype=torch.float64) * 0.01
    means = torch.randn(4, dtype=torch.float64)
    constant = means.reshape(1, 4, 1, 1).expand(1, 4, 6, 6)
    change = F.conv_transpose2d(constant, error, stride=2, padding=1, groups=groups)[0]
    interior = change[:, 4:8, 4:8]  # away from the borders, two periods of the stride each way
    correction = BiasCorrection({"w": means}, {"w": Target("b", -1)}, {"w": groups}, {}, transposed_strides={"w": 4})
    torch.testing.assert_close(correction.shift("w", torch.zeros_like(error), error), interior.mean(dim=(1, 2)))


def test_linear_shift_and_a_wrong_input_count_is_refused():
    error = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    means = torch.tensor([3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(output_shift(error, means), error @ means)
    with pytest.raises(InputError, match="3 input means"):
        output_shift(error, torch.ones(3, dtype=torch.float64))


class ConvBnLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 4, 1, bias=False)  # neither a BatchNorm after it nor a bias
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.head(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_shifts_go_to_the_following_batchnorm_or_the_layers_bias():
    torch.manual_seed(0)
    module = ConvBnLinear().eval()
    module.bn.bias.data.fill_(0.5)
    correction = estimate(module, ["conv.weight", "head.weight", "fc.weight"], (3, 8, 8))
    assert correction.targets["conv.weight"].tensor == "bn.running_mean"
    assert correction.targets["fc.weight"].tensor == "fc.bias"
    assert list(correction.uncorrectable) == ["head.weight"]
    # After the BatchNorm (beta 0.5, gamma 1) and a ReLU, the head's inputs have the mean of relu(N(0.5, 1)).
    expected = 0.5 * 0.6915 + 0.3521
    torch.testing.assert_close(correction.input_means["head.weight"], torch.full((4,), expected), atol=0.03, rtol=0)
    original = module.state_dict()
    reconstructed = {name: original[name] + 0.01 for name in ("conv.weight", "head.weight", "fc.weight")}
    updated = correction.corrected(original, reconstructed)
    assert set(updated) == {"bn.running_mean", "fc.bias"}
    torch.testing.assert_close(
        updated["fc.bias"], original["fc.bias"] - 0.01 * correction.input_means["fc.weight"].sum()
    )


def estimate(module, coded, input_shape):
    stats = noise_statistics(module, coded, input_shape, means=True)
    return BiasCorrection.from_statistics(stats, set(module.state_dict()), set(coded))


def test_a_weight_outside_any_layer_is_left_uncorrected_and_named():
    correction = estimate(ConvBnLinear(), ["bn.weight", "conv.weight"], (3, 8, 8))
    assert "BatchNorm2d" in correction.uncorrectable["bn.weight"] and "conv.weight" in correction.targets


def test_bias_correction_brings_a_coarse_step_closer_to_the_original(digits_subject):
    plain = vcwc.compress(digits_subject.loaded, LOSSLESS.with_changes(codec="x264", step_qp=-16))
    corrected = vcwc.compress(
        digits_subject.loaded,
        LOSSLESS.with_changes(codec="x264", step_qp=-16, bias_correction=True),
        arch="digits_resnet",
    )
    assert corrected.size_report().coded_bytes == plain.size_report().coded_bytes  # same coded symbols
    info = corrected.metadata["bias_correction"]
    assert "fc1.bias" in info["corrected"] and "layer1.0.bn2.running_mean" in info["corrected"]
    decoded = vcwc.decompress(corrected.data)
    plain_decoded = vcwc.decompress(plain.data)
    assert torch.equal(decoded["fc1.weight"], plain_decoded["fc1.weight"])
    assert not torch.equal(decoded["fc1.bias"], digits_subject.state_dict["fc1.bias"])
    kl_plain, kl_corrected = digits_subject.score(plain_decoded).mean_kl, digits_subject.score(decoded).mean_kl
    assert kl_corrected < 0.6 * kl_plain  # measured: 0.020 against 0.049


def test_bias_correction_needs_the_architecture(digits_subject):
    with pytest.raises(InputError, match="architecture"):
        vcwc.compress(digits_subject.loaded, LOSSLESS.with_changes(codec="x264", step_qp=-26, bias_correction=True))
