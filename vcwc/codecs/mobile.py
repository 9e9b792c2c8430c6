"""Software profiles that behave like a phone's hardware encoder.

Each profile is libx264 or libx265 held to what phone encoders (Android MediaCodec, Apple VideoToolbox)
and phone decoders allow: H.264 Constrained Baseline or Main, or HEVC Main; 8-bit 4:2:0 only; frames
capped so the level stays one phones decode (5.1, or 4.0 for Baseline); constant QP within the 1..51
range hardware rate control takes; no lossless mode; no B-frames; fast presets. docs/hardware.md says
where each limit comes from. The tests check the streams' profile and level with `vcwc.codecs.bitstream`.
"""

from __future__ import annotations

from .base import Codec, register
from .base import params as joined_params

# x264/x265 names shared by both encoders; the slower presets use tools phone encoders do not have.
FAST_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast")


class MobileProfile(Codec):
    kind = "profile"
    supports_lossless = False
    lossless_hint = (
        "phone hardware encoders have no lossless mode, and x264's lossless output is "
        "High 4:4:4, which phone decoders cannot play"
    )
    # QP 0 would switch x264 to its lossless mode; hardware constant-QP modes take 1..51 (to QSV and
    # VA-API a QP of 0 means "choose one for me").
    qp_range = (1, 51)
    qp_ladder = (8, 12, 16, 20, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44)
    demo_qps = (24, 30, 36)
    presets = FAST_PRESETS
    default_preset = "veryfast"


class MobileH264Profile(MobileProfile):
    standard = "H.264"
    encoder = "libx264"
    container = "h264"
    block_size = 16
    profile: str

    def output_options(self, settings):
        # -profile makes x264 drop or refuse what the profile forbids (8x8 transforms in Main, CABAC in
        # Baseline, lossless). The level is left to x264, which writes the lowest one the frame fits, as
        # phone encoders do: a decoder refuses streams above its own maximum level, however small.
        return {
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "profile:v": self.profile,
            "pix_fmt": "yuv420p",
            "qp": str(settings.qp),
            "g": "1",
            "bf": "0",
            "threads": str(settings.threads),
            "x264-params": joined_params(aq_mode=0, psy=0, sliced_threads=0),
            "bsf:v": "filter_units=remove_types=6",
        }


@register
class MobileH264(MobileH264Profile):
    name = "mobile-h264"
    description = "H.264 Main, level 5.1 at most, with libx264 held to what phone encoders produce"
    profile = "main"
    # Level 5.1 allows 36864 macroblocks per frame: exactly 4096x2304, the largest frame phone
    # decoders commonly list for H.264.
    max_width, max_height = 4096, 2304


@register
class MobileH264Baseline(MobileH264Profile):
    name = "mobile-h264-baseline"
    description = "H.264 Constrained Baseline, level 4.0 at most, for the oldest and smallest decoders"
    profile = "baseline"  # x264 writes Constrained Baseline (constraint_set1_flag): no FMO/ASO
    # Level 4.0 allows 8192 macroblocks: 1920x1088 (8160) fits.
    max_width, max_height = 1920, 1088


@register
class MobileHevc(MobileProfile):
    name = "mobile-hevc"
    description = "HEVC Main, level 5.1 at most, with libx265 held to what phone encoders produce"
    standard = "H.265/HEVC"
    encoder = "libx265"
    container = "hevc"
    block_size = 64
    # Levels 5 to 5.2 allow 8,912,896 luma samples per frame: 4096x2176.
    max_width, max_height = 4096, 2176

    def output_options(self, settings):
        # No keyint=1 here: x265 then signals the Main Intra profile (RExt, general_profile_idc 4), which
        # phone decoders reject. Every vcwc stream holds a single frame, so it is intra-only anyway.
        # As for H.264 the level is the encoder's (x265 even refuses an explicit level with constant QP):
        # the lowest the frame fits, kept at 5.1 or below by the frame cap.
        params = joined_params(
            qp=settings.qp,
            bframes=0,
            aq_mode=0,
            psy_rd=0,
            psy_rdoq=0,
            info=0,
            log_level="error",
            pools=settings.threads,
            frame_threads=1,
        )
        return {
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "profile:v": "main",
            "pix_fmt": "yuv420p",
            "x265-params": params,
            "bsf:v": "filter_units=remove_types=39|40",
        }
