"""What the stream parsers share: the fields they report, an MSB-first bit reader with the Exp-Golomb codes,
and the NAL units of an Annex B byte stream (H.264 and HEVC)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ...errors import FormatError

CHROMA_FORMATS = {0: "4:0:0", 1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}  # by chroma_format_idc (H.264, HEVC)


@dataclass(frozen=True)
class StreamInfo:
    standard: str  # "H.264", "H.265/HEVC" or "AV1"
    profile_idc: int  # profile_idc / general_profile_idc / seq_profile
    profile: str
    level_idc: int  # level_idc / general_level_idc / seq_level_idx
    level: str  # "5.1"; "unconstrained" for AV1's seq_level_idx 31
    tier: str | None  # HEVC and AV1: "Main" or "High"
    width: int
    height: int
    chroma_format: str  # "4:2:0", "4:0:0", "4:2:2" or "4:4:4"
    bit_depth: int

    def to_dict(self) -> dict:
        return asdict(self)


class BitReader:
    """MSB-first bit reader over an RBSP, with the Exp-Golomb codes of H.264/HEVC and AV1's uvlc."""

    def __init__(self, data: bytes):
        self.data = data
        self.position = 0

    def u(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            byte = self.position >> 3
            if byte >= len(self.data):
                raise FormatError("header ends before all its fields were read")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.position & 7))) & 1)
            self.position += 1
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise FormatError("invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value % 2 else -(value // 2)

    def uvlc(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.u(zeros) + (1 << zeros) - 1


def annexb_nal_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (split on 00 00 01 start codes), without the start codes."""
    starts = []
    index = data.find(b"\x00\x00\x01")
    while index >= 0:
        starts.append(index + 3)
        index = data.find(b"\x00\x00\x01", index + 3)
    units = []
    for number, start in enumerate(starts):
        end = starts[number + 1] - 3 if number + 1 < len(starts) else len(data)
        units.append(data[start:end].rstrip(b"\x00"))  # trailing zeros belong to the next 4-byte start code
    return units


def rbsp(nal_payload: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for byte in nal_payload:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
