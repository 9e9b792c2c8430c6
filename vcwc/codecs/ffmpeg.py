"""The only module that runs ffmpeg.

Commands are built by pure functions (with ffmpeg-python) so tests and `--dry-run` can show them;
`run` executes one with a timeout and turns every failure into an FFmpegError that carries the
command and the tail of stderr.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg as ffmpeg_python
import numpy as np

from ..errors import CodecError, FFmpegError, InputError

FFMPEG_ENV = "VCWC_FFMPEG"
TIMEOUT_ENV = "VCWC_FFMPEG_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 600.0
# Quiet, non-interactive, and never asks before overwriting (we only write to pipes); -loglevel follows.
BASE_ARGS = ["-hide_banner", "-nostdin", "-y"]
CHROMA_NEUTRAL = 128


def find_ffmpeg(path: str | os.PathLike | None = None) -> str:
    """The ffmpeg binary: an explicit path, else $VCWC_FFMPEG, else the one imageio-ffmpeg ships."""
    chosen = path or os.environ.get(FFMPEG_ENV)
    if chosen:
        resolved = shutil.which(str(chosen))
        if resolved is None:
            source = "the ffmpeg_path given" if path else f"${FFMPEG_ENV}"
            raise InputError(f"ffmpeg binary {chosen!r} (from {source}) does not exist or is not executable")
        return resolved
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise CodecError(f"no ffmpeg: set ${FFMPEG_ENV} or install imageio-ffmpeg ({exc})") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def default_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        return float(value)
    except ValueError:
        raise InputError(f"${TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def run(
    command: list[str], stdin: bytes = b"", *, timeout: float | None = None, env: dict[str, str] | None = None
) -> bytes:
    """Run one ffmpeg command, feeding stdin, and return its stdout."""
    return run_with_stderr(command, stdin, timeout=timeout, env=env)[0]


def run_with_stderr(
    command: list[str], stdin: bytes = b"", *, timeout: float | None = None, env: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """Like `run`, but also return what ffmpeg wrote to stderr when it succeeded."""
    timeout = default_timeout() if timeout is None else timeout
    full_env = {**os.environ, **(env or {})}
    try:
        completed = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
        raise FFmpegError(f"ffmpeg did not finish within {timeout:g} s", command, stderr) from None
    except OSError as exc:
        raise FFmpegError(f"could not start ffmpeg: {exc}", command) from None
    stderr = completed.stderr.decode("utf-8", "replace")
    if completed.returncode != 0:
        raise FFmpegError(f"ffmpeg exited with code {completed.returncode}", command, stderr, completed.returncode)
    return completed.stdout, stderr


@dataclass(frozen=True)
class EncodeJob:
    """What one ffmpeg encoder call needs besides the pixels."""

    encoder: str
    container: str
    width: int
    height: int
    output_options: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...] = ()
    # Options ffmpeg must see before the input, e.g. the device a hardware encoder uploads to
    # (-vaapi_device /dev/dri/renderD128).
    global_options: tuple[tuple[str, str], ...] = ()
    pixel_format: str = "yuv420p"  # or "yuv420p10le" for symbols wider than 8 bits


def encode_command(job: EncodeJob, binary: str) -> list[str]:
    """argv that reads raw yuv420p frames on stdin and writes the elementary stream to stdout."""
    stream = ffmpeg_python.input("pipe:0", f="rawvideo", pix_fmt=job.pixel_format, s=f"{job.width}x{job.height}")
    stream = stream.output("pipe:1", f=job.container, **dict(job.output_options))
    return _with_global_args(binary, stream, job.global_options)


def decode_command(
    container: str, binary: str, decoder: str | None = None, hwaccel: str | None = None, bit_depth: int = 8
) -> list[str]:
    """argv that decodes an elementary stream on stdin to raw frames on stdout.

    No -pix_fmt on 8-bit output: any conversion could rescale the 0..255 range and break bit-exactness.
    With `hwaccel`, frames come back from the device as NV12, whose first plane is the same luma plane.
    10-bit streams are asked for as yuv420p10le, the format their decoders produce anyway.
    Only the first frame is output: vcwc's streams hold one, and a crafted stream of thousands of skipped
    frames (a few kB) would otherwise come back as gigabytes of raw pixels.
    """
    input_options = {"f": container}
    if hwaccel:
        input_options["hwaccel"] = hwaccel
    if decoder:
        input_options["c:v"] = decoder
    output_options = {"f": "rawvideo", "frames:v": 1}
    if bit_depth != 8:
        output_options["pix_fmt"] = "yuv420p10le"
    stream = ffmpeg_python.input("pipe:0", **input_options).output("pipe:1", **output_options)
    # At warning level ffmpeg says when a hardware decoder gave up and it fell back to software.
    return _with_global_args(binary, stream, loglevel="warning" if hwaccel else "error")


def _with_global_args(
    binary: str, stream, global_options: tuple[tuple[str, str], ...] = (), loglevel: str = "error"
) -> list[str]:
    # ffmpeg-python appends global options at the end, where ffmpeg may ignore them as trailing.
    device_args = [part for key, value in global_options for part in (f"-{key}", value)]
    return [binary, *BASE_ARGS, "-loglevel", loglevel, *device_args, *stream.get_args()]


def yuv420_frames(luma_planes: np.ndarray) -> bytes:
    """Raw 4:2:0 bytes for frames whose luma planes are given (uint8, or uint16 for 10-bit, stored
    little-endian); chroma is the neutral mid value."""
    count, height, width = luma_planes.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 frames need even sizes, got {width}x{height}")
    wide = luma_planes.dtype != np.uint8
    dtype = np.dtype("<u2") if wide else np.uint8
    chroma = np.full((count, height * width // 2), CHROMA_NEUTRAL << 2 if wide else CHROMA_NEUTRAL, dtype=dtype)
    return np.concatenate([luma_planes.reshape(count, -1).astype(dtype, copy=False), chroma], axis=1).tobytes()


def luma_planes(raw: bytes, width: int, height: int, command: list[str], bit_depth: int = 8) -> np.ndarray:
    """The luma planes of raw 4:2:0 output, checking that whole frames came back."""
    sample = 1 if bit_depth == 8 else 2
    frame_bytes = width * height * 3 // 2 * sample
    if len(raw) == 0 or len(raw) % frame_bytes:
        raise FFmpegError(
            f"decoder returned {len(raw)} bytes, not a whole number of {width}x{height} {bit_depth}-bit 4:2:0 frames",
            command,
        )
    frames = np.frombuffer(raw, dtype=np.uint8 if sample == 1 else np.dtype("<u2")).reshape(-1, frame_bytes // sample)
    return frames[:, : width * height].reshape(-1, height, width)


def encode(job: EncodeJob, luma: np.ndarray, binary: str, timeout: float | None = None) -> bytes:
    command = encode_command(job, binary)
    try:
        data = run(command, yuv420_frames(luma), timeout=timeout, env=dict(job.env))
    except FFmpegError as exc:
        # Name the encoder first: with hardware encoders the reason is often a missing device or driver.
        raise FFmpegError(
            f"{job.encoder} could not encode a {job.width}x{job.height} frame: {str(exc).splitlines()[0]}",
            exc.command,
            exc.stderr,
            exc.returncode,
        ) from None
    if not data:
        raise FFmpegError(f"{job.encoder} produced an empty stream", command)
    return data


# What libavcodec logs when a hardware decoder cannot take a stream and it retries in software.
HWACCEL_FALLBACK_MESSAGES = (
    "Failed setup for format",
    "not usable, retrying get_format() without it",
    "hwaccel initialisation returned error",
)


def decode(
    data: bytes,
    container: str,
    width: int,
    height: int,
    binary: str,
    decoder: str | None = None,
    timeout: float | None = None,
    hwaccel: str | None = None,
    bit_depth: int = 8,
) -> np.ndarray:
    command = decode_command(container, binary, decoder, hwaccel, bit_depth)
    try:
        raw, stderr = run_with_stderr(command, data, timeout=timeout)
    except FFmpegError as exc:
        if not hwaccel:
            raise
        raise FFmpegError(
            f"hwaccel {hwaccel!r} could not decode a {container} stream: {str(exc).splitlines()[0]}",
            exc.command,
            exc.stderr,
            exc.returncode,
        ) from None
    if hwaccel and any(message in stderr for message in HWACCEL_FALLBACK_MESSAGES):
        raise FFmpegError(
            f"hwaccel {hwaccel!r} could not decode this {container} stream and ffmpeg fell back to "
            f"software decoding; decode without hwaccel to use software on purpose",
            command,
            stderr,
        )
    return luma_planes(raw, width, height, command, bit_depth)


@functools.lru_cache(maxsize=8)
def version(binary: str) -> str:
    """First line of `ffmpeg -version`, e.g. 'ffmpeg version 7.0.2-static ...'."""
    out = run([binary, "-hide_banner", "-version"], timeout=30)
    return out.decode("utf-8", "replace").splitlines()[0].strip() if out else "unknown"


@functools.lru_cache(maxsize=8)
def compiled_encoders(binary: str) -> frozenset[str]:
    """Names of the video encoders this ffmpeg binary was built with."""
    out = run([binary, "-hide_banner", "-encoders"], timeout=30).decode("utf-8", "replace")
    names = re.findall(r"^\s*V[.A-Z]{5}\s+(\S+)", out, flags=re.MULTILINE)
    return frozenset(names)


def binary_identity(binary: str) -> str:
    """A key that changes when the binary does (for caching probe results per binary)."""
    stat = Path(binary).stat()
    return f"{Path(binary).resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
