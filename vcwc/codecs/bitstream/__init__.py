"""Profile, level and frame size read from the headers of raw H.264, HEVC and AV1 streams.

Pure functions on bytes (no ffmpeg): `parse_stream(data, container)` reads the H.264 sequence parameter
set, the HEVC SPS (profile_tier_level), or the AV1 sequence header OBU, one module each. Only the fields
vcwc reports are parsed; vcwc.codecs.levels says whether common hardware decoders can take the stream.
"""

from __future__ import annotations

from ...errors import FormatError
from .av1 import parse_av1
from .h264 import parse_h264
from .hevc import parse_hevc
from .reader import BitReader, StreamInfo, annexb_nal_units, rbsp

__all__ = ["BitReader", "StreamInfo", "annexb_nal_units", "parse_stream", "rbsp"]

PARSERS = {"h264": parse_h264, "hevc": parse_hevc, "obu": parse_av1}


def parse_stream(data: bytes, container: str) -> StreamInfo:
    """Header fields of a raw stream as vcwc stores it (`container`: "h264", "hevc" or "obu")."""
    try:
        parser = PARSERS[container]
    except KeyError:
        raise FormatError(f"no header parser for {container!r} streams") from None
    return parser(data)
