"""Dependent quantization: the decoder's closed form against the state machine, the trellis against a scalar
grid, and files that use it, through the real codec."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import vcwc
from vcwc.errors import FormatError, InputError
from vcwc.format import container
from vcwc.metrics import entropy_bits, snr_db
from vcwc.quant import dependent
from vcwc.quant.dependent import TRANSITIONS, reconstruction_levels, trellis_symbols
from vcwc.quant.quantize import QuantConfig, dequantize, quantize


def _levels_by_state_machine(symbols: np.ndarray) -> np.ndarray:
    levels = np.empty(symbols.shape)
    for r, row in enumerate(symbols.astype(np.int64)):
        state = 0
        for n, k in enumerate(row):
            levels[r, n] = 2 * k - np.sign(k) if state >= 2 else 2 * k
            state = TRANSITIONS[state][k & 1]
    return levels


@pytest.mark.parametrize(("shape", "dtype"), [((7, 1), np.int8), ((5, 12), np.int8), ((3, 601), np.int16)])
def test_the_decoders_closed_form_follows_the_state_machine(shape, dtype):
    rng = np.random.default_rng(1)
    symbols = rng.integers(-120, 121, size=shape).astype(dtype)
    assert np.array_equal(reconstruction_levels(symbols), _levels_by_state_machine(symbols))


def _library_candidates(value: float, odd_quantizer: bool) -> list[int]:
    return [int(k[0]) for k in dependent._candidates(np.array([value]), odd_quantizer)]


def _every_nearby_symbol(value: float, odd_quantizer: bool) -> range:
    return range(int(np.floor(value / 2)) - 3, int(np.ceil(value / 2)) + 4)


def _least_error_by_viterbi(x: np.ndarray, candidates=_library_candidates) -> float:
    """The least squared error over the state machine's paths, per row, summed: a plain Viterbi one position
    at a time over `candidates(value, odd_quantizer)`: by default the library's two per quantizer (the one
    below x and the one above), or every symbol within a few levels of x."""
    total = 0.0
    for row in x:
        cost = [0.0, np.inf, np.inf, np.inf]
        for value in row:
            after = [np.inf] * 4
            for state in range(4):
                odd_quantizer = state >= 2
                for k in candidates(value, odd_quantizer):
                    level = 2 * k - np.sign(k) if odd_quantizer else 2 * k
                    following = TRANSITIONS[state][k & 1]
                    after[following] = min(after[following], cost[state] + (value - level) ** 2)
            cost = after
        total += min(cost)
    return total


def test_the_search_finds_the_least_error_across_blocks_and_column_chunks(monkeypatch):
    # Blocks of 2 rows and chunks of 64 columns: 150 columns end in a partial chunk, 5 rows in a partial block.
    monkeypatch.setattr(dependent, "BLOCK_ELEMENTS", 300)
    monkeypatch.setattr(dependent, "MIN_ROWS", 1)
    x = np.random.default_rng(3).laplace(scale=4.0, size=(5, 150))
    symbols = trellis_symbols(x, np.ones(5), max_level=127)
    error = float(((x - reconstruction_levels(symbols, np.float64)) ** 2).sum())
    assert error == pytest.approx(_least_error_by_viterbi(x), rel=1e-12)


def test_the_trellis_beats_a_scalar_grid_at_equal_entropy():
    """About 0.7 dB more SNR than a scalar grid would have at the same order-0 entropy (6.02 dB a bit)."""
    weights = np.random.default_rng(0).laplace(size=(128, 512)).astype(np.float32)
    for step in (0.125, 0.25, 0.5):
        scalar = quantize(weights, QuantConfig(step=2 * step))
        trellis = quantize(weights, QuantConfig(step=step, rounding="dependent"))
        extra_bits = (entropy_bits(trellis.symbols) - entropy_bits(scalar.symbols)) / weights.size
        gain = snr_db(weights, dequantize(trellis.symbols, trellis.scales, dependent=True)) - snr_db(
            weights, dequantize(scalar.symbols, scalar.scales)
        )
        assert gain - 6.02 * extra_bits > 0.4, step


def test_outlier_rows_take_a_coarser_scale_within_the_symbols_range():
    weights = np.random.default_rng(2).normal(size=(16, 64)).astype(np.float32)
    weights[3, 7] = 400.0
    q = quantize(weights, QuantConfig(step=0.5, rounding="dependent"))
    assert len(q.scales) == 16 and q.scales[3] > 0.5 and np.all(np.delete(q.scales, 3) == 0.5)
    assert np.abs(q.symbols).max() <= 127
    restored = dequantize(q.symbols, q.scales, dependent=True)
    assert np.abs(restored - weights).max(axis=1)[3] <= 2 * q.scales[3]


def _model() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "fc1.weight": torch.randn(192, 320, generator=g) * 0.05,
        "fc1.bias": torch.randn(192, generator=g),
        "conv.weight": torch.randn(32, 16, 3, 3, generator=g) * 0.1,
    }


@pytest.fixture(scope="module")
def dependent_file():
    return vcwc.compress(_model(), vcwc.RECIPES["smallest"].with_changes(step_qp=-26))


def test_smallest_without_the_architecture_quantizes_dependently(dependent_file):
    tensors = {t["name"]: t for t in dependent_file.metadata["tensors"]}
    assert {tensors[n]["quantizer"]["kind"] for n in ("fc1.weight", "conv.weight")} == {"dependent"}
    assert dependent_file.metadata["recipe"]["rounding"] == "dependent"
    assert dependent_file.metadata["methods"]["dependent_quantization"]["tensors"] == ["fc1.weight", "conv.weight"]
    assert container.Container(dependent_file.data).version == 3
    model, restored = _model(), vcwc.decompress(dependent_file.data)
    for name in ("fc1.weight", "conv.weight"):
        original = model[name].numpy()
        snr = snr_db(original, restored[name].numpy())
        assert abs(snr - tensors[name]["snr_db"]) < 1e-3, name
    assert torch.equal(restored["fc1.bias"], model["fc1.bias"])


def test_dependent_beats_nearest_in_size_at_the_same_error():
    """The same weight SNR for fewer bits than nearest rounding, through x264."""
    model = _model()

    def point(recipe):
        compressed = vcwc.compress(model, recipe)
        restored = vcwc.decompress(compressed.data)["fc1.weight"].numpy()
        return compressed.size_report().bits_per_weight, snr_db(model["fc1.weight"].numpy(), restored)

    smallest = vcwc.RECIPES["smallest"]
    bits, snr = point(smallest.with_changes(step_qp=-26))
    nearest = [point(smallest.with_changes(step_qp=qp, rounding="nearest")) for qp in (-26, -27, -28, -29, -30)]
    matching = next(b for b, s in sorted(nearest) if s >= snr)  # the smallest nearest-rounded file as good
    assert bits < 0.98 * matching


def test_a_lossy_codec_cannot_carry_dependent_symbols():
    with pytest.raises(InputError, match="rounding 'dependent' needs the codec lossless"):
        vcwc.RECIPES["smallest"].with_changes(rounding="dependent", qp=20)


def test_the_reader_names_an_unknown_quantizer_kind(dependent_file):
    metadata = copy.deepcopy(container.Container(dependent_file.data).metadata)
    next(t for t in metadata["tensors"] if "quantizer" in t)["quantizer"]["kind"] = "trellis8"
    with pytest.raises(FormatError, match="quantizer.kind"):
        vcwc.decompress(container.with_metadata(dependent_file.data, metadata))


def test_extract_tells_a_device_the_symbols_are_dependent(dependent_file, tmp_path):
    from vcwc.codecs.streams import extract

    description = json.loads(extract(dependent_file.container, tmp_path / "out").read_text())
    kinds = {t["name"]: t.get("quantizer") for t in description["tensors"] if t["storage"] in ("video", "raw")}
    assert kinds == {"fc1.weight": "dependent", "conv.weight": "dependent"}
    assert "2k - sign(k)" in description["weights_note"]


@pytest.mark.xfail(
    strict=True,
    reason="known: between levels 1 and 3 the odd quantizer's nearest even symbol is 0 (level 0) up to 1.5 "
    "steps, and dependent._candidates offers 2 (level 3); fixing it changes every dependently quantized file, "
    "so it waits for a regeneration of the results (docs/development.md)",
)
def test_the_search_finds_the_least_error_over_every_level():
    x = np.random.default_rng(3).laplace(scale=4.0, size=(5, 150))
    symbols = trellis_symbols(x, np.ones(5), max_level=127)
    error = float(((x - reconstruction_levels(symbols, np.float64)) ** 2).sum())
    assert error == pytest.approx(_least_error_by_viterbi(x, _every_nearby_symbol), rel=1e-12)
