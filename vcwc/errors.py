"""Typed errors. Each also inherits the matching built-in so callers can catch either.

Messages name the file, tensor or setting at fault in the library's own terms (`qp=`, `step_qp=`); the
command line adds its flag names where they differ.
"""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message, at most `limit` characters ("" for none): what a one-line
    error quotes of a failure in someone else's code."""
    text = str(exc)
    line = text.splitlines()[0] if text else ""
    return line[:limit] if limit else line


class VcwcError(Exception):
    """Base class of every error vcwc raises on purpose."""


class InputError(VcwcError, ValueError):
    """A model file, tensor, recipe or option given to vcwc is unusable."""


class FormatError(VcwcError, ValueError):
    """A .vcwc file is truncated, corrupted, inconsistent or of an unknown version."""


class CodecError(VcwcError, RuntimeError):
    """An encoder is unknown, missing from the ffmpeg build, or unusable here."""


class FFmpegError(VcwcError, RuntimeError):
    """ffmpeg failed, timed out, or returned something other than what was asked for."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = "", returncode: int | None = None):
        self.command = command or []
        self.stderr = stderr
        self.returncode = returncode
        super().__init__(_with_details(message, command, stderr, "ffmpeg said", 8))


class IntegrityError(FormatError):
    """Decoded symbols do not match the checksum stored at compression time."""


class VcwcWarning(UserWarning):
    """Something in a result the user should know of: a coded tensor with little of its signal left, or
    non-finite values stored as they came. The command line prints these on stderr and in --json."""


class NNCodecError(VcwcError, RuntimeError):
    """The NNCodec baseline's worker process failed or timed out."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = ""):
        self.command = command or []
        self.stderr = stderr
        super().__init__(_with_details(message, command, stderr, "NNCodec worker said", 12))


class NNCodecUnavailable(VcwcError, RuntimeError):
    """No Python environment with NNCodec is configured (an optional baseline, so callers may skip it)."""


def _with_details(message: str, command: list[str] | None, stderr: str, speaker: str, lines: int) -> str:
    details = []
    if command:
        details.append("command: " + " ".join(_quote(part) for part in command))
    tail = stderr.strip().splitlines()[-lines:]
    if tail:
        details.append(f"{speaker}:\n  " + "\n  ".join(tail))
    return "\n".join([message, *details])


def _quote(part: str) -> str:
    return part if part and all(c.isalnum() or c in "-_=:./,|+" for c in part) else repr(part)
