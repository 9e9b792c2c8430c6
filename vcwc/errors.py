"""Typed errors. Each also inherits the matching built-in so callers can catch either."""


class VcwcError(Exception):
    """Base class of every error vcwc raises on purpose."""


class InputError(VcwcError, ValueError):
    """A model file, tensor or option given to vcwc is unusable."""


class FormatError(VcwcError, ValueError):
    """A .vcwc file is truncated, corrupted or of an unknown version."""


class CodecError(VcwcError, RuntimeError):
    """An encoder is unknown, missing from the ffmpeg build, or unusable here."""


class FFmpegError(VcwcError, RuntimeError):
    """ffmpeg failed, timed out, or returned something other than what was asked for."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = "",
                 returncode: int | None = None):
        self.command = command or []
        self.stderr = stderr
        self.returncode = returncode
        details = []
        if command:
            details.append("command: " + " ".join(_quote(part) for part in command))
        tail = stderr.strip().splitlines()[-8:]
        if tail:
            details.append("ffmpeg said:\n  " + "\n  ".join(tail))
        super().__init__("\n".join([message, *details]))


class IntegrityError(FormatError):
    """Decoded symbols do not match the checksum stored at compression time."""


class NNCodecError(VcwcError, RuntimeError):
    """The NNCodec baseline's worker process failed or timed out."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = ""):
        self.command = command or []
        self.stderr = stderr
        details = []
        if command:
            details.append("command: " + " ".join(_quote(part) for part in command))
        tail = stderr.strip().splitlines()[-12:]
        if tail:
            details.append("NNCodec worker said:\n  " + "\n  ".join(tail))
        super().__init__("\n".join([message, *details]))


class NNCodecUnavailable(VcwcError, RuntimeError):
    """No Python environment with NNCodec is configured (an optional baseline, so callers may skip it)."""


def _quote(part: str) -> str:
    return part if part and all(c.isalnum() or c in "-_=:./,|+" for c in part) else repr(part)
