"""What the commands share: common options, tables, warnings on stderr, and number parsing."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from contextlib import contextmanager

from ..errors import InputError, VcwcWarning


def add_ffmpeg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: $VCWC_FFMPEG, else imageio-ffmpeg's)")


def add_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-j",
        "--jobs",
        "--workers",
        dest="jobs",
        type=int,
        metavar="N",
        help=f"encode or decode N frames and tensors at once (default: all {os.cpu_count()} cores); the "
        f"output is the same for any N",
    )


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")


def add_json(p: argparse.ArgumentParser, what: str = "machine-readable output on stdout") -> None:
    p.add_argument("--json", action="store_true", help=what)


def table(header, rows) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def snr_text(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    return "exact" if math.isinf(value) and value > 0 else f"{value:.1f}"


def split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def whole_number(option: str, value: str, also: str = "") -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{option}: {value!r} is not a whole number{also}") from None


def shape(option: str, text: str | None) -> tuple[int, ...] | None:
    """`3,224,224` -> (3, 224, 224)."""
    if text is None:
        return None
    values = tuple(whole_number(option, part) for part in split(text))
    if not values or any(v < 1 for v in values):
        raise InputError(f"{option}: expected positive sizes separated by commas, e.g. 3,224,224; got {text!r}")
    return values


def refuse_overwrite(path: str, force: bool) -> None:
    """Stop before any work if the output exists (a file, or a folder with anything in it) and --force is not given."""
    from pathlib import Path

    target = Path(path)
    if force or not target.exists():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    raise InputError(f"output {path!r} exists; pass --force to overwrite it")


def _json_ready(value):
    """`value` with every non-finite float as null: JSON has no NaN or infinity, and strict parsers (jq,
    JavaScript) reject Python's spelling of them (a file with no coded weights has no bits per weight)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def print_json(value, default=None) -> None:
    """The one JSON object a command's --json prints on stdout (`default` as json.dumps takes it)."""
    print(json.dumps(_json_ready(value), indent=2, allow_nan=False, default=default))


def size_against_original(ratio: float, digits: int = 1) -> str:
    """'4.3x smaller', or where the file came out larger (tiny models: the header dominates), '1.28x larger'."""
    return f"{ratio:.{digits}f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"


def bits_per_weight_text(report) -> str:
    if not report.coded_weights:
        return "no coded weights (no floating-point tensor of two or more dimensions)"
    return f"{report.coded_weights:,} coded weights at {report.bits_per_weight:.3f} bits/weight"


def say(message: str) -> None:
    print(f"vcwc: {message}", file=sys.stderr)


@contextmanager
def reported_warnings(collected: list[str]):
    """Print vcwc's warnings on stderr as they come, and collect them (for --json)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", VcwcWarning)
        try:
            yield collected
        finally:
            for warning in seen:
                if issubclass(warning.category, VcwcWarning):
                    message = str(warning.message)
                    if message not in collected:
                        collected.append(message)
                        say(f"warning: {message}")
