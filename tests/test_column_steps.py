"""Steps per column (allocation "sensitivity_columns"): the quantizer's arithmetic, the file's column
scales (format version 4), and what a reader does with crafted ones. Real x264 on real tensors."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vcwc
from vcwc import FormatError
from vcwc.format import container
from vcwc.quant.quantize import QuantConfig, dequantize, quantize
from vcwc.quant.sensitivity import COLUMN_GRID, MIN_COLUMN_ROWS, column_factors


def test_column_factors_follow_the_sensitivities_on_eighth_octaves():
    sums = torch.tensor([1.0, 16.0, 1 / 16, 1.0, 1e9])
    factors = column_factors(sums, strength=0.25, limit=2.0)
    octaves = torch.log2(factors)
    assert torch.allclose(octaves * COLUMN_GRID, torch.round(octaves * COLUMN_GRID))  # on the grid
    assert factors[1] < factors[0] < factors[2]  # more sensitive, finer
    assert float(octaves.max() - octaves.min()) <= 4.0 + 1e-6  # within 4x of the centre either way
    assert abs(float(octaves.mean())) <= 0.5 / COLUMN_GRID  # geometric mean 1, up to the grid


@pytest.mark.parametrize("rounding", ["nearest", "dependent", "gptq"])
def test_a_tensor_is_quantized_in_units_of_its_columns_steps(rounding):
    generator = np.random.default_rng(0)
    weights = generator.standard_normal((32, 24)).astype(np.float32)
    columns = (2.0 ** generator.integers(-8, 9, 24) / 8).astype(np.float32)
    config = QuantConfig(bits=10, step=0.05, rounding=rounding)
    moments = torch.eye(24, dtype=torch.float64)[None] if rounding == "gptq" else None
    q = quantize(weights, config, input_moments=moments, columns=columns)
    assert np.array_equal(q.columns, columns)
    restored = dequantize(q.symbols, q.scales, q.config.dependent, q.columns)
    steps = np.broadcast_to(q.scales.reshape(-1, 1), weights.shape) * columns[None, :]
    error = np.abs(restored - weights) / steps  # in each weight's own step
    if rounding != "dependent":  # (the trellis trades one weight's error for its row's)
        # identity moments leave gptq nothing to compensate: both are within half of each weight's step
        assert error.max() <= 0.5 + 1e-5
    plain = quantize(weights / columns[None, :], config, input_moments=moments)
    assert np.array_equal(q.symbols, plain.symbols)  # the same levels as the tensor divided by its columns


class Wide(nn.Module):
    """Two linear layers wide enough for column steps, one input feature 30x louder (an outlier feature)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(64, MIN_COLUMN_ROWS)
        self.second = nn.Linear(MIN_COLUMN_ROWS, MIN_COLUMN_ROWS)

    def forward(self, x):
        x = x.clone()
        x[..., 5] = 30 * x[..., 5]
        return self.second(torch.relu(self.first(x)))


@pytest.fixture(scope="module")
def wide_model():
    torch.manual_seed(0)
    return Wide()


def _compressed(model, allocation: str):
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=-22, allocation=allocation)
    return vcwc.compress(model.state_dict(), recipe, arch=Wide(), input_shape=(64,))


def test_column_steps_round_trip_through_the_file(wide_model, tmp_path):
    compressed = _compressed(wide_model, "sensitivity_columns")
    assert struct.unpack("<H", compressed.data[4:6])[0] == 4  # the oldest version that reads column scales
    tensors = {t["name"]: t for t in compressed.metadata["tensors"]}
    for name in ("first.weight", "second.weight"):
        assert tensors[name]["quantizer"]["column_scales"]["count"] == wide_model.state_dict()[name].shape[1]
    columns = compressed.meta.methods["step_allocation"]["column_steps"]
    assert set(columns) == {"first.weight", "second.weight"}
    decoded = vcwc.decompress(compressed.data)
    original = wide_model.state_dict()
    for name in ("first.weight", "second.weight"):
        signal = float((original[name] ** 2).sum())
        noise = float(((decoded[name] - original[name]) ** 2).sum())
        # the decoder's weights are the ones whose SNR the encoder recorded
        assert 10 * np.log10(signal / noise) == pytest.approx(tensors[name]["snr_db"], abs=1e-3)
    path = tmp_path / "wide.vcwc"
    compressed.save(path)
    reopened = vcwc.CompressedModel.open(path)
    assert torch.equal(reopened.decompress()["first.weight"], decoded["first.weight"])


