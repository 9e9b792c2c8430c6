"""Steps across tensors from the weights alone: is there a rule for models given without an architecture?

Without the architecture there is no sensitivity pass, and `smallest` gives every tensor the same step. A
tensor's row norm g_t (the RMS over its rows of each row's L2 norm, rms(w) * sqrt(fan-in)) is the gain of
its layer on an input of unit features: where a normalization follows, or the error that matters is the
one relative to the layer's output, the output error of a step scales as step / g_t. This tries

    step_t = step * (g_t / geometric mean of g)^strength

(centred and clamped as the sensitivity offsets are) for strength 0 (the recipe now), 1/2 and 1, on the
suite's models (scripts/suite_models.py) with their real task measures. A proxy of the recipe, as in
scripts/explore_column_steps.py: nearest rounding on the scalar grid, 10-bit symbols, size as the symbols'
order-0 entropy per tensor. Nothing here changes a file vcwc writes. About 25 minutes.

    python scripts/explore_weight_only_steps.py [--models smollm2-135m all-mpnet-base-v2 mobilenet_v2]
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from common import RESULTS, write_results
from explore_column_steps import bar_of, bits_at_bar
from suite_models import SUITE, read_state

from vcwc.metrics import entropy_bits
from vcwc.quant.quantize import MAX_BITS, QuantConfig, dequantize, quantize
from vcwc.quant.sensitivity import step_offsets
from vcwc.recipe import step_from_qp

STRENGTHS = (0.0, 0.5, 1.0)
LADDERS = {
    "smollm2-135m": (-30, -28, -26, -24),
    "all-mpnet-base-v2": (-32, -30, -28, -26, -24),
    "mobilenet_v2": (-30, -28, -26, -24, -22),
}


def row_norm(tensor: torch.Tensor) -> float:
    matrix = tensor.float().reshape(tensor.shape[0], -1)
    return float(matrix.pow(2).mean().sqrt()) * math.sqrt(matrix.shape[1])


def quantized(state: dict, offsets: dict[str, float], step_qp: int) -> tuple[dict, float]:
    """The state dict with every coded tensor on its grid, and the symbols' entropy in bits per weight."""
    new, bits, weights = dict(state), 0.0, 0
    for name, offset in offsets.items():
        config = QuantConfig(bits=MAX_BITS, step=step_from_qp(step_qp + offset))
        q = quantize(state[name].float().numpy(), config, name)
        bits += entropy_bits(q.symbols)
        weights += q.symbols.size
        new[name] = torch.from_numpy(dequantize(q.symbols, q.scales)).to(state[name].dtype)
    return new, bits / weights


def explore(name: str) -> list[dict]:
    model = SUITE[name]
    state = read_state(model.path())
    coded = [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2 and t.numel()]
    sizes = {n: state[n].numel() for n in coded}
    gains = {n: row_norm(state[n]) for n in coded}
    reference = model.measure(model.load(state))
    rows = []
    for strength in STRENGTHS:
        # step_offsets turns v into the offset of v^(-1/2): v = g^(-2 strength) gives steps g^strength
        offsets = step_offsets({n: g ** (-2 * strength) for n, g in gains.items()}, sizes)
        for step_qp in LADDERS[name]:
            weights, bits = quantized(state, offsets, step_qp)
            result = model.measure(model.load(weights), reference)
            row = {"model": name, "strength": strength, "step_qp": step_qp, "bits_per_weight": bits}
            row.update({k: v for k, v in result.items() if isinstance(v, float)})
            row["original"] = {k: v for k, v in reference.items() if isinstance(v, float)}
            print(
                f"{name} strength {strength} QP {step_qp}: {bits:.3f} bits, "
                f"{model.quality} {row.get(model.quality, math.nan):.4f}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "Steps across tensors from the weights alone (`python scripts/explore_weight_only_steps.py`): each "
        "tensor's step times (g_t / geometric mean g)^strength, g_t its row norm (rms(w) * sqrt(fan-in)); "
        "strength 0 is what `smallest` does without the architecture. A proxy of the recipe: nearest rounding, "
        "size as order-0 entropy of the symbols. Bits at the bar are interpolated between the two ladder "
        "points either side of it.",
        "",
        "| model | bar | strength | bits/weight at the bar | vs strength 0 |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["model"] for row in rows):
        ours = [row for row in rows if row["model"] == name]
        key, limit, lower_is_better = bar_of(name, ours[0]["original"])
        at_bar = {
            s: bits_at_bar([r for r in ours if r["strength"] == s], key, limit, lower_is_better) for s in STRENGTHS
        }
        for strength, bits in at_bar.items():
            ratio = f"{bits / at_bar[0.0]:.3f}x" if bits and at_bar[0.0] else "-"
            shown = f"{bits:.3f}" if bits else "- (not crossed in the ladder)"
            lines.append(f"| {name} | {SUITE[name].bar_text} | {strength} | {shown} | {ratio} |")
    lines += ["", "Every point:", "", "| model | strength | step QP | bits/weight | quality |", "|---|---|---|---|---|"]
    keys = ("top1", "agreement", "mean_cosine", "min_cosine", "perplexity", "perplexity_change")
    for row in rows:
        quality = ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
        lines.append(
            f"| {row['model']} | {row['strength']} | {row['step_qp']} | {row['bits_per_weight']:.3f} | {quality} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LADDERS), choices=list(LADDERS))
    args = parser.parse_args()
    rows = [row for name in args.models for row in explore(name)]
    text = markdown(rows)
    write_results(RESULTS / "rate_accuracy", "weight_only_steps", rows, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
