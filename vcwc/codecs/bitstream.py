"""Profile, level and frame size read from the headers of raw H.264, HEVC and AV1 streams.

Pure functions on bytes (no ffmpeg): `parse_stream(data, container)` reads the H.264 sequence parameter
set, the HEVC SPS (profile_tier_level), or the AV1 sequence header OBU, and `hardware_fit` says whether
common hardware decoders (phones, GPUs) can take the stream. Only the fields vcwc reports are parsed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import FormatError


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
CHROMA_FORMATS = {0: "4:0:0", 1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}


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


AV1_PROFILES = {0: "Main", 1: "High", 2: "Professional"}
OBU_SEQUENCE_HEADER = 1


def av1_obus(data: bytes) -> list[tuple[int, bytes]]:
    """(obu_type, payload) of a low-overhead AV1 bitstream (every OBU has a size field)."""
    obus, position = [], 0
    while position < len(data):
        header = data[position]
        obu_type = (header >> 3) & 0xF
        has_extension, has_size = header & 0x4, header & 0x2
        position += 2 if has_extension else 1
        if not has_size:  # the last OBU of a temporal unit may run to the end
            obus.append((obu_type, data[position:]))
            break
        size, shift = 0, 0
        while True:
            if position >= len(data):
                raise FormatError("AV1 OBU size runs past the end of the stream")
            byte = data[position]
            position += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        obus.append((obu_type, data[position : position + size]))
        position += size
    return obus


def parse_av1(data: bytes) -> StreamInfo:
    header = next((payload for obu_type, payload in av1_obus(data) if obu_type == OBU_SEQUENCE_HEADER), None)
    if header is None:
        raise FormatError("no AV1 sequence header OBU in the stream")
    bits = BitReader(header)
    profile_idc = bits.u(3)
    bits.u(1)  # still_picture
    reduced_still_picture_header = bits.flag()
    tier = "Main"
    if reduced_still_picture_header:
        level_idx = bits.u(5)
    else:
        decoder_model_info_present, buffer_delay_length = False, 0
        if bits.flag():  # timing_info_present_flag
            bits.u(32)
            bits.u(32)
            if bits.flag():  # equal_picture_interval
                bits.uvlc()
            decoder_model_info_present = bits.flag()
            if decoder_model_info_present:
                buffer_delay_length = bits.u(5) + 1
                bits.u(32)
                bits.u(5)
                bits.u(5)
        initial_display_delay_present = bits.flag()
        level_idx = None
        for _ in range(bits.u(5) + 1):  # operating points; the first one describes the whole stream
            bits.u(12)  # operating_point_idc
            idx = bits.u(5)
            high_tier = bits.flag() if idx > 7 else False
            if level_idx is None:
                level_idx, tier = idx, "High" if high_tier else "Main"
            if decoder_model_info_present and bits.flag():
                bits.u(buffer_delay_length)
                bits.u(buffer_delay_length)
                bits.u(1)
            if initial_display_delay_present and bits.flag():
                bits.u(4)
    width_bits, height_bits = bits.u(4) + 1, bits.u(4) + 1
    width, height = bits.u(width_bits) + 1, bits.u(height_bits) + 1
    if not reduced_still_picture_header and bits.flag():  # frame_id_numbers_present_flag
        bits.u(4)
        bits.u(3)
    bits.u(3)  # use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if not reduced_still_picture_header:
        bits.u(4)  # interintra_compound, masked_compound, warped_motion, dual_filter
        enable_order_hint = bits.flag()
        if enable_order_hint:
            bits.u(2)  # jnt_comp, ref_frame_mvs
        force_screen_content_tools = 2 if bits.flag() else bits.u(1)
        if force_screen_content_tools > 0 and not bits.flag():  # seq_choose_integer_mv
            bits.u(1)
        if enable_order_hint:
            bits.u(3)
    bits.u(3)  # enable_superres, enable_cdef, enable_restoration
    # color_config()
    high_bitdepth = bits.flag()
    bit_depth = 8
    if profile_idc == 2 and high_bitdepth:
        bit_depth = 12 if bits.flag() else 10
    elif high_bitdepth:
        bit_depth = 10
    mono_chrome = False if profile_idc == 1 else bits.flag()
    chroma = "4:0:0" if mono_chrome else {0: "4:2:0", 1: "4:4:4"}.get(profile_idc, "4:2:2 or 4:4:4")
    level = "unconstrained" if level_idx == 31 else f"{2 + (level_idx >> 2)}.{level_idx & 3}"
    return StreamInfo(
        "AV1",
        profile_idc,
        AV1_PROFILES.get(profile_idc, f"seq_profile {profile_idc}"),
        level_idx,
        level,
        tier,
        width,
        height,
        chroma,
        bit_depth,
    )


PARSERS = {"h264": parse_h264, "hevc": parse_hevc, "obu": parse_av1}


def parse_stream(data: bytes, container: str) -> StreamInfo:
    """Header fields of a raw stream as vcwc stores it (`container`: "h264", "hevc" or "obu")."""
    try:
        parser = PARSERS[container]
    except KeyError:
        raise FormatError(f"no header parser for {container!r} streams") from None
    return parser(data)
