"""The software codecs of the bundled ffmpeg: x264 (H.264), x265 (HEVC), libaom and SVT-AV1 (AV1)."""

from __future__ import annotations

from .base import Codec, register
from .base import params as joined_params


@register
class X264(Codec):
    name = "x264"
    description = "H.264/AVC with libx264"
    standard = "H.264"
    encoder = "libx264"
    container = "h264"
    qp_range = (0, 51)
    qp_ladder = (4, 8, 12, 16, 20, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44)
    demo_qps = (24, 30, 36)
    default_preset = "medium"
    block_size = 16
    max_width = max_height = 16384
    max_bit_depth = 10  # 10-bit input is coded High 4:4:4 Predictive; do not force -profile high10

    def output_options(self, settings):
        # QP 0 is x264's lossless mode. Psycho-visual tools and adaptive quantization are for eyes,
        # not weights. Type-6 NAL units (SEI) hold x264's settings string: bytes for nothing.
        return {
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "qp": str(settings.qp or 0),
            "g": "1",
            "threads": str(settings.threads),
            "x264-params": joined_params(aq_mode=0, psy=0, sliced_threads=0),
            "bsf:v": "filter_units=remove_types=6",
        }


@register
class X265(Codec):
    name = "x265"
    description = "H.265/HEVC with libx265"
    standard = "H.265/HEVC"
    encoder = "libx265"
    container = "hevc"
    qp_range = (0, 51)
    qp_ladder = (4, 8, 12, 16, 20, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44)
    demo_qps = (24, 30, 36)
    default_preset = "medium"
    block_size = 64
    max_width = max_height = 8192
    max_bit_depth = 10

    def output_options(self, settings):
        mode = {"lossless": 1} if settings.lossless else {"qp": settings.qp}
        # info=0 and dropping SEI (types 39/40) keep x265's version and settings out of the stream;
        # one frame thread keeps the output identical whatever the pool size. Every stream holds one
        # frame, so it is intra-only without keyint=1, which would signal the Main Intra (RExt) profile
        # that phone decoders reject.
        params = joined_params(
            **mode, aq_mode=0, psy_rd=0, psy_rdoq=0, info=0, log_level="error", pools=settings.threads, frame_threads=1
        )
        return {
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "x265-params": params,
            "bsf:v": "filter_units=remove_types=39|40",
        }


@register
class Aom(Codec):
    name = "aom"
    description = "AV1 with libaom-av1, decoded by dav1d"
    standard = "AV1"
    encoder = "libaom-av1"
    decoder = "libdav1d"
    container = "obu"
    qp_range = (0, 63)
    qp_ladder = (8, 16, 24, 28, 32, 36, 38, 40, 42, 44, 46, 48, 52, 56)
    demo_qps = (24, 36, 44)
    default_preset = "6"
    block_size = 64
    max_width = max_height = 65536
    max_bit_depth = 10

    def output_options(self, settings):
        options = {
            "c:v": self.encoder,
            "cpu-used": settings.preset or self.default_preset,
            "g": "1",
            "row-mt": "0",
            "threads": str(settings.threads),
            "aq-mode": "0",
        }
        if settings.lossless:
            options["aom-params"] = "lossless=1"
        else:
            # Pinning qmin = qmax = crf holds every frame to the asked quantizer (keyframe boost off).
            qp = str(settings.qp)
            options.update({"crf": qp, "qmin": qp, "qmax": qp, "b:v": "0", "aom-params": "deltaq-mode=0"})
        return options


@register
class SvtAv1(Codec):
    name = "svtav1"
    description = "AV1 with SVT-AV1, decoded by dav1d"
    standard = "AV1"
    encoder = "libsvtav1"
    decoder = "libdav1d"
    container = "obu"
    qp_range = (0, 63)
    qp_ladder = (8, 16, 24, 28, 32, 36, 38, 40, 42, 44, 46, 48, 52, 56)
    demo_qps = (24, 36, 44)
    default_preset = "8"
    block_size = 64
    min_size = 64
    max_width = max_height = 16384  # SVT-AV1 silently crops larger input
    max_bit_depth = 10
    env = (("SVT_LOG", "1"),)

    def output_options(self, settings):
        mode = {"lossless": 1} if settings.lossless else {"aq_mode": 0, "enable_tpl_la": 0}
        options = {
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "svtav1-params": joined_params(**mode, keyint=1, lp=settings.threads),
        }
        if not settings.lossless:
            options["crf"] = str(settings.qp)
        return options
