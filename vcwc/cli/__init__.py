"""Command line: a thin layer over the library, one module per command. `main(argv)` returns the exit code.

Each command module has `add_parser(commands)` and `run(args)`; `run` imports what it needs, so commands
that never touch a model (`info`, `encoders`) start without torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import VcwcError
from ..version import __version__
from . import compress, decompress, demo, encoders, evaluate, extract, info, report, sweep

COMMANDS = (compress, decompress, info, extract, evaluate, demo, sweep, report, encoders)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcwc", description="Compress neural-network weights with video codecs.")
    parser.add_argument("--version", action="version", version=f"vcwc {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except VcwcError as exc:
        print(f"vcwc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vcwc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`vcwc info FILE | head`): stop quietly, and keep Python from complaining
        # again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
