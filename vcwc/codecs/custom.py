"""An encoder named by the user (`--encoder NAME --encoder-args "..."`), run through the same verified round trip."""

from __future__ import annotations

import shlex

from ..errors import InputError
from .base import STREAM_DECODERS, Codec, EncoderSettings

STANDARDS = {"h264": "H.264", "hevc": "H.265/HEVC", "obu": "AV1"}
# Options vcwc sets itself (input, output format) or that would break the raw stream on stdout.
RESERVED_OPTIONS = {"i", "f", "y", "n", "c", "c:v", "codec", "codec:v", "vcodec", "s", "map", "an", "vn"}
# Options ffmpeg reads as global (device set-up): they go before the input.
GLOBAL_OPTIONS = {"vaapi_device", "qsv_device", "init_hw_device", "filter_hw_device"}
QP_PLACEHOLDER = "{qp}"


class CustomCodec(Codec):
    """An encoder named by the user (recipe codec `custom:NAME` with `encoder_args`), not registered.

    The arguments are the user's: vcwc only adds all-intra-neutral plumbing (raw input, the stream format
    on stdout). Without "{qp}" in the arguments they are taken as lossless and the round trip must be
    bit-exact; with "{qp}" the codec is lossy and the QP fills it in. Files it writes decode with the
    software decoder of their stream format, like any other.
    """

    kind = "custom"
    experimental = True
    qp_ladder = demo_qps = ()
    presets = ()
    default_preset = None
    block_size = 64  # safe for any of the three standards' coding blocks
    min_size = 64
    max_width = max_height = 4096

    def __init__(self, encoder: str, args: str = "", stream_format: str = "hevc", probe_qp: int | None = None):
        if stream_format not in STANDARDS:
            raise InputError(f"encoder_format must be one of {', '.join(STANDARDS)}, got {stream_format!r}")
        if not encoder or encoder.startswith("-"):
            raise InputError(f"a custom codec needs an ffmpeg encoder name, got {encoder!r}")
        self.name = f"custom:{encoder}"
        self.encoder = encoder
        self.container = stream_format
        self.standard = STANDARDS[stream_format]
        self.decoder = STREAM_DECODERS[stream_format]
        self.args = args
        self.supports_lossless = QP_PLACEHOLDER not in args
        self.qp_range = (0, 1023)  # the encoder's own range applies; ffmpeg rejects values outside it
        self.lossless_hint = 'the encoder_args hold "{qp}", so they describe a lossy mode'
        self.lossless_failure_hint = (
            'without "{qp}" in encoder_args vcwc takes them as lossless and checks it; '
            'for lossy coding write "{qp}" where the quantizer goes and give a qp'
        )
        self.description = f"{encoder} with the user's options: {args}" if args else f"{encoder} with its defaults"
        self._probe_qp = probe_qp
        self._pairs = parse_encoder_args(args)

    def check(self, settings):
        super().check(settings)
        if settings.qp is not None and self.supports_lossless:
            raise InputError(
                'a qp needs a place in encoder_args: write "{qp}" where the encoder takes its '
                'quantizer, e.g. "-qp {qp}"'
            )

    def probe_settings(self) -> EncoderSettings:
        if self.supports_lossless:
            return EncoderSettings()
        if self._probe_qp is None:
            raise InputError('the encoder_args hold "{qp}": give a qp')
        return EncoderSettings(qp=self._probe_qp)

    def _options(self, settings, global_ones: bool) -> dict[str, str]:
        qp = "" if settings.qp is None else str(settings.qp)
        return {
            key: value.replace(QP_PLACEHOLDER, qp)
            for key, value in self._pairs
            if (key in GLOBAL_OPTIONS) == global_ones
        }

    def global_options(self, settings):
        return self._options(settings, True)

    def output_options(self, settings):
        return {"c:v": self.encoder, **self._options(settings, False)}

    def describe(self) -> dict:
        return {**super().describe(), "args": self.args}


def parse_encoder_args(args: str) -> list[tuple[str, str]]:
    """'-key value -key value' pairs (shell quoting allowed) from encoder_args."""
    tokens = shlex.split(args)
    if len(tokens) % 2:
        raise InputError(f"encoder_args must be '-option value' pairs, got {args!r}")
    pairs = []
    for key, value in zip(tokens[::2], tokens[1::2]):
        if not key.startswith("-") or len(key) < 2:
            raise InputError(f"encoder_args: expected an option such as -qp, got {key!r}")
        key = key[1:]
        if key in RESERVED_OPTIONS:
            raise InputError(f"encoder_args: vcwc sets -{key} itself (it follows the encoder and encoder_format)")
        pairs.append((key, value))
    return pairs
