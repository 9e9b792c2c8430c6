"""x264 presets on the `smallest` recipe's lossless frames of real models: file size and time (a direction
measured, not built).

The named recipes encode with x264's preset medium. Lossless and intra-only, the presets differ only in
how they choose each block's prediction and partition, so the symbols come back the same and only the
stream's size and the encoder's time change. This compresses each generality-suite model that is prepared
(scripts/prepare_models.py) with `--recipe smallest` at the step QP where it meets its bar
(results/generality), with its architecture, once per preset, and reports the file's bits per weight, the
encode and decode seconds (warm process; noisy where other jobs share the cores).

Writes results/rate_accuracy/presets.json and presets.md.

    python scripts/explore_presets.py [--presets medium faster superfast]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from common import RESULTS, write_results
from generality import smallest_meeting
from suite_models import SUITE

import vcwc


def bar_step_qps() -> dict[str, int]:
    """The step QP of the smallest `smallest` file meeting each model's bar, from results/generality."""
    records = json.loads((RESULTS / "generality" / "records.json").read_text())
    found = {name: smallest_meeting([r for r in records if r["model"] == name], "vcwc") for name in SUITE}
    return {name: record["setting"] for name, record in found.items() if record is not None}


def measure(name: str, step_qp: int, preset: str) -> dict:
    model = SUITE[name]
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=step_qp, preset=preset)
    start = time.perf_counter()
    compressed = vcwc.compress(str(model.path()), recipe, arch=model.arch, input_shape=model.input_shape)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    vcwc.decompress(compressed.data)
    report = compressed.size_report()
    return {
        "model": name,
        "step_qp": step_qp,
        "preset": preset,
        "bits_per_weight": report.bits_per_weight,
        "file_bytes": report.file_bytes,
        "encode_seconds": encode_seconds,
        "decode_seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["medium", "faster", "superfast"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name, step_qp in bar_step_qps().items():
        if not SUITE[name].path().exists():
            print(f"{name}: not prepared (scripts/prepare_models.py), left out", file=sys.stderr)
            continue
        for preset in args.presets:
            rows.append(measure(name, step_qp, preset))
            print(f"{name} {preset}: {rows[-1]['bits_per_weight']:.4f} bpw", file=sys.stderr)
    text = markdown(rows, args.presets[0])
    write_results(RESULTS / "rate_accuracy", "presets", rows, text)
    print(text)
    return 0


def markdown(rows: list[dict], baseline: str) -> str:
    lines = [
        f"`--recipe smallest` at each model's bar step QP, with its architecture, per x264 preset "
        f"(`python scripts/explore_presets.py`); size against preset {baseline}. Encode and decode seconds "
        "in a warm process, whole pipeline (the pass of inputs included).",
        "",
        "| model | step QP | preset | bits/weight | size vs " + baseline + " | encode s | decode s |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {row["model"]: row["file_bytes"] for row in rows if row["preset"] == baseline}
    for row in rows:
        change = 100 * (row["file_bytes"] / base[row["model"]] - 1) if row["model"] in base else float("nan")
        lines.append(
            f"| {row['model']} | {row['step_qp']} | {row['preset']} | {row['bits_per_weight']:.4f} | {change:+.2f}% | "
            f"{row['encode_seconds']:.1f} | {row['decode_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
