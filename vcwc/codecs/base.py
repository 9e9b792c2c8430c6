"""The codec base class and registry: each video encoder vcwc can use is a small registered class.

A codec knows its ffmpeg encoder and decoder, the raw elementary-stream format it writes, its QP
range, whether it has a lossless mode, its frame-size limits and block size, and turns
`EncoderSettings` into ffmpeg options (output options, plus global options such as the device a
hardware encoder needs). It never runs anything: `vcwc.codecs.ffmpeg` does.

The codecs themselves live in `software`, `hardware` and `mobile`; `vcwc.codecs` imports them in
that order, which is the order listings show.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..errors import CodecError, InputError
from .ffmpeg import EncodeJob

PIXEL_FORMATS = {8: "yuv420p", 10: "yuv420p10le"}


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
    # The widest luma the encoder's lossless round trip takes: 10 lets symbols reach ±511 (yuv420p10le).
    max_bit_depth: ClassVar[int] = 8
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
        """ "lossless" when no --qp is needed; "lossy": the codec requires --qp."""
        return "lossless" if self.supports_lossless else "lossy"

    def probe_settings(self) -> EncoderSettings:
        """Settings the availability probe encodes with: lossless where there is a lossless mode."""
        if self.supports_lossless:
            return EncoderSettings()
        return EncoderSettings(qp=self.demo_qps[len(self.demo_qps) // 2])

    def check(self, settings: EncoderSettings) -> None:
        if settings.lossless and not self.supports_lossless:
            why = f" ({self.lossless_hint})" if self.lossless_hint else ""
            example = f", e.g. qp={self.demo_qps[0]}" if self.demo_qps else ""
            raise InputError(
                f"codec {self.name!r} has no lossless mode{why}: give a QP in "
                f"{self.qp_range[0]}..{self.qp_range[1]}{example}"
            )
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
            raise InputError(f"codec {self.name!r} has no device to choose; give no device for it")

    def job(self, width: int, height: int, settings: EncoderSettings, bit_depth: int = 8) -> EncodeJob:
        self.check(settings)
        if bit_depth > self.max_bit_depth:
            raise InputError(f"codec {self.name!r} takes at most {self.max_bit_depth}-bit frames, not {bit_depth}-bit")
        options = self.output_options(settings)
        return EncodeJob(
            self.encoder,
            self.container,
            width,
            height,
            tuple(options.items()),
            self.env,
            tuple(self.global_options(settings).items()),
            PIXEL_FORMATS[bit_depth],
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "standard": self.standard,
            "encoder": self.encoder,
            "decoder": self.decoder or "native",
            "container": self.container,
            "qp_range": list(self.qp_range),
            "lossless": self.supports_lossless,
            "default_mode": self.default_mode,
            "presets": list(self.presets) if self.presets is not None else None,
            "default_preset": self.default_preset,
            "block_size": self.block_size,
            "min_size": self.min_size,
            "max_width": self.max_width,
            "max_height": self.max_height,
            "max_bit_depth": self.max_bit_depth,
            "hardware": self.hardware,
            "kind": self.kind,
            "experimental": self.experimental,
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
AUTO_ORDER = ("hevc_nvenc", "hevc_qsv", "hevc_vaapi", "h264_nvenc", "h264_qsv", "h264_vaapi", "h264_v4l2m2m", "x265")

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


def params(**values) -> str:
    """x265/SVT-AV1/x264 style 'key=value:key=value' parameter strings."""
    return ":".join(f"{key.replace('_', '-')}={value}" for key, value in values.items())
