"""`vcwc report DIR`: rebuild a sweep's tables and plots from its JSON records."""

from __future__ import annotations

from pathlib import Path


def add_parser(commands) -> None:
    p = commands.add_parser("report", help="rebuild a sweep's tables and plots from its JSON records")
    p.add_argument("out", help="the sweep folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..bench.sweep_report import write_report

    paths = write_report(Path(args.out))
    print("\n".join(str(path) for path in paths.values()))
    return 0
