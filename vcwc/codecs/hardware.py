"""Hardware encoders, and encoders a user names on the command line.

Every option passed below appears in `ffmpeg -h encoder=NAME` (private options) or in the generic codec
options of `ffmpeg -h full` of the bundled ffmpeg 9 build; tests/test_hardware.py checks that against
the real binary. All streams are one intra frame at a constant QP. None of these encoders can run on a
machine without its device: the availability probe (vcwc.codecs.probe) reports why, and asking for one that
does not work is an error, never a quiet switch to software.

Frame-size limits are the encoders' documented maxima for common parts; a device with smaller limits
makes ffmpeg fail with its own message, which vcwc passes on.
"""

from __future__ import annotations

from ..errors import InputError
from .base import STREAM_DECODERS, Codec, register

H264_DROP_SEI = "filter_units=remove_types=6"  # encoder version strings and timing SEI: bytes for nothing
HEVC_DROP_SEI = "filter_units=remove_types=39|40"
# libavcodec computes the intra QP as qp * |i_qfactor| + i_qoffset, and i_qfactor defaults to -0.8
# (QSV keeps that default): pinning factors to 1 and offsets to 0 makes every frame use the asked QP.
UNIT_QP_FACTORS = {"i_qfactor": "1", "i_qoffset": "0", "b_qfactor": "1", "b_qoffset": "0"}


class HardwareCodec(Codec):
    hardware = True
    kind = "hardware"
    supports_lossless = False
    lossless_hint = "the hardware has no lossless mode"
    qp_range = (1, 51)  # to QSV and VA-API a QP of 0 means "choose one for me"
    qp_ladder = (8, 12, 16, 20, 24, 26, 28, 30, 32, 34, 36, 38, 40, 44)
    demo_qps = (24, 30, 36)
    presets = ()
    default_preset = None
    min_size = 64
    max_width = max_height = 4096

    @property
    def sei_filter(self) -> dict[str, str]:
        drop = {"h264": H264_DROP_SEI, "hevc": HEVC_DROP_SEI}.get(self.container)
        return {"bsf:v": drop} if drop else {}


class Nvenc(HardwareCodec):
    presets = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
    default_preset = "p4"
    device_help = "NVIDIA GPU index (-gpu), e.g. 0"
    # NVENC rejects frames narrower than about 145 (H.264) or 129 (HEVC) pixels.
    min_size = 160

    def output_options(self, settings):
        options = {"c:v": self.encoder, "preset": settings.preset or self.default_preset, "g": "1", "bf": "0"}
        if settings.lossless:
            options["tune"] = "lossless"
        else:
            qp = str(settings.qp)
            # Plain -qp would scale the intra QP by |i_qfactor| = 0.8; the three init_qp values are used as
            # they are.
            options.update({"tune": "hq", "rc": "constqp", "init_qpI": qp, "init_qpP": qp, "init_qpB": qp})
        if settings.device is not None:
            options["gpu"] = settings.device
        return {**options, **self.sei_filter}

    def check(self, settings):
        super().check(settings)
        if settings.device is not None and not settings.device.isdigit():
            raise InputError(f"the device of {self.name} is a GPU index such as 0, got {settings.device!r}")


@register
class H264Nvenc(Nvenc):
    name = "h264_nvenc"
    description = "H.264 on NVIDIA GPUs (NVENC); lossless via -tune lossless"
    standard = "H.264"
    encoder = "h264_nvenc"
    container = "h264"
    supports_lossless = True  # High 4:4:4 Predictive with transform bypass; decoded in software
    qp_range = (0, 51)
    block_size = 16


@register
class HevcNvenc(Nvenc):
    name = "hevc_nvenc"
    description = "HEVC on NVIDIA GPUs (NVENC); lossless via -tune lossless"
    standard = "H.265/HEVC"
    encoder = "hevc_nvenc"
    container = "hevc"
    supports_lossless = True
    qp_range = (0, 51)
    block_size = 32  # NVENC codes HEVC in 32x32 CTUs
    max_width = max_height = 8192


@register
class Av1Nvenc(Nvenc):
    name = "av1_nvenc"
    description = "AV1 on NVIDIA GPUs from Ada on (NVENC), decoded by dav1d"
    standard = "AV1"
    encoder = "av1_nvenc"
    container = "obu"
    decoder = STREAM_DECODERS["obu"]
    lossless_hint = "NVENC's lossless tuning covers H.264 and HEVC only"
    qp_range = (0, 255)  # AV1 quantizer index, not the 0..63 scale of aom/SVT-AV1
    qp_ladder = (32, 64, 96, 112, 128, 144, 160, 176, 192, 208, 224)
    demo_qps = (96, 144, 192)
    block_size = 64
    max_width = max_height = 8192


