"""How long the commands a new user types take here, each in a fresh process (median of --repeats).

Writes results/commands/timings.md (and .json) with the machine it ran on; the README quotes it.

    python scripts/time_commands.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, RESULTS, write_results

MODEL = REPO_ROOT / "models" / "digits_resnet.safetensors"


def seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "commands")
    args = parser.parse_args()
    vcwc = [sys.executable, "-m", "vcwc"]
    with tempfile.TemporaryDirectory() as folder:
        compressed = Path(folder) / "digits.vcwc"
        subprocess.run(
            [*vcwc, "compress", str(MODEL), "-o", str(compressed), "--codec", "x264"],
            check=True,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        commands = [
            ("vcwc --version", [*vcwc, "--version"]),
            ("vcwc info FILE", [*vcwc, "info", str(compressed)]),
            ("vcwc encoders (probes cached)", [*vcwc, "encoders"]),
            (
                "vcwc compress (bundled model, lossless recipe)",
                [*vcwc, "compress", str(MODEL), "-o", str(Path(folder) / "c.vcwc"), "--force"],
            ),
            (
                "vcwc compress --recipe smallest --arch digits_resnet (bundled model)",
                [
                    *vcwc,
                    "compress",
                    str(MODEL),
                    "-o",
                    str(Path(folder) / "s.vcwc"),
                    "--force",
                    "--recipe",
                    "smallest",
                    "--arch",
                    "digits_resnet",
                ],
            ),
            (
                "vcwc decompress",
                [*vcwc, "decompress", str(compressed), "-o", str(Path(folder) / "d.safetensors"), "--force"],
            ),
            ("vcwc demo (bundled model)", [*vcwc, "demo"]),
        ]
        rows = [{"command": name, "seconds": seconds(command, args.repeats)} for name, command in commands]
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    lines = [
        f"Wall time of a fresh process, median of {args.repeats} runs; {machine}.",
        "",
        "| command | seconds |",
        "|---|---|",
    ]
    lines += [f"| `{row['command']}` | {row['seconds']:.1f} |" for row in rows]
    write_results(args.out, "timings", {"machine": machine, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
