"""GPTQ rounding: patches line up with the weights, it lowers the output error it aims at, files carry it
bit-exactly, and on a real model it beats nearest rounding at the same step."""

import numpy as np
import pytest
import torch
from torch import nn

import vcwc
from vcwc import cli
from vcwc.errors import InputError
from vcwc.quant.gptq import gptq_levels
from vcwc.quant.noise import layer_patches, noise_statistics
from vcwc.quant.quantize import QuantConfig, quantize
from vcwc.recipe import step_from_qp

pytestmark = pytest.mark.slow  # real codecs or models end to end

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video


@pytest.mark.parametrize("groups", [1, 2])
def test_patches_times_the_weight_matrix_is_the_convolution(groups):
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 4, 7, 7)
    patches = layer_patches(layer, x)  # (groups, n, d)
    rows = layer.out_channels // groups
    weights = layer.weight.detach().reshape(layer.out_channels, -1)
    expected = layer(x).permute(0, 2, 3, 1).reshape(-1, layer.out_channels)  # (n, out) in patch order
    for group in range(groups):
        torch.testing.assert_close(
            patches[group] @ weights[group * rows : (group + 1) * rows].T,
            expected[:, group * rows : (group + 1) * rows],
            rtol=1e-4,
            atol=1e-4,
        )


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(32, 32, generator=generator, dtype=torch.float64)
    inputs = torch.randn(4096, 32, generator=generator, dtype=torch.float64) @ mixing  # correlated inputs
    weights = torch.randn(16, 32, generator=generator, dtype=torch.float64) * 0.05
    moments = (inputs.T @ inputs / len(inputs)).float()[None]
    step = 0.02
    scales = np.array([step], dtype=np.float32)
    nearest = quantize(weights, QuantConfig(step=step)).symbols
    chosen = gptq_levels(weights.numpy(), scales, 127, moments)
    assert chosen.dtype == np.int8 and np.abs(chosen.astype(int) - nearest).max() <= 3  # the same grid, nearby

    def output_error(levels):
        error = weights - torch.from_numpy(levels.astype(np.float64)) * float(scales[0])
        return float(((inputs @ error.T) ** 2).mean())

    assert output_error(chosen) < 0.7 * output_error(nearest)


def test_gptq_levels_clip_at_the_largest_level():
    weights = np.array([[10.0, -10.0, 0.001]])
    levels = gptq_levels(weights, np.array([0.1], dtype=np.float32), 7, torch.eye(3)[None])
    assert levels.tolist() == [[7, -7, 0]]


def test_input_moments_name_what_gptq_does_not_handle():
    module = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(24, 5))
    stats = noise_statistics(module, ["0.weight", "2.weight", "1.weight"], (2, 8), moments=True)
    assert set(stats.moments) == {"0.weight", "2.weight"} and stats.moments["2.weight"].shape == (1, 24, 24)
    assert stats.moments["0.weight"].shape == (1, 6, 6)  # Conv1d: 2 channels x 3 taps
    assert "not a parameter" in stats.unserved["1.weight"]


def test_gptq_file_decodes_its_levels_exactly_and_beats_nearest(digits_subject):
    step = step_from_qp(-14)
    nearest = vcwc.compress(
        digits_subject.loaded,
        LOSSLESS.with_changes(codec="x264", step_qp=-14, bias_correction=True),
        arch="digits_resnet",
    )
    chosen = vcwc.compress(
        digits_subject.loaded,
        LOSSLESS.with_changes(codec="x264", step_qp=-14, bias_correction=True, rounding="gptq"),
        arch="digits_resnet",
    )
    records = {t["name"]: t for t in chosen.metadata["tensors"]}
    assert records["fc1.weight"]["quantizer"]["rounding"] == "gptq"
    assert "rounding" not in {t["name"]: t for t in nearest.metadata["tensors"]}["fc1.weight"]["quantizer"]
    decoded, decoded_nearest = vcwc.decompress(chosen.data), vcwc.decompress(nearest.data)
    # Lossless on the levels: the decoder returns exactly the levels gptq chose, on the same grid.
    levels = decoded["fc1.weight"] / step
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    assert not torch.equal(decoded["fc1.weight"], decoded_nearest["fc1.weight"])
    kl_nearest, kl_gptq = digits_subject.score(decoded_nearest).mean_kl, digits_subject.score(decoded).mean_kl
    assert kl_gptq < 0.8 * kl_nearest


def test_gptq_needs_the_architecture(digits_subject, tmp_path, capsys):
    with pytest.raises(InputError, match="gptq rounding needs the model's architecture"):
        vcwc.compress(digits_subject.loaded, LOSSLESS.with_changes(codec="x264", step_qp=-26, rounding="gptq"))
    with pytest.raises(InputError, match="rounding must be"):
        QuantConfig(rounding="stochastic")
    model = tmp_path / "m.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.randn(8, 8)}, str(model))
    output = tmp_path / "m.vcwc"
    assert cli.main(["compress", str(model), "-o", str(output), "--step-qp=-16", "--rounding", "gptq"]) == 1
    assert "--rounding gptq needs --arch" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("size", [64, 1100])  # three factorizations and an inverse, and one factorization
def test_the_moment_factor_is_upper_triangular_and_factors_the_damped_moments(size):
    from vcwc.quant.gptq import DAMPING, _moment_factor

    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(2 * size, size, generator=generator, dtype=torch.float64)
    moments = samples.T @ samples / len(samples)
    factor = torch.from_numpy(_moment_factor(moments.float()))
    assert torch.equal(factor, factor.triu())
    damped = moments + DAMPING * torch.diagonal(moments).mean() * torch.eye(size, dtype=torch.float64)
    torch.testing.assert_close(factor @ factor.T, damped, atol=2e-3, rtol=1e-4)
