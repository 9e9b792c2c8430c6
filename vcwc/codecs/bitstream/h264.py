"""The H.264 sequence parameter set: profile, level, frame size, chroma format and bit depth."""

from __future__ import annotations

from ...errors import FormatError
from .reader import CHROMA_FORMATS, BitReader, StreamInfo, annexb_nal_units, rbsp

H264_PROFILES = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4 Predictive",
    44: "CAVLC 4:4:4 Intra",
    83: "Scalable Baseline",
    86: "Scalable High",
    118: "Multiview High",
    128: "Stereo High",
}
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists.
H264_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def parse_h264(data: bytes) -> StreamInfo:
    sps = next((unit for unit in annexb_nal_units(data) if unit and unit[0] & 0x1F == 7), None)
    if sps is None:
        raise FormatError("no H.264 sequence parameter set (NAL type 7) in the stream")
    bits = BitReader(rbsp(sps[1:]))
    profile_idc = bits.u(8)
    constraints = bits.u(8)
    level_idc = bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, bit_depth = 1, 8
    if profile_idc in H264_HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            bits.u(1)  # separate_colour_plane_flag
        bit_depth = bits.ue() + 8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.u(1)
    bits.u(1)  # direct_8x8_inference_flag
    width, height = width_mbs * 16, height_map_units * 16 * (2 - frame_mbs_only)
    if bits.flag():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 1 if chroma_format_idc in (0, 3) else 2
        crop_y = (1 if chroma_format_idc in (0, 2, 3) else 2) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    profile = H264_PROFILES.get(profile_idc, f"profile_idc {profile_idc}")
    if profile_idc == 66 and constraints & 0x40:  # constraint_set1_flag: decodable by Main decoders
        profile = "Constrained Baseline"
    elif profile_idc in (110, 122, 244) and constraints & 0x10:  # constraint_set3_flag: intra-only variant
        profile = {110: "High 10 Intra", 122: "High 4:2:2 Intra", 244: "High 4:4:4 Intra"}[profile_idc]
    # Level 1b: level_idc 11 with constraint_set3_flag in Baseline/Main/Extended, or level_idc 9.
    if level_idc == 9 or (level_idc == 11 and profile_idc in (66, 77, 88) and constraints & 0x10):
        level = "1b"
    else:
        level = f"{level_idc // 10}.{level_idc % 10}"
    return StreamInfo(
        "H.264",
        profile_idc,
        profile,
        level_idc,
        level,
        None,
        width,
        height,
        CHROMA_FORMATS.get(chroma_format_idc, "?"),
        bit_depth,
    )


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    last, next_scale = 8, 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last