def test_the_louder_input_feature_gets_the_finer_step(wide_model):
    compressed = _compressed(wide_model, "sensitivity_columns")
    record = compressed.meta.tensor("first.weight")
    blob = compressed.container.blob(
        record.quantizer.columns.blob, compressed.meta.scale_sizes()[record.quantizer.columns.blob]
    )
    start = record.quantizer.columns.offset
    factors = np.frombuffer(blob[start : start + 4 * record.quantizer.columns.count], dtype="<f4")
    assert factors[5] < np.median(factors)


def test_per_tensor_allocation_writes_no_column_scales(wide_model):
    compressed = _compressed(wide_model, "sensitivity")
    assert all("column_scales" not in t.get("quantizer", {}) for t in compressed.metadata["tensors"])
    assert struct.unpack("<H", compressed.data[4:6])[0] < 4


def test_auto_allocation_with_the_architecture_is_per_column(wide_model):
    compressed = _compressed(wide_model, "auto")
    assert compressed.recipe["quantizer"]["allocation"] == "sensitivity_columns"
    assert set(compressed.meta.methods["step_allocation"]["column_steps"]) == {"first.weight", "second.weight"}
    assert compressed.data == _compressed(wide_model, "sensitivity_columns").data


def _crafted(data: bytes, change) -> bytes:
    metadata = copy.deepcopy(container.Container(data).metadata)
    tensor = next(t for t in metadata["tensors"] if "column_scales" in t.get("quantizer", {}))
    change(tensor)
    return container.with_metadata(data, metadata)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t["quantizer"]["column_scales"].update(count=t["quantizer"]["column_scales"]["count"] + 1),
        lambda t: t["quantizer"]["column_scales"].update(offset=1 << 40),
        lambda t: t["quantizer"]["column_scales"].update(blob=99),
        lambda t: t["quantizer"]["column_scales"].update(dtype="float16"),
        lambda t: t["quantizer"].update(column_scales=[1, 2]),
    ],
)
def test_the_reader_refuses_bad_column_scales(wide_model, change):
    data = _compressed(wide_model, "sensitivity_columns").data
    with pytest.raises(FormatError, match="column_scales|quantizer"):  # the field, or the blob it overruns
        vcwc.decompress(_crafted(data, change))


def test_the_command_line_asks_for_column_steps(wide_model, tmp_path, monkeypatch, capsys):
    """As users type it: a model file, --arch MODULE:CALLABLE, --allocation sensitivity_columns."""
    from safetensors.torch import save_file

    from vcwc import cli

    (tmp_path / "widemodels.py").write_text("from test_column_steps import Wide\n\ndef wide():\n    return Wide()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    model = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide_model.state_dict().items()}, model)
    out = tmp_path / "wide.vcwc"
    command = ["compress", str(model), "-o", str(out), "--recipe", "smallest", "--step-qp=-22"]
    command += ["--arch", "widemodels:wide", "--input-shape", "64", "--allocation", "sensitivity_columns", "--json"]
    assert cli.main(command) == 0
    captured = capsys.readouterr()
    assert "per column on 2" in captured.err
    assert json.loads(captured.out)["recipe"]["quantizer"]["allocation"] == "sensitivity_columns"
    assert struct.unpack("<H", out.read_bytes()[4:6])[0] == 4
    assert cli.main(["decompress", str(out), "-o", str(tmp_path / "back.safetensors")]) == 0
