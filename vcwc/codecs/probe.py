"""Which encoders work here: probed by encoding and decoding one small frame, cached per ffmpeg binary.

A probe runs the codec's real command on a small frame and decodes the result: a lossless mode must
return it bit-exactly, a lossy one close to it. Results are kept for the process, and successes also on
disk (JSON in $VCWC_CACHE_DIR, else $XDG_CACHE_HOME/vcwc, else ~/.cache/vcwc), keyed by the binary's
identity and the exact probe command. Failures are always probed again: they are quick (a hardware
encoder without its device fails within tens of milliseconds) and a driver or device may have appeared
since. $VCWC_PROBE_CACHE=off ignores the disk cache; =refresh probes again and rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import CodecError, FFmpegError, InputError
from . import ffmpeg
from .base import AUTO_ORDER, Codec, EncoderSettings, codec_names, get_codec

PROBE_SIZE = 64
# A lossy probe must come back at least this close (PSNR on a ramp with noise): x264, x265, aom and
# SVT-AV1 give over 32 dB even at their highest QP, a blank frame gives 11 dB.
LOSSY_PROBE_MIN_PSNR_DB = 25.0
PROBE_FORMAT = 1  # bump when the probe itself changes, to ignore older cached results
CACHE_DIR_ENV = "VCWC_CACHE_DIR"
PROBE_CACHE_ENV = "VCWC_PROBE_CACHE"
CACHE_FILE = "probe-cache.json"


@dataclass(frozen=True)
class Availability:
    codec: str
    encoder: str
    compiled: bool  # the ffmpeg build has the encoder
    works: bool  # a probe frame went through encode and decode (bit-exactly, for lossless codecs)
    reason: str  # why not, when it does not work
    problem: str = ""  # "not compiled", "missing library", "no device", "encoder error" or "bad output"
    cached: bool = False  # read from the disk cache rather than probed in this process

    def to_dict(self) -> dict:
        return asdict(self)


_checked: dict[tuple[str, str, str], Availability] = {}


def probe(codec: Codec, binary: str, *, refresh: bool = False) -> Availability:
    """Whether `codec` works with this ffmpeg binary here (see the module docstring for caching)."""
    settings = codec.probe_settings()
    size = probe_size(codec)
    job = codec.job(size, size, settings)
    signature = _signature(ffmpeg.encode_command(job, "ffmpeg"), codec)
    key = (ffmpeg.binary_identity(binary), codec.name, signature)
    mode = os.environ.get(PROBE_CACHE_ENV, "").strip().lower()
    refresh = refresh or mode == "refresh"
    if not refresh and key in _checked:
        return _checked[key]
    status = None if refresh or mode == "off" else _read_disk(key)
    if status is None:
        status = _run_probe(codec, binary, settings, size)
        if status.works and mode != "off":
            _write_disk(key, status)
    _checked[key] = status
    return status


def probe_size(codec: Codec) -> int:
    """Side of the square probe frame: large enough for the encoder's minimum, on its block grid."""
    side = max(PROBE_SIZE, codec.min_size)
    return -(-side // codec.block_size) * codec.block_size


def probe_frame(size: int) -> np.ndarray:
    """A horizontal ramp over the full 0..255 range with noise: lossless must keep every value, and a
    blank or garbled lossy output is far from it."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size)[None, :].repeat(size, axis=0)
    return np.clip(np.rint(ramp + rng.integers(-8, 9, size=(size, size))), 0, 255).astype(np.uint8)[None]


def _run_probe(codec: Codec, binary: str, settings: EncoderSettings, size: int) -> Availability:
    def failed(problem: str, reason: str, compiled: bool = True) -> Availability:
        return Availability(codec.name, codec.encoder, compiled, False, f"{problem}: {reason}", problem)

    if codec.encoder not in ffmpeg.compiled_encoders(binary):
        return failed("not compiled", f"this ffmpeg build has no {codec.encoder} encoder", compiled=False)
    frame = probe_frame(size)
    try:
        data = ffmpeg.encode(codec.job(size, size, settings), frame, binary, timeout=60)
        decoded = ffmpeg.decode(data, codec.container, size, size, binary, codec.decoder, timeout=60)
    except FFmpegError as exc:
        return failed(*explain_failure(exc.stderr, exc.returncode, str(exc)))
    if decoded.shape[0] < 1:
        return failed("bad output", "the decoder returned no frame")
    if settings.lossless:
        if not np.array_equal(decoded[0], frame[0]):
            hint = f" ({codec.lossless_failure_hint})" if codec.lossless_failure_hint else ""
            return failed("bad output", f"lossless mode did not return the probe frame bit-exactly{hint}")
    else:
        error = np.mean((decoded[0].astype(np.float64) - frame[0]) ** 2)
        psnr = 10 * np.log10(255.0**2 / error) if error > 0 else float("inf")
        if psnr < LOSSY_PROBE_MIN_PSNR_DB:
            return failed(
                "bad output",
                f"the probe frame came back at {psnr:.1f} dB PSNR (QP {settings.qp}); "
                f"a working encoder gives over {LOSSY_PROBE_MIN_PSNR_DB:.0f} dB",
            )
    return Availability(codec.name, codec.encoder, True, True, "")


# What ffmpeg prints when a hardware encoder cannot start, and what it means. Checked in order.
FAILURE_PATTERNS = [
    ("not compiled", re.compile(r"Unknown encoder '[^']+'")),
    (
        "missing library",
        re.compile(
            r"Cannot load \S+|failed to load library '[^']+'|DLL \S+ failed to open|"
            r"Could not dynamically load \S+|cannot open shared object file"
        ),
    ),
    (
        "no device",
        re.compile(
            r"No VA display found[^\n]*|Could not find a valid device|No CUDA capable devices "
            r"found|No capable devices found|No NVENC capable devices found|Error creating a "
            r"MFX session[^\n]*|Failed to create .*hardware device[^\n]*|Device creation "
            r"failed[^\n]*|No such file or directory"
        ),
    ),
]
# What a telling line means, in the user's words.
HINTS = [
    (re.compile(r"libcuda"), "the NVIDIA driver is not installed, or there is no NVIDIA GPU"),
    (re.compile(r"MFX session"), "no Intel GPU with a oneVPL/Media SDK runtime"),
    (re.compile(r"libva"), "libva (the VA-API library) is not installed"),
    (re.compile(r"No VA display"), "no VA-API driver for that device"),
    (re.compile(r"amfrt"), "AMD's AMF runtime is not installed or there is no AMD GPU"),
    (re.compile(r"Could not find a valid device"), "no V4L2 memory-to-memory encoder among /dev/video*"),
]
# Lines ffmpeg adds after any encoder failure; they explain nothing.
CONSEQUENCE_LINES = re.compile(
    r"Error while opening encoder|Error sending frames to consumers|Task finished with error code|"
    r"Terminating thread with return code|Could not open encoder before EOF|Nothing was written into output|"
    r"Conversion failed|Error parsing global options|Failed to set value|Error opening output|"
    r"Assertion .* failed|^\s*$"
)


def explain_failure(stderr: str, returncode: int | None, message: str = "") -> tuple[str, str]:
    """(problem, reason) for a failed probe: a category and ffmpeg's own most telling line(s)."""
    lines = [re.sub(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+", "", line).strip() for line in stderr.splitlines()]
    lines = [re.sub(r"^implib-gen:\s*", "", line) for line in lines if line]
    telling = [line for line in lines if not CONSEQUENCE_LINES.search(line)] or lines
    problem = "encoder error"
    for category, pattern in FAILURE_PATTERNS:
        if any(pattern.search(line) for line in telling):
            problem = category
            break
    detail = "; ".join(dict.fromkeys(telling[:2])) if telling else message.splitlines()[0] if message else "failed"
    hint = next((hint for pattern, hint in HINTS if any(pattern.search(line) for line in telling)), None)
    if hint:
        detail += f" ({hint})"
    if returncode is not None:
        detail += f" (exit code {returncode})"
    return problem, detail


def all_availability(binary: str, *, refresh: bool = False) -> list[Availability]:
    return [probe(get_codec(name), binary, refresh=refresh) for name in codec_names()]


def require(codec: Codec, binary: str) -> None:
    """Raise a clear error when the codec cannot run with this ffmpeg; never fall back to another."""
    status = probe(codec, binary)
    if not status.works:
        raise CodecError(
            f"codec {codec.name!r} ({codec.encoder}) is not usable with {binary}: {status.reason}. "
            f"`vcwc encoders` lists what works here; vcwc does not switch encoders on its own"
        )


def choose_auto(binary: str, settings: EncoderSettings) -> tuple[Codec, list[tuple[str, str]]]:
    """The first codec of AUTO_ORDER that takes these settings and works here, and why the others were passed."""
    passed = []
    for name in AUTO_ORDER:
        codec = get_codec(name)
        try:
            codec.check(settings)
        except InputError as exc:
            passed.append((name, str(exc)))
            continue
        status = probe(codec, binary)
        if status.works:
            return codec, passed
        passed.append((name, status.reason))
    details = "; ".join(f"{name}: {why}" for name, why in passed)
    raise CodecError(f"codec auto found no working encoder for these settings ({details})")


def resolve_codec(codec: str | Codec, settings: EncoderSettings, ffmpeg_path: str | None = None) -> Codec:
    """A Codec from a registered name, "auto" (probing here), or a Codec instance (e.g. a custom encoder)."""
    if isinstance(codec, Codec):
        return codec
    if codec == "auto":
        return choose_auto(ffmpeg.find_ffmpeg(ffmpeg_path), settings)[0]
    return get_codec(codec)


def cache_path() -> Path:
    base = os.environ.get(CACHE_DIR_ENV)
    if base:
        return Path(base) / CACHE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vcwc" / CACHE_FILE


def _signature(command: list[str], codec: Codec) -> str:
    text = json.dumps([PROBE_FORMAT, command, codec.container, codec.decoder])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _disk_key(key: tuple[str, str, str]) -> str:
    return "|".join(key)


def _read_disk(key) -> Availability | None:
    try:
        entry = json.loads(cache_path().read_text()).get(_disk_key(key))
    except (OSError, ValueError, AttributeError):
        return None  # no cache yet, or an unreadable one: probe again
    if not isinstance(entry, dict) or not entry.get("works"):
        return None
    return Availability(entry["codec"], entry["encoder"], True, True, "", cached=True)


def _write_disk(key, status: Availability) -> None:
    # A cache that cannot be written costs a probe next time, nothing more: never fail the caller.
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            entries = json.loads(path.read_text())
            entries = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            entries = {}
        entries[_disk_key(key)] = {**status.to_dict(), "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(temporary, path)
    except OSError:
        pass
