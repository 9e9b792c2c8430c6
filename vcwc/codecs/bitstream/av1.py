"""The AV1 sequence header OBU: profile, tier, level, frame size, chroma format and bit depth."""

from __future__ import annotations

from ...errors import FormatError
from .reader import BitReader, StreamInfo

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
