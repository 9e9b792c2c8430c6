"""Steps per input feature (column) from the data-free sensitivity pass: is there size to gain?

The `smallest` recipe moves each tensor's step by its sensitivity (vcwc.quant.sensitivity): the mean
squared output gradient over the tensor, from random inputs. The same pass gives the squared gradients
summed over each column of a weight matrix (an input feature of a linear layer, an input channel and tap of
a convolution); a column that carries large activations (the outlier features of transformers) is more
sensitive. This tries steps within each tensor of

    step_j = step_t * (c_j / mean c)^(-strength)      (geometric mean 1 over the columns, within 4x either way)

where c_j is column j's sum, strength 1/2 is the high-rate optimum for independent errors and 1/4 a
shrunk version, against the per-tensor steps alone (strength 0), on the suite's models
(scripts/suite_models.py) with their real task measures. It is a proxy of the recipe, not the recipe:
nearest rounding on the scalar grid (no gptq, no dependent quantization, no bias correction), 10-bit
symbols (a row that would need more gets a coarser scale, as in the recipe), and size as the symbols' order-0 entropy per tensor, not a video stream. Nothing here
changes a file vcwc writes. Writes results/rate_accuracy/column_steps.json and .md; about 20 minutes here.

    python scripts/explore_column_steps.py [--models smollm2-135m all-mpnet-base-v2 mobilenet_v2]
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from common import RESULTS, write_results
from suite_models import SUITE, read_state

from vcwc.metrics import entropy_bits
from vcwc.models.build import Architecture, build_model
from vcwc.quant.inputs import driver_for
from vcwc.quant.quantize import MAX_BITS, QuantConfig, dequantize, quantize
from vcwc.quant.sensitivity import MAX_COLUMN_OCTAVES, column_factors, sensitivities, step_offsets
from vcwc.recipe import step_from_qp

STRENGTHS = (0.0, 0.25, 0.5)
LADDERS = {"smollm2-135m": (-27, -25, -23, -21), "all-mpnet-base-v2": (-26, -24, -22), "mobilenet_v2": (-28, -26, -24)}


def quantized(state, offsets, columns, step_qp: int, strength: float) -> tuple[dict, float]:
    """The state dict with every coded tensor on its grid, and the symbols' entropy in bits per weight."""
    new, bits, weights = dict(state), 0.0, 0
    for name, sums in columns.items():
        tensor = state[name]
        config = QuantConfig(bits=MAX_BITS, step=step_from_qp(step_qp + offsets.get(name, 0.0)))
        q = quantize(
            tensor.float().numpy(), config, name, columns=column_factors(sums, strength, MAX_COLUMN_OCTAVES).numpy()
        )
        bits += entropy_bits(q.symbols)
        weights += q.symbols.size
        new[name] = torch.from_numpy(dequantize(q.symbols, q.scales, columns=q.columns)).to(tensor.dtype)
    return new, bits / weights


def bits_at_bar(points: list[dict], key: str, limit: float, lower_is_better: bool) -> float | None:
    """Bits per weight where `key` crosses `limit`, interpolated linearly between the two ladder points
    either side of it (from the coarse end: the first point to meet it and the one before)."""
    meets = (lambda p: p[key] <= limit) if lower_is_better else (lambda p: p[key] >= limit)
    ordered = sorted(points, key=lambda p: p["bits_per_weight"])
    for coarse, fine in zip(ordered, ordered[1:]):
        if not meets(coarse) and meets(fine):
            share = (fine[key] - limit) / (fine[key] - coarse[key])
            return fine["bits_per_weight"] - share * (fine["bits_per_weight"] - coarse["bits_per_weight"])
    return None


def explore(name: str) -> list[dict]:
    model = SUITE[name]
    state = read_state(model.path())
    coded = [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2 and t.numel()]
    module = build_model(Architecture(name, model.build), state).float()
    columns: dict[str, torch.Tensor] = {}
    measured = sensitivities(module, coded, driver_for(module, model.input_shape), columns=columns)
    offsets = step_offsets(measured, {n: state[n].numel() for n in coded})
    reference = model.measure(module)
    rows = []
    for strength in STRENGTHS:
        for step_qp in LADDERS[name]:
            weights, bits = quantized(state, offsets, columns, step_qp, strength)
            result = model.measure(model.load(weights), reference)
            row = {"model": name, "strength": strength, "step_qp": step_qp, "bits_per_weight": bits}
            row.update({k: v for k, v in result.items() if isinstance(v, float)})
            row["original"] = {k: v for k, v in reference.items() if isinstance(v, float)}
            quality = row.get(model.quality, math.nan)
            print(
                f"{name} strength {strength} QP {step_qp}: {bits:.3f} bits, {model.quality} {quality:.4f}",
                file=sys.stderr,
            )
            rows.append(row)
    return rows


def bar_of(name: str, original: dict) -> tuple[str, float, bool]:
    """The suite's bar as (quality key, limit, lower is better)."""
    if name == "mobilenet_v2":
        return "top1", original["top1"] - 1.0, False
    if SUITE[name].quality == "perplexity":
        return "perplexity_change", 2.0, True
    return "mean_cosine", 0.99, False


def markdown(rows: list[dict]) -> str:
    lines = [
        "Column steps from the sensitivity pass (`python scripts/explore_column_steps.py`): each tensor's step "
        "moved by its sensitivity as the `smallest` recipe does, then within the tensor by column sensitivity "
        "c_j as (c_j / mean c)^-strength (strength 0: per-tensor steps only). A proxy of the recipe: nearest "
        "rounding, no gptq, dependent quantization or bias correction, size as order-0 entropy of the symbols. "
        "Bits at the bar are interpolated between the two ladder points either side of it.",
        "",
        "| model | bar | strength | bits/weight at the bar | vs strength 0 |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["model"] for row in rows):
        ours = [row for row in rows if row["model"] == name]
        key, limit, lower_is_better = bar_of(name, ours[0]["original"])
        at_bar = {
            strength: bits_at_bar([r for r in ours if r["strength"] == strength], key, limit, lower_is_better)
            for strength in STRENGTHS
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
    write_results(RESULTS / "rate_accuracy", "column_steps", rows, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
