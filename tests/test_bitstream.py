"""Profile, level and frame size from stream headers: golden bytes, then real encoder output."""

import numpy as np
import pytest

from vcwc import FormatError
from vcwc.codecs import EncoderSettings, ffmpeg, get_codec
from vcwc.codecs.bitstream import BitReader, StreamInfo, annexb_nal_units, parse_stream, rbsp
from vcwc.codecs.levels import hardware_fit, level_allows

# Headers cut from streams the bundled ffmpeg wrote: x264 Main 256x144, x264 lossless (keyint 1),
# x265 all-intra at QP 24, SVT-AV1 (temporal delimiter OBU, then the sequence header OBU).
X264_MAIN_SPS = bytes.fromhex("00000001" + "674d400cdc1013a1000003000100000300320f142b80")
X264_LOSSLESS_SPS = bytes.fromhex("00000001" + "67f4100caeb82027420000030002000003006408")
X265_INTRA_SPS = bytes.fromhex(
    "00000001" + "4201010408000003009fa800000300003ca0080809165ba924cae68080000003008000000c84"
)
SVTAV1_SEQUENCE_HEADER = bytes.fromhex("12000a0b020000051dffe3c4af9004")


def test_exp_golomb_codes():
    # ue(v): 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3; se(v) maps 1, 2, 3, 4 to 1, -1, 2, -2.
    reader = BitReader(bytes([0b10100110, 0b01000010, 0b10011000, 0b10000000]))
    assert [reader.ue() for _ in range(4)] == [0, 1, 2, 3]
    reader = BitReader(bytes([0b01001100, 0b10000101, 0b00000000]))
    assert [reader.se() for _ in range(4)] == [1, -1, 2, -2]
    with pytest.raises(FormatError):
        BitReader(b"\x00").u(9)


def test_emulation_prevention_bytes_are_removed():
    assert rbsp(bytes.fromhex("0000030100000302")) == bytes.fromhex("000001000002")
    assert annexb_nal_units(bytes.fromhex("0000000167aa00000168bb")) == [b"\x67\xaa", b"\x68\xbb"]


def test_golden_h264_headers():
    main = parse_stream(X264_MAIN_SPS, "h264")
    assert (main.profile_idc, main.profile, main.level_idc, main.level) == (77, "Main", 12, "1.2")
    assert (main.width, main.height, main.chroma_format, main.bit_depth) == (256, 144, "4:2:0", 8)
    lossless = parse_stream(X264_LOSSLESS_SPS, "h264")
    assert (lossless.profile_idc, lossless.profile) == (244, "High 4:4:4 Intra")
    fits, why = hardware_fit(lossless)
    assert not fits and "High 4:4:4 Predictive" in why and "phones" in why


def test_golden_hevc_and_av1_headers():
    hevc = parse_stream(X265_INTRA_SPS, "hevc")
    assert (hevc.profile_idc, hevc.profile, hevc.level, hevc.tier) == (4, "Main Intra (RExt)", "2", "Main")
    assert (hevc.width, hevc.height) == (256, 144)
    av1 = parse_stream(SVTAV1_SEQUENCE_HEADER, "obu")
    assert (av1.profile_idc, av1.profile, av1.level_idc, av1.level) == (0, "Main", 0, "2.0")
    assert (av1.width, av1.height, av1.bit_depth, av1.chroma_format) == (256, 144, 8, "4:2:0")


def test_streams_without_headers_are_refused():
    with pytest.raises(FormatError, match="sequence parameter set"):
        parse_stream(b"\x00\x00\x01\x65\x88", "h264")
    with pytest.raises(FormatError, match="no AV1 sequence header"):
        parse_stream(bytes.fromhex("1200"), "obu")
    with pytest.raises(FormatError, match="no header parser"):
        parse_stream(b"", "mp4")


def test_hardware_fit_rules():
    main = StreamInfo("H.264", 77, "Main", 51, "5.1", None, 4096, 2304, "4:2:0", 8)
    assert hardware_fit(main)[0] and level_allows(main)
    too_big = StreamInfo("H.264", 77, "Main", 51, "5.1", None, 4096, 2320, "4:2:0", 8)
    assert level_allows(too_big) is False and "larger than level 5.1" in hardware_fit(too_big)[1]
    level6 = StreamInfo("H.265/HEVC", 1, "Main", 180, "6", "Main", 8192, 4320, "4:2:0", 8)
    assert "level 6 is above the 5.1" in hardware_fit(level6)[1]
    unbounded = StreamInfo("H.265/HEVC", 1, "Main", 255, "8.5", "Main", 256, 256, "4:2:0", 8)
    assert "no level limit" in hardware_fit(unbounded)[1]
    av1_high = StreamInfo("AV1", 1, "High", 8, "4.0", "Main", 256, 256, "4:4:4", 8)
    assert "High profile" in hardware_fit(av1_high)[1]
    av1_any_level = StreamInfo("AV1", 0, "Main", 31, "unconstrained", "Main", 256, 256, "4:2:0", 8)
    assert "seq_level_idx 31" in hardware_fit(av1_any_level)[1]


def encode_one(codec_name: str, qp, width=200, height=100) -> bytes:
    """A real stream from a registered codec: a 200x100 frame, so H.264 must signal cropping."""
    codec = get_codec(codec_name)
    rng = np.random.default_rng(4)
    frame = np.clip(rng.laplace(128, 10, size=(1, height, width)), 0, 255).astype(np.uint8)
    return ffmpeg.encode(codec.job(width, height, EncoderSettings(qp=qp)), frame, ffmpeg.find_ffmpeg())


@pytest.mark.parametrize(
    "codec, qp, standard, profile_idc, profile",
    [
        ("x264", None, "H.264", 244, "High 4:4:4 Intra"),
        ("x264", 24, "H.264", 100, "High"),
        ("mobile-h264", 24, "H.264", 77, "Main"),
        ("mobile-h264-baseline", 24, "H.264", 66, "Constrained Baseline"),
        # vcwc's x265 streams hold one frame each and set no keyint, so x265 signals plain Main, lossless or not.
        ("x265", None, "H.265/HEVC", 1, "Main"),
        ("x265", 24, "H.265/HEVC", 1, "Main"),
        ("mobile-hevc", 24, "H.265/HEVC", 1, "Main"),
        ("aom", None, "AV1", 0, "Main"),
        ("svtav1", 30, "AV1", 0, "Main"),
    ],
)
def test_real_encoder_output(codec, qp, standard, profile_idc, profile):
    info = parse_stream(encode_one(codec, qp), get_codec(codec).container)
    assert (info.standard, info.profile_idc, info.profile) == (standard, profile_idc, profile)
    assert (info.width, info.height, info.chroma_format, info.bit_depth) == (200, 100, "4:2:0", 8)
    if codec.startswith("mobile-"):
        assert hardware_fit(info) == (True, f"{profile} profile, level {info.level}, 8-bit 4:2:0")
