"""How many low bits to store raw: file size against decoding speed (a direction measured, not built).

`low_bits` "auto" keeps b = floor(log2(symbol RMS)) - 1 low bits of a tensor's symbols raw, leaving the
video codec a high part of 2 to 4 levels of RMS (vcwc.format.low_bits). Decoding is bound by x264's CABAC,
whose work follows the bins it codes, so each bit moved out of the video makes decoding faster; where that
bit is close to uniform it also costs almost nothing in size. This compares the rule in the library with a
greedy one: from the library's b, one more bit is stored raw while doing so adds less than EPSILON bits per
weight to the symbols' order-0 entropy (b + H(symbols >> b), measured on up to 2^20 symbols).

Models: bench_speed's ResNet-50 with random weights (seed 0) at its step QP -25, timed (decoding, median of
--repeats), against the NNCodec decoding time in results/speed/speed.json where present; and the CIFAR-10
ResNet-56 (shared data) at step QP -22 and lossless int8, size only. One step for every tensor and nearest
rounding: the symbols' spread, not how they were chosen, decides the split.

Writes results/rate_accuracy/low_bits.json and low_bits.md.

    python scripts/explore_low_bits.py [--epsilons 0.03 0.06 0.08 0.1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from common import RESULTS, shared_data_dir, write_results

import vcwc
from vcwc.format import low_bits
from vcwc.io import from_checkpoint, load_model
from vcwc.metrics import entropy_bits
from vcwc.models.build import build_model

LIBRARY_RULE = low_bits.low_bits_for
SAMPLE = 1 << 20
BENCH_NNCODEC = "NNCodec"


def greedy_rule(epsilon: float):
    """The library's b, then one more raw bit while it costs less than `epsilon` bits per weight of entropy."""

    def low_bits_for(symbols: np.ndarray) -> int:
        bits = LIBRARY_RULE(symbols)
        if symbols.size == 0:
            return bits
        flat = symbols.reshape(-1)
        sample = flat[:: max(1, flat.size // SAMPLE)].astype(np.int64)
        cost = bits + entropy_bits(sample >> bits) / sample.size
        while bits < low_bits.MAX_LOW_BITS:
            wider = bits + 1 + entropy_bits(sample >> (bits + 1)) / sample.size
            if wider - cost >= epsilon:
                break
            bits, cost = bits + 1, wider
        return bits

    return low_bits_for


def measure(loaded, recipe, rule, repeats: int) -> dict:
    low_bits.low_bits_for = rule  # the encoder reads the rule through the module
    try:
        compressed = vcwc.compress(loaded, recipe)
    finally:
        low_bits.low_bits_for = LIBRARY_RULE
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vcwc.decompress(compressed.data)
        times.append(time.perf_counter() - start)
    return {"bits_per_weight": compressed.size_report().bits_per_weight, "decode_seconds": statistics.median(times)}


def nncodec_decode_seconds() -> float | None:
    path = RESULTS / "speed" / "speed.json"
    if not path.exists():
        return None
    rows = json.loads(path.read_text())["rows"]
    return next(
        (r["decode_seconds"] for r in rows if r["method"].startswith(BENCH_NNCODEC) and "ResNet-50" in r["model"]), None
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.03, 0.06, 0.08, 0.1])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    fixed = vcwc.RECIPES["smallest"].with_changes(allocation="uniform", rounding="nearest", bias_correction="off")
    cases = [("ResNet-50 (random weights)", from_checkpoint(build_model("resnet50").state_dict()), -25, args.repeats)]
    cifar = shared_data_dir() / "cifar10" / "resnet56-4bfd9763.th"
    if cifar.exists():
        cases.append(("ResNet-56 (CIFAR-10)", load_model(cifar), -22, 1))
        cases.append(("ResNet-56 (CIFAR-10)", load_model(cifar), None, 1))
    else:
        print(f"{cifar} not found: ResNet-56 left out", file=sys.stderr)
    rules = [("library", LIBRARY_RULE)] + [(f"greedy {e}", greedy_rule(e)) for e in args.epsilons]
    nncodec = nncodec_decode_seconds()
    rows = []
    for model, loaded, step_qp, repeats in cases:
        recipe = fixed.with_changes(step_qp=step_qp) if step_qp is not None else vcwc.RECIPES["lossless"]
        for label, rule in rules:
            row = {"model": model, "step_qp": step_qp, "rule": label, **measure(loaded, recipe, rule, repeats)}
            row["timed"] = repeats > 1
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    text = markdown(rows, nncodec)
    write_results(RESULTS / "rate_accuracy", "low_bits", {"nncodec_decode_seconds": nncodec, "rows": rows}, text)
    print(text)
    return 0


def markdown(rows: list[dict], nncodec: float | None) -> str:
    lines = [
        "Low bits stored raw: the library's rule (b = floor(log2 RMS) - 1) against a greedy one (one more raw "
        "bit while it adds less than epsilon bits per weight of entropy). One step for every tensor, nearest "
        "rounding, x264 lossless; decoding timed on ResNet-50 only"
        + (f", against NNCodec's {nncodec:.3f} s (results/speed)." if nncodec else "."),
        "",
        "| model | step QP | rule | bits/weight | size vs library | decode s | decode vs NNCodec |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {}
    for row in rows:
        key = (row["model"], row["step_qp"])
        base.setdefault(key, row["bits_per_weight"])
        change = 100 * (row["bits_per_weight"] / base[key] - 1)
        decode = f"{row['decode_seconds']:.3f}" if row["timed"] else "-"
        speed = f"{nncodec / row['decode_seconds']:.2f}x" if row["timed"] and nncodec else "-"
        step = row["step_qp"] if row["step_qp"] is not None else "lossless int8"
        lines.append(
            f"| {row['model']} | {step} | {row['rule']} | {row['bits_per_weight']:.4f} | {change:+.2f}% | {decode} | {speed} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
