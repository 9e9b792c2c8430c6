"""The .vcwc format, pinned byte for byte, and how damaged files are caught."""

from pathlib import Path

import pytest
import torch

import vcwc
from vcwc import FormatError
from vcwc.format import container
from vcwc.format.container import Blob

GOLDEN = Path(__file__).parent / "golden"

# Format version 1, metadata stored uncompressed: header, JSON, then the blobs back to back.
GOLDEN_CONTAINER = bytes.fromhex(
    "5643574301000000c6000000e7cc24d97b22626c6f6273223a5b7b22636f6d7072657373696f6e223a226e6f6e65222c2263"
    "7263333222"
    "3a3932303532373436352c226b696e64223a22766964656f222c226c656e677468223a322c226f6666736574223a307d2c7b"
    "22636f6d7072657373696f6e223a226e6f6e65222c226372633332223a3839313536383537382c226b696e64223a22756e63"
    "6f646564222c226c656e677468223a332c226f6666736574223a327d5d2c22666f726d6174223a2276637763222c2274656e"
    "736f7273223a5b5d7d0001616263"
)


def test_container_bytes_are_pinned():
    data = container.write(
        {"format": "vcwc", "tensors": []},
        [Blob("video", b"\x00\x01"), Blob("uncoded", b"abc")],
        compress_metadata=False,
    )
    assert data == GOLDEN_CONTAINER
    parsed = container.Container(data)
    assert parsed.blob(0) == b"\x00\x01" and parsed.blob(1) == b"abc"


def golden_state_dict():
    """A small model whose values do not depend on any random generator."""
    return {
        "conv.weight": torch.linspace(-1, 1, 8 * 3 * 3 * 3).reshape(8, 3, 3, 3),
        "conv.bias": torch.linspace(-0.5, 0.5, 8),
        "fc.weight": torch.cos(torch.arange(10 * 32, dtype=torch.float32)).reshape(10, 32) * 0.1,
        "steps": torch.tensor(7),
    }


def test_golden_file_still_decodes_to_the_same_weights():
    """A file written by format version 1 must decode the same forever (regenerate only on a format bump)."""
    expected = golden_state_dict()
    decoded = vcwc.decompress(GOLDEN / "tiny_x264_v1.vcwc")
    assert list(decoded) == list(expected)
    for name, tensor in expected.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape
    assert torch.equal(decoded["conv.bias"], expected["conv.bias"])
    assert torch.equal(decoded["steps"], expected["steps"])
    for name in ("conv.weight", "fc.weight"):  # lossless: exactly the int8 quantization, nothing more
        q = vcwc.quantize(expected[name], vcwc.QuantConfig())
        assert torch.equal(decoded[name], torch.from_numpy(vcwc.dequantize(q.symbols, q.scales)))


def test_truncated_file_is_detected(tmp_path):
    data = (GOLDEN / "tiny_x264_v1.vcwc").read_bytes()
    for cut in (5, 40, len(data) - 1):
        with pytest.raises(FormatError):
            vcwc.decompress(data[:cut])


def test_corrupted_payload_is_detected_not_decoded():
    data = bytearray((GOLDEN / "tiny_x264_v1.vcwc").read_bytes())
    data[-20] ^= 0xFF
    with pytest.raises(FormatError, match="corrupted"):
        vcwc.decompress(bytes(data))


def test_corrupted_metadata_is_detected():
    data = bytearray((GOLDEN / "tiny_x264_v1.vcwc").read_bytes())
    data[container.HEADER.size + 3] ^= 0x01
    with pytest.raises(FormatError, match="metadata"):
        vcwc.decompress(bytes(data))


def test_not_a_vcwc_file_and_unknown_version():
    with pytest.raises(FormatError, match="not a .vcwc file"):
        vcwc.decompress(b"PK\x03\x04" + bytes(40))
    data = bytearray(GOLDEN_CONTAINER)
    data[4] = 99
    with pytest.raises(FormatError, match="version 99"):
        container.Container(bytes(data))
