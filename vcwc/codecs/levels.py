"""Whether common hardware decoders (phones, GPUs) take a stream, from its profile, level and frame size.

Pure functions on the `StreamInfo` that vcwc.codecs.bitstream reads from a stream's headers.
"""

from __future__ import annotations

import math

from .bitstream import StreamInfo

# What "common hardware decoders" means here: phone SoCs (Android MediaCodec, Apple VideoToolbox) and
# desktop GPUs (NVDEC, Intel Quick Sync, AMD VCN) of the last several years. They decode 8-bit 4:2:0
# H.264 Constrained Baseline/Main/High and HEVC Main/Main 10 to level 5.1, and AV1 Main to level 5.1
# where they have AV1 at all. Larger levels (6.x) and the 4:4:4 profiles are desktop- or software-only.
COMMON_MAX_LEVEL = {"H.264": 51, "H.265/HEVC": 153, "AV1": 13}
# Largest frame (luma samples) and side each level allows: H.264 Table A-1 (MaxFS in macroblocks, sides at
# most sqrt(8 * MaxFS)), HEVC Table A.8 (MaxLumaPs, sides at most sqrt(8 * MaxLumaPs)), AV1 Annex A.3.
H264_MAX_FRAME_MBS = {
    10: 99,
    9: 99,
    11: 396,
    12: 396,
    13: 396,
    20: 396,
    21: 792,
    22: 1620,
    30: 1620,
    31: 3600,
    32: 5120,
    40: 8192,
    41: 8192,
    42: 8704,
    50: 22080,
    51: 36864,
    52: 36864,
    60: 139264,
    61: 139264,
    62: 139264,
}
HEVC_MAX_LUMA_PS = {
    30: 36864,
    60: 122880,
    63: 245760,
    90: 552960,
    93: 983040,
    120: 2228224,
    123: 2228224,
    150: 8912896,
    153: 8912896,
    156: 8912896,
    180: 35651584,
    183: 35651584,
    186: 35651584,
}
AV1_MAX_PICTURE = {
    0: (147456, 2048, 1152),
    1: (278784, 2816, 1584),
    4: (665856, 4352, 2448),
    5: (1065024, 5504, 3096),
    8: (2359296, 6144, 3456),
    9: (2359296, 6144, 3456),
    12: (8912896, 8192, 4352),
    13: (8912896, 8192, 4352),
    14: (8912896, 8192, 4352),
    15: (8912896, 8192, 4352),
    16: (35651584, 16384, 8704),
    17: (35651584, 16384, 8704),
    18: (35651584, 16384, 8704),
    19: (35651584, 16384, 8704),
}


def level_allows(info: StreamInfo) -> bool | None:
    """Whether the frame size fits the stream's declared level (None: level unknown or unconstrained)."""
    if info.standard == "H.264":
        max_mbs = H264_MAX_FRAME_MBS.get(info.level_idc)
        if max_mbs is None:
            return None
        width_mbs, height_mbs = math.ceil(info.width / 16), math.ceil(info.height / 16)
        side = math.sqrt(8 * max_mbs)
        return width_mbs * height_mbs <= max_mbs and width_mbs <= side and height_mbs <= side
    if info.standard == "H.265/HEVC":
        max_samples = HEVC_MAX_LUMA_PS.get(info.level_idc)
        if max_samples is None:
            return None
        side = math.sqrt(8 * max_samples)
        return info.width * info.height <= max_samples and info.width <= side and info.height <= side
    limits = AV1_MAX_PICTURE.get(info.level_idc)
    if limits is None:
        return None
    max_samples, max_width, max_height = limits
    return info.width * info.height <= max_samples and info.width <= max_width and info.height <= max_height


def hardware_fit(info: StreamInfo) -> tuple[bool, str]:
    """(fits, why) for the common hardware decoders described above."""
    problems = []
    if info.standard == "H.264":
        if info.profile_idc == 244:
            problems.append(
                f"{info.profile} profile (profile_idc 244, the High 4:4:4 Predictive family that "
                "x264's lossless mode writes): phones and most GPU decoders do not decode it"
            )
        elif info.profile_idc == 66 and info.profile != "Constrained Baseline":
            problems.append("Baseline without constraint_set1 may use FMO/ASO, which hardware decoders lack")
        elif info.profile_idc not in (66, 77, 100):
            problems.append(f"{info.profile} profile is not decoded by common hardware decoders")
    elif info.standard == "H.265/HEVC":
        if info.profile_idc not in (1, 2, 3):
            problems.append(f"{info.profile} profile is not decoded by common hardware decoders")
        if info.tier == "High":
            problems.append("High tier")
    elif info.profile_idc != 0:
        problems.append(f"AV1 {info.profile} profile is not decoded by common hardware decoders")
    if info.chroma_format not in ("4:2:0", "4:0:0") and not problems:
        problems.append(f"{info.chroma_format} chroma")
    if info.level == "unconstrained":
        problems.append("no level is declared (seq_level_idx 31), so decoders cannot tell whether they can decode it")
    elif info.standard == "H.265/HEVC" and info.level_idc == 255:
        problems.append("level 8.5 (general_level_idc 255: no level limit, as x265 writes for lossless)")
    elif info.level_idc > COMMON_MAX_LEVEL[info.standard]:
        limit = {"H.264": "5.1", "H.265/HEVC": "5.1", "AV1": "5.1"}[info.standard]
        problems.append(f"level {info.level} is above the {limit} common hardware decoders support")
    if level_allows(info) is False:
        problems.append(f"a {info.width}x{info.height} frame is larger than level {info.level} allows")
    if problems:
        return False, "; ".join(problems)
    return True, f"{info.profile} profile, level {info.level}, {info.bit_depth}-bit {info.chroma_format}"
