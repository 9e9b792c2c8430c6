"""Which encoders work here: probed by encoding and decoding one small frame, cached per binary."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from . import ffmpeg
from .codecs import Codec, EncoderSettings, codec_names, get_codec
from .errors import CodecError, FFmpegError

PROBE_SIZE = 64


@dataclass(frozen=True)
class Availability:
    codec: str
    encoder: str
    compiled: bool  # the ffmpeg build has the encoder
    works: bool  # a probe frame went through encode and decode (bit-exactly, for lossless codecs)
    reason: str  # why not, when it does not work

    def to_dict(self) -> dict:
        return asdict(self)


def probe(codec: Codec, binary: str) -> Availability:
    return _probe_cached(codec.name, binary, ffmpeg.binary_identity(binary))


@functools.lru_cache(maxsize=64)
def _probe_cached(name: str, binary: str, identity: str) -> Availability:
    codec = get_codec(name)
    if codec.encoder not in ffmpeg.compiled_encoders(binary):
        return Availability(name, codec.encoder, False, False, f"this ffmpeg build has no {codec.encoder} encoder")
    rng = np.random.default_rng(0)
    frame = rng.integers(96, 160, size=(1, PROBE_SIZE, PROBE_SIZE), dtype=np.uint8)
    settings = EncoderSettings() if codec.supports_lossless else EncoderSettings(qp=sum(codec.qp_range) // 2)
    try:
        data = ffmpeg.encode(codec.job(PROBE_SIZE, PROBE_SIZE, settings), frame, binary, timeout=60)
        decoded = ffmpeg.decode(data, codec.container, PROBE_SIZE, PROBE_SIZE, binary, codec.decoder, timeout=60)
    except FFmpegError as exc:
        last = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else str(exc).splitlines()[0]
        return Availability(name, codec.encoder, True, False, last)
    if settings.lossless and not np.array_equal(decoded[:1], frame):
        return Availability(name, codec.encoder, True, False, "lossless mode did not return the frame bit-exactly")
    return Availability(name, codec.encoder, True, True, "")


def all_availability(binary: str) -> list[Availability]:
    return [probe(get_codec(name), binary) for name in codec_names()]


def require(codec: Codec, binary: str) -> None:
    """Raise a clear error when the codec cannot run with this ffmpeg; never fall back to another."""
    status = probe(codec, binary)
    if not status.works:
        raise CodecError(f"codec {codec.name!r} ({codec.encoder}) is not usable with {binary}: {status.reason}")
