"""Low bits stored raw beside the video (vcwc.format.low_bits): packing, the encoder's choice, the files it
makes (bit-exact, smaller, format version 2) and the reader's checks of the field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcwc
from vcwc import FormatError
from vcwc.format import container, low_bits


@given(
    bits=st.integers(1, low_bits.MAX_LOW_BITS),
    wide=st.booleans(),
    values=st.lists(st.integers(-511, 511), min_size=1, max_size=300),
)
@settings(max_examples=200, deadline=None)
def test_split_and_join_give_the_symbols_back(bits, wide, values):
    dtype = np.int16 if wide else np.int8
    symbols = np.clip(np.array(values), -127, 127).astype(dtype) if not wide else np.array(values, dtype=dtype)
    work = symbols.copy()
    high, packed = low_bits.split(work, bits)
    assert np.shares_memory(high, work)  # contiguous symbols are split in place
    assert len(packed) == low_bits.packed_length(symbols.size, bits)
    np.testing.assert_array_equal(high, symbols >> bits)
    joined = low_bits.join(high, packed, bits, dtype)
    assert joined.dtype == dtype
    np.testing.assert_array_equal(joined, symbols)
    transposed = np.stack([symbols, symbols]).T  # not contiguous (above one element): split into a copy
    expected = transposed.copy()
    high, packed = low_bits.split(transposed, bits)
    if symbols.size > 1:
        assert not np.shares_memory(high, transposed)
        np.testing.assert_array_equal(transposed, expected)  # left as they were
    np.testing.assert_array_equal(low_bits.join(high, packed, bits, np.int32), expected)  # another dtype: a copy


def test_packing_is_most_significant_bit_first():
    _, packed = low_bits.split(np.array([5, 3, -1], dtype=np.int16), 3)
    # 101 011 111, padded with zeros: 1010 1111 1000 0000
    assert packed == bytes([0b10101111, 0b10000000])


@pytest.mark.parametrize(("rms", "bits"), [(0.5, 0), (3.9, 0), (4.1, 1), (8.3, 2), (16.5, 3), (300, 7)])
def test_the_high_part_keeps_two_to_four_levels_of_rms(rms, bits):
    rng = np.random.default_rng(0)
    gaussian = np.round(rng.standard_normal(100_000) * rms).astype(np.int16)
    assert low_bits.low_bits_for(gaussian) == bits


def _wide_model() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "fc1.weight": torch.randn(256, 320, generator=g) * 0.02,
        "fc1.bias": torch.randn(256, generator=g) * 0.02,
        "fc2.weight": torch.randn(96, 256, generator=g) * 0.001,  # narrow symbols: no low bits apart
        "conv.weight": torch.randn(32, 16, 3, 3, generator=g) * 0.01,
    }


def _payloads(compressed) -> dict[str, dict]:
    return {t["name"]: t["payload"] for t in compressed.metadata["tensors"] if "payload" in t}


def test_smallest_keeps_low_bits_apart_bit_exactly_and_smaller():
    model = _wide_model()
    # a step of 0.0014: symbol RMS about 14 (nearest rounding: dependent quantization halves them)
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=-38, rounding="nearest")
    apart = vcwc.compress(model, recipe)
    together = vcwc.compress(model, recipe.with_changes(low_bits="off"))
    payloads = _payloads(apart)
    assert payloads["fc1.weight"]["low_bits"]["bits"] == 2
    assert "low_bits" not in payloads["fc2.weight"]
    assert all("low_bits" not in p for p in _payloads(together).values())
    assert container.Container(apart.data).version == 2
    assert container.Container(together.data).version == 1
    # The same symbols either way, so the same weights; the symbols' checksum is checked on decode.
    for name, tensor in vcwc.decompress(apart.data).items():
        assert torch.equal(tensor, vcwc.decompress(together.data)[name]), name
    assert apart.size_report().bits_per_weight < together.size_report().bits_per_weight


def test_lossy_codec_settings_never_split():
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=-38, qp=10)
    assert all("low_bits" not in p for p in _payloads(vcwc.compress(_wide_model(), recipe)).values())


@pytest.fixture(scope="module")
def apart_file():
    return vcwc.compress(_wide_model(), vcwc.RECIPES["smallest"].with_changes(step_qp=-38, rounding="nearest")).data


def _crafted(data: bytes, change) -> bytes:
    metadata = copy.deepcopy(container.Container(data).metadata)
    tensor = next(t for t in metadata["tensors"] if "low_bits" in t.get("payload", {}))
    change(tensor, metadata)
    return container.with_metadata(data, metadata)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, m: t["payload"]["low_bits"].update(bits=0), "low_bits.bits"),
        (lambda t, m: t["payload"]["low_bits"].update(bits=t["quantizer"]["bits"]), "low_bits.bits"),
        (lambda t, m: t["payload"]["low_bits"].update(offset=5), "low_bits.offset"),
        (lambda t, m: t["payload"]["low_bits"].update(blob=0), "low_bits.blob"),
        (lambda t, m: t["payload"].update(type="raw", blob=t["payload"]["low_bits"]["blob"], offset=0), "low_bits"),
        (lambda t, m: t["payload"].update(low_bits=[1, 2]), "low_bits"),
    ],
)
def test_the_reader_refuses_bad_low_bits(apart_file, change, message):
    with pytest.raises(FormatError, match=message):
        vcwc.decompress(_crafted(apart_file, change))


def test_low_bits_of_another_tensor_fail_the_symbols_checksum(apart_file):
    def swap(tensor, metadata):
        other = next(t for t in metadata["tensors"] if t is not tensor and "low_bits" in t.get("payload", {}))
        tensor["payload"]["low_bits"], other["payload"]["low_bits"] = (
            other["payload"]["low_bits"],
            tensor["payload"]["low_bits"],
        )

    with pytest.raises(vcwc.VcwcError):
        vcwc.decompress(_crafted(apart_file, swap))
