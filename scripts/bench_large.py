"""Memory and speed on a checkpoint of a billion parameters: a synthetic Llama-style decoder (random bf16
weights with TinyLlama-1.1B's shapes, 2.2 GB, sharded), compressed and decompressed by the command line.

For each run: wall time and the peak resident memory of the vcwc process (file-backed pages included;
polled with psutil; ffmpeg's own processes are reported apart). Runs: the lossless recipe with -j 1 and
-j 2 (the throughput scaling and the bit-exact round trip: every tensor's symbols are checked against
their CRC-32 on decoding), and the same model with half the layers (peak memory should grow with the
largest tensor, not with the model). Writes results/large/large.json and large.md.

    python scripts/bench_large.py [--folder /tmp/vcwc-large] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import psutil
from common import RESULTS, run_measured, write_results

from vcwc.bench.synthetic import DECODER_1B, write_decoder
from vcwc.recipe import RECIPES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where the synthetic checkpoints go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints and files afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS / "large")
    args = parser.parse_args()
    root = args.folder or Path(tempfile.mkdtemp(prefix="vcwc-large-"))
    vcwc = [sys.executable, "-m", "vcwc"]
    models = {"1.1B (22 layers)": DECODER_1B, "0.6B (11 layers)": replace(DECODER_1B, layers=11)}
    rows = []
    try:
        for label, shape in models.items():
            folder = root / label.split()[0]
            if not (folder / "model.safetensors.index.json").exists():
                print(f"writing {label} to {folder}", file=sys.stderr, flush=True)
                write_decoder(folder, shape)
            size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            largest = max(4 * math.prod(s) for _, s in shape.tensors())
            for jobs in (2, 1) if label.startswith("1.1B") else (2,):
                compressed = root / f"{folder.name}-j{jobs}.vcwc"
                restored = root / f"{folder.name}-j{jobs}-restored"
                encode = run_measured(
                    [
                        *vcwc,
                        "compress",
                        str(folder),
                        "-o",
                        str(compressed),
                        "--recipe",
                        "lossless",
                        "-j",
                        str(jobs),
                        "--force",
                    ]
                )
                decode = run_measured(
                    [*vcwc, "decompress", str(compressed), "-o", f"{restored}/", "-j", str(jobs), "--force"]
                )
                row = {
                    "model": label,
                    "parameters": shape.parameters,
                    "checkpoint_bytes": size,
                    "largest_tensor_float32_bytes": largest,
                    "jobs": jobs,
                    "file_bytes": compressed.stat().st_size,
                    "encode": encode,
                    "decode": decode,
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                shutil.rmtree(restored)
                compressed.unlink()
    finally:
        if not args.keep and args.folder is None:
            shutil.rmtree(root, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB"
    lines = [
        f"Synthetic decoder checkpoints (random bf16, TinyLlama-1.1B shapes), `--recipe lossless` "
        f"({RECIPES['lossless'].describe()}), run as `vcwc compress DIR` and `vcwc decompress FILE -o DIR/`; {machine}. "
        "Peak RSS of the vcwc process (file-backed pages included); ffmpeg's processes apart.",
        "",
        "| model | parameters | jobs | encode s | encode M weights/s | encode peak RSS | decode s | "
        "decode M weights/s | decode peak RSS | ffmpeg peak RSS | bits/weight |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gib = 2**30
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['jobs']} | {r['encode']['seconds']:.0f} | "
            f"{r['parameters'] / r['encode']['seconds'] / 1e6:.2f} | "
            f"{r['encode']['peak_rss_bytes'] / gib:.2f} GiB | {r['decode']['seconds']:.0f} | "
            f"{r['parameters'] / r['decode']['seconds'] / 1e6:.2f} | "
            f"{r['decode']['peak_rss_bytes'] / gib:.2f} GiB | "
            f"{max(r['encode']['ffmpeg_peak_rss_bytes'], r['decode']['ffmpeg_peak_rss_bytes']) / gib:.2f} GiB | "
            f"{8 * r['file_bytes'] / r['parameters']:.3f} |"
        )
    one = {r["jobs"]: r for r in rows if r["model"].startswith("1.1B")}
    if 1 in one and 2 in one:
        lines += [
            "",
            f"-j 2 against -j 1 on the 1.1B model: encode {one[1]['encode']['seconds'] / one[2]['encode']['seconds']:.2f}x, "
            f"decode {one[1]['decode']['seconds'] / one[2]['decode']['seconds']:.2f}x as fast.",
        ]
    write_results(args.out, "large", {"machine": machine, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
