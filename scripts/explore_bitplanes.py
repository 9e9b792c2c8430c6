"""Where the video codecs lose bits on wide symbols, and what splitting off the low bits would win
(docs/rate-accuracy.md; a direction measured, not built).

At the fine steps that transformers need (step QP -26 to -22 on SmolLM2), the fixed-step symbols spread
over +-200 and more, and x264's lossless coding lands about 10% above their order-0 entropy: H.264 codes
levels above 14 with Exp-Golomb bins that do not adapt. This measures, on every coded tensor of SmolLM2-135M
(scripts/prepare_models.py) at a few step QPs: the entropy; x264, x265 and SVT-AV1 lossless on the symbols
(one step for every tensor, nearest rounding, 10-bit symbols); and x264 on the
symbols shifted right by b bits, plus b raw bits per weight for the bits shifted out (a bit-plane split).

Writes results/rate_accuracy/bitplanes.json and bitplanes.md.

    python scripts/explore_bitplanes.py [--qps -26 -22 -18] [--shifts 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from common import RESULTS, write_results
from suite_models import SUITE, read_state

import vcwc
from vcwc.metrics import entropy_bits
from vcwc.quant.quantize import QuantConfig, quantize
from vcwc.recipe import step_from_qp

CODECS = ("x264", "x265", "svtav1")


def video_bits_per_weight(tensors: dict[str, torch.Tensor], codec: str) -> float:
    """Lossless video on tensors that already hold whole numbers: a step of 1 makes them the symbols."""
    recipe = vcwc.RECIPES["smallest"].with_changes(
        step_qp=0, codec=codec, allocation="uniform", rounding="nearest", low_bits="off"
    )
    return vcwc.compress(tensors, recipe).size_report().bits_per_weight


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qps", type=int, nargs="+", default=[-26, -22, -18])
    parser.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    model = SUITE["smollm2-135m"]
    state = read_state(model.path())
    names = [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2]
    rows = []
    for qp in args.qps:
        symbols = {
            n: quantize(state[n].float().numpy(), QuantConfig(bits=10, step=step_from_qp(qp)), n).symbols.astype(
                np.int32
            )
            for n in names
        }
        count = sum(s.size for s in symbols.values())
        row = {
            "step_qp": qp,
            "entropy": sum(entropy_bits(s) for s in symbols.values()) / count,
            "symbol_std": float(
                np.sqrt(sum(float((s.astype(np.float64) ** 2).sum()) for s in symbols.values()) / count)
            ),
        }
        whole = {n: torch.from_numpy(s.astype(np.float32)) for n, s in symbols.items()}
        for codec in CODECS:
            row[codec] = video_bits_per_weight(whole, codec)
        for shift in args.shifts:
            high = {n: torch.from_numpy((s >> shift).astype(np.float32)) for n, s in symbols.items()}
            row[f"x264 high + {shift} raw bits"] = video_bits_per_weight(high, "x264") + shift
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = RESULTS / "rate_accuracy"
    columns = [k for k in rows[0] if k not in ("step_qp", "entropy", "symbol_std")]
    lines = [
        f"SmolLM2-135M, every coded tensor ({len(names)}), one step for every tensor, 10-bit symbols; bits per "
        "weight (scales aside), and each method against the symbols' order-0 entropy. "
        "`x264 high + b raw bits`: the symbols shifted right by b bits coded by x264, the b low bits stored raw.",
        "",
        "| step QP | symbol RMS | entropy | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = " | ".join(f"{row[c]:.3f} ({row[c] / row['entropy'] - 1:+.1%})" for c in columns)
        lines.append(f"| {row['step_qp']} | {row['symbol_std']:.1f} | {row['entropy']:.3f} | {cells} |")
    write_results(out, "bitplanes", rows, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
