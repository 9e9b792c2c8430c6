"""Codec registry: each video encoder vcwc can use is a small class.

A codec knows its ffmpeg encoder and decoder, the raw elementary-stream format it writes, its QP
range, whether it has a lossless mode, its frame-size limits and block size, and turns
`EncoderSettings` into ffmpeg options (output options, plus global options such as the device a
hardware encoder needs). It never runs anything: `vcwc.ffmpeg` does.

The software codecs live here; hardware encoders in `vcwc.hardware`, the phone-like software
profiles in `vcwc.profiles`. Both register themselves when this module is imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from .errors import CodecError, InputError
from .ffmpeg import EncodeJob


@dataclass(frozen=True)
class EncoderSettings:
    """How to encode. `qp=None` means lossless. `device` picks the hardware device where a codec allows it."""

    qp: int | None = None
    preset: str | None = None
    threads: int = 1
    device: str | None = None

    @property
    def lossless(self) -> bool:
        return self.qp is None


class Codec(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    standard: ClassVar[str]
    encoder: ClassVar[str]
    container: ClassVar[str]  # raw elementary stream: no container overhead
    decoder: ClassVar[str | None] = None  # None: ffmpeg's native decoder for the stream
    qp_range: ClassVar[tuple[int, int]]
    # QPs a sweep tries by default (dense where accuracy usually falls off) and the few the demo shows.
    qp_ladder: ClassVar[tuple[int, ...]]
    demo_qps: ClassVar[tuple[int, ...]]
    supports_lossless: ClassVar[bool] = True
    # Why there is no lossless mode, for the error that asks for --qp instead.
    lossless_hint: ClassVar[str] = ""
    # What to try when the lossless mode is not bit-exact.
    lossless_failure_hint: ClassVar[str] = ""
    default_preset: ClassVar[str | None]
    # The presets the encoder accepts; None: any name is passed through (the encoder checks it).
    presets: ClassVar[tuple[str, ...] | None] = None
    # Regions of different tensors start on multiples of this, so no coding block mixes two tensors.
    block_size: ClassVar[int]
    min_size: ClassVar[int] = 16
    max_width: ClassVar[int]
    max_height: ClassVar[int]
    hardware: ClassVar[bool] = False
    kind: ClassVar[str] = "software"  # "software", "profile", "hardware" or "custom"
    # Built and option-checked, but never run end to end by the maintainers (no such device to hand).
    experimental: ClassVar[bool] = False
    # What --hw-device means for this codec; None: the encoder has no device to choose.
    device_help: ClassVar[str | None] = None
    env: ClassVar[tuple[tuple[str, str], ...]] = ()

    @abstractmethod
    def output_options(self, settings: EncoderSettings) -> dict[str, str]:
        """ffmpeg output options (without -f) for all-intra coding with the given settings."""

    def global_options(self, settings: EncoderSettings) -> dict[str, str]:
        """ffmpeg options that must come before the input (hardware device set-up)."""
        return {}

    @property
    def default_mode(self) -> str:
        """"lossless" when no --qp is needed; "lossy": the codec requires --qp."""
        return "lossless" if self.supports_lossless else "lossy"

    def probe_settings(self) -> EncoderSettings:
        """Settings the availability probe encodes with: lossless where there is a lossless mode."""
        if self.supports_lossless:
            return EncoderSettings()
        return EncoderSettings(qp=self.demo_qps[len(self.demo_qps) // 2])

    def check(self, settings: EncoderSettings) -> None:
        if settings.lossless and not self.supports_lossless:
            why = f" ({self.lossless_hint})" if self.lossless_hint else ""
            example = f", e.g. --qp {self.demo_qps[0]}" if self.demo_qps else ""
            raise InputError(f"codec {self.name!r} has no lossless mode{why}: pass --qp with a QP in "
                             f"{self.qp_range[0]}..{self.qp_range[1]}{example}")
        if settings.qp is not None:
            low, high = self.qp_range
            if not low <= settings.qp <= high:
                raise InputError(f"QP {settings.qp} is outside {self.name}'s range {low}..{high}")
        if settings.threads < 1:
            raise InputError(f"threads must be at least 1, got {settings.threads}")
        if settings.preset is not None and self.presets is not None and settings.preset not in self.presets:
            allowed = ", ".join(self.presets) if self.presets else "none"
            raise InputError(f"preset {settings.preset!r} is not one of {self.name}'s presets ({allowed})")
        if settings.device is not None and self.device_help is None:
            raise InputError(f"codec {self.name!r} has no device to choose; drop --hw-device")

    def job(self, width: int, height: int, settings: EncoderSettings) -> EncodeJob:
        self.check(settings)
        options = self.output_options(settings)
        return EncodeJob(self.encoder, self.container, width, height, tuple(options.items()), self.env,
                         tuple(self.global_options(settings).items()))

    def describe(self) -> dict:
        return {
            "name": self.name, "description": self.description, "standard": self.standard,
            "encoder": self.encoder, "decoder": self.decoder or "native", "container": self.container,
            "qp_range": list(self.qp_range), "lossless": self.supports_lossless, "default_mode": self.default_mode,
            "presets": list(self.presets) if self.presets is not None else None,
            "default_preset": self.default_preset, "block_size": self.block_size, "min_size": self.min_size,
            "max_width": self.max_width, "max_height": self.max_height, "hardware": self.hardware,
            "kind": self.kind, "experimental": self.experimental,
        }


_REGISTRY: dict[str, Codec] = {}


def register(cls: type[Codec]) -> type[Codec]:
    _REGISTRY[cls.name] = cls()
    return cls


def get_codec(name: str) -> Codec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; known codecs: {', '.join(_REGISTRY)}") from None


def codec_names() -> list[str]:
    return list(_REGISTRY)


# `--codec auto` tries these in order and takes the first that works here: hardware HEVC, hardware
# H.264, then x265 (which works wherever the bundled ffmpeg does). Experimental encoders are not tried.
AUTO_ORDER = ("hevc_nvenc", "hevc_qsv", "hevc_vaapi", "h264_nvenc", "h264_qsv", "h264_vaapi", "h264_v4l2m2m",
              "x265")

# The software decoder for each stream format vcwc stores. Decoding depends only on the format, never on
# which encoder wrote the stream, so a file made with a hardware encoder decodes anywhere.
STREAM_DECODERS: dict[str, str | None] = {"h264": None, "hevc": None, "obu": "libdav1d"}


def stream_decoder(container: str, hwaccel: str | None = None) -> str | None:
    """ffmpeg decoder for a stored stream; None: ffmpeg's native one.

    With --hwaccel, AV1 uses ffmpeg's native av1 decoder, which (unlike libdav1d) drives hardware.
    """
    if container not in STREAM_DECODERS:
        raise CodecError(f"unknown stream format {container!r}; known: {', '.join(STREAM_DECODERS)}")
    if hwaccel:
        return "av1" if container == "obu" else None
    return STREAM_DECODERS[container]


def _params(**values) -> str:
    """x265/SVT-AV1/x264 style 'key=value:key=value' parameter strings."""
    return ":".join(f"{key.replace('_', '-')}={value}" for key, value in values.items())


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

    def output_options(self, settings):
        # QP 0 is x264's lossless mode. Psycho-visual tools and adaptive quantization are for eyes,
        # not weights. Type-6 NAL units (SEI) hold x264's settings string: bytes for nothing.
        return {
            "c:v": self.encoder, "preset": settings.preset or self.default_preset,
            "qp": str(settings.qp or 0), "g": "1", "threads": str(settings.threads),
            "x264-params": _params(aq_mode=0, psy=0, sliced_threads=0),
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

    def output_options(self, settings):
        mode = {"lossless": 1} if settings.lossless else {"qp": settings.qp}
        # info=0 and dropping SEI (types 39/40) keep x265's version and settings out of the stream;
        # one frame thread keeps the output identical whatever the pool size. Every stream holds one
        # frame, so it is intra-only without keyint=1, which would signal the Main Intra (RExt) profile
        # that phone decoders reject.
        params = _params(**mode, aq_mode=0, psy_rd=0, psy_rdoq=0, info=0, log_level="error",
                         pools=settings.threads, frame_threads=1)
        return {"c:v": self.encoder, "preset": settings.preset or self.default_preset,
                "x265-params": params, "bsf:v": "filter_units=remove_types=39|40"}


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

    def output_options(self, settings):
        options = {"c:v": self.encoder, "cpu-used": settings.preset or self.default_preset, "g": "1",
                   "row-mt": "0", "threads": str(settings.threads), "aq-mode": "0"}
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
    env = (("SVT_LOG", "1"),)

    def output_options(self, settings):
        mode = {"lossless": 1} if settings.lossless else {"aq_mode": 0, "enable_tpl_la": 0}
        options = {"c:v": self.encoder, "preset": settings.preset or self.default_preset,
                   "svtav1-params": _params(**mode, keyint=1, lp=settings.threads)}
        if not settings.lossless:
            options["crf"] = str(settings.qp)
        return options


# Registered after the software codecs so listings show those first.
from . import profiles, hardware  # noqa: E402,F401
