"""The HEVC sequence parameter set (its profile_tier_level): profile, tier, level, frame size, chroma format and
bit depth."""

from __future__ import annotations

from ...errors import FormatError
from .reader import CHROMA_FORMATS, BitReader, StreamInfo, annexb_nal_units, rbsp

HEVC_PROFILES = {
    1: "Main",
    2: "Main 10",
    3: "Main Still Picture",
    4: "Range Extensions (RExt)",
    5: "High Throughput",
    9: "Screen Content Coding",
}


def parse_hevc(data: bytes) -> StreamInfo:
    sps = next((unit for unit in annexb_nal_units(data) if len(unit) > 2 and (unit[0] >> 1) & 0x3F == 33), None)
    if sps is None:
        raise FormatError("no HEVC sequence parameter set (NAL type 33) in the stream")
    bits = BitReader(rbsp(sps[2:]))
    bits.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.u(3)
    bits.u(1)  # sps_temporal_id_nesting_flag
    # profile_tier_level(1, sps_max_sub_layers_minus1)
    bits.u(2)  # general_profile_space
    tier = "High" if bits.flag() else "Main"
    profile_idc = bits.u(5)
    compatibility = bits.u(32)
    bits.u(4)  # progressive, interlaced, non-packed, frame-only source flags
    # For the range-extension profiles the next flags name the exact profile (e.g. Main Intra).
    rext_flags = bits.u(9)
    bits.u(34)
    bits.u(1)
    level_idc = bits.u(8)
    sub_layer_flags = [(bits.flag(), bits.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.u(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in sub_layer_flags:
        if profile_present:
            bits.u(88)
        if level_present:
            bits.u(8)
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc == 3:
        bits.u(1)
    width, height = bits.ue(), bits.ue()
    if bits.flag():  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_width = 2 if chroma_format_idc in (1, 2) else 1
        sub_height = 2 if chroma_format_idc == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    bit_depth = bits.ue() + 8
    if profile_idc == 0:  # some encoders signal the profile only in the compatibility flags
        profile_idc = next((p for p in range(1, 32) if compatibility & (1 << (31 - p))), 0)
    profile = HEVC_PROFILES.get(profile_idc, f"general_profile_idc {profile_idc}")
    if profile_idc == 4:
        profile = _rext_profile_name(rext_flags) + " (RExt)"
    level = f"{level_idc // 30}" + (f".{level_idc % 30 // 3}" if level_idc % 30 else "")
    return StreamInfo(
        "H.265/HEVC",
        profile_idc,
        profile,
        level_idc,
        level,
        tier,
        width,
        height,
        CHROMA_FORMATS.get(chroma_format_idc, "?"),
        bit_depth,
    )


def _rext_profile_name(flags: int) -> str:
    """Name of a format range extensions profile from its nine general_max_*/intra constraint flags."""
    max_12bit, max_10bit, max_8bit, max_422, max_420, max_mono, intra, one_picture = (
        (flags >> (8 - index)) & 1 for index in range(8)
    )
    depth = "" if max_8bit else " 10" if max_10bit else " 12" if max_12bit else " 16"
    if max_mono:
        name = "Monochrome" + depth
    elif max_420:
        name = "Main" + depth
    elif max_422:
        name = "Main 4:2:2" + depth
    else:
        name = "Main 4:4:4" + depth
    return name + (" Still Picture" if one_picture else " Intra" if intra else "")