class Qsv(HardwareCodec):
    presets = ("veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
    default_preset = "medium"
    device_help = "DRM render node (or Windows adapter index) for -qsv_device, e.g. /dev/dri/renderD128"

    def global_options(self, settings):
        return {"qsv_device": settings.device} if settings.device else {}

    def output_options(self, settings):
        # QSV takes NV12 frames from system memory and uploads them itself. -q:v sets the QSCALE flag,
        # which is what selects QSV's constant-QP mode.
        return {
            "vf": "format=nv12",
            "c:v": self.encoder,
            "preset": settings.preset or self.default_preset,
            "q:v": str(settings.qp),
            **UNIT_QP_FACTORS,
            "g": "1",
            "bf": "0",
            **self.sei_filter,
        }


@register
class H264Qsv(Qsv):
    name = "h264_qsv"
    description = "H.264 on Intel GPUs (Quick Sync Video)"
    standard = "H.264"
    encoder = "h264_qsv"
    container = "h264"
    block_size = 16


@register
class HevcQsv(Qsv):
    name = "hevc_qsv"
    description = "HEVC on Intel GPUs (Quick Sync Video)"
    standard = "H.265/HEVC"
    encoder = "hevc_qsv"
    container = "hevc"
    block_size = 64
    max_width = max_height = 8192


class Vaapi(HardwareCodec):
    default_device = "/dev/dri/renderD128"
    device_help = f"DRM render node for -vaapi_device (default {default_device})"

    def global_options(self, settings):
        return {"vaapi_device": settings.device or self.default_device}

    def output_options(self, settings):
        # VA-API encoders take NV12 surfaces on the device: convert, then upload.
        return {
            "vf": "format=nv12,hwupload",
            "c:v": self.encoder,
            "rc_mode": "CQP",
            "qp": str(settings.qp),
            **UNIT_QP_FACTORS,
            "g": "1",
            "bf": "0",
            **self.sei_filter,
        }


@register
class H264Vaapi(Vaapi):
    name = "h264_vaapi"
    description = "H.264 through VA-API (Intel, AMD and other Linux GPU drivers)"
    standard = "H.264"
    encoder = "h264_vaapi"
    container = "h264"
    block_size = 16


@register
class HevcVaapi(Vaapi):
    name = "hevc_vaapi"
    description = "HEVC through VA-API (Intel, AMD and other Linux GPU drivers)"
    standard = "H.265/HEVC"
    encoder = "hevc_vaapi"
    container = "hevc"
    block_size = 64
    max_width = max_height = 8192


@register
class H264V4l2m2m(HardwareCodec):
    name = "h264_v4l2m2m"
    description = "H.264 on V4L2 memory-to-memory encoders (Raspberry Pi, many Arm SoCs)"
    standard = "H.264"
    encoder = "h264_v4l2m2m"
    container = "h264"
    qp_range = (0, 51)
    block_size = 16
    # The Raspberry Pi 4 encoder (bcm2835-codec) stops at 1920x1080; other SoCs allow more.
    max_width, max_height = 1920, 1088

    def output_options(self, settings):
        # ffmpeg's V4L2 wrapper has no constant-QP switch: it keeps frame rate control on and passes
        # qmin/qmax as the device's H264_MIN_QP/MAX_QP, so equal values pin the QP. The generous
        # bitrate keeps a driver that ignores the clamp from starving the frame.
        qp = str(settings.qp)
        return {"c:v": self.encoder, "qmin": qp, "qmax": qp, "b:v": "25M", "g": "1", "bf": "0", **self.sei_filter}


class Amf(HardwareCodec):
    experimental = True
    presets = ("speed", "balanced", "quality")
    default_preset = "balanced"
    # Conservative: the 4K limit of AMD's VCN encoders.
    max_width, max_height = 4096, 2160
    qp_options: tuple[str, ...] = ()  # the encoder's options that take the constant QP

    def output_options(self, settings):
        return {
            "c:v": self.encoder,
            "usage": "transcoding",
            "quality": settings.preset or self.default_preset,
            "rc": "cqp",
            **{option: str(settings.qp) for option in self.qp_options},
            "g": "1",
            "bf": "0",
            **self.sei_filter,
        }


@register
class H264Amf(Amf):
    name = "h264_amf"
    description = "H.264 on AMD GPUs (AMF); experimental"
    standard = "H.264"
    encoder = "h264_amf"
    container = "h264"
    block_size = 16
    qp_options = ("qp_i", "qp_p", "qp_b")


@register
class HevcAmf(Amf):
    name = "hevc_amf"
    description = "HEVC on AMD GPUs (AMF); experimental"
    standard = "H.265/HEVC"
    encoder = "hevc_amf"
    container = "hevc"
    block_size = 64
    qp_options = ("qp_i", "qp_p")  # hevc_amf has no B-frame QP


class MediaCodec(HardwareCodec):
    """Android's encoders through ffmpeg's MediaCodec wrapper (ffmpeg built for Android).

    MediaCodec has no QP control: its constant-quality mode takes a device-defined quality, 0..100 with
    higher meaning better. Here the QP is that quality, so larger values give larger streams (the reverse of
    a QP). Many phones do not offer constant-quality mode at all; the probe shows whether this one does.
    """

    experimental = True
    qp_range = (0, 100)
    qp_ladder = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    demo_qps = (40, 60, 80)
    max_width, max_height = 4096, 2160

    def output_options(self, settings):
        return {
            "c:v": self.encoder,
            "bitrate_mode": "cq",
            "global_quality": str(settings.qp),
            "g": "1",
            "bf": "0",
            **self.sei_filter,
        }


@register
class H264MediaCodec(MediaCodec):
    name = "h264_mediacodec"
    description = "H.264 on Android phones (MediaCodec); experimental, the QP is quality 0..100"
    standard = "H.264"
    encoder = "h264_mediacodec"
    container = "h264"
    block_size = 16


@register
class HevcMediaCodec(MediaCodec):
    name = "hevc_mediacodec"
    description = "HEVC on Android phones (MediaCodec); experimental, the QP is quality 0..100"
    standard = "H.265/HEVC"
    encoder = "hevc_mediacodec"
    container = "hevc"
    block_size = 64
