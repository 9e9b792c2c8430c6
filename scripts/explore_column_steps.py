"""Steps within and across tensors from the data-free sensitivity pass: is there size to gain?

The `smallest` recipe moves each tensor's step by its sensitivity (vcwc.quant.sensitivity): the mean
squared output gradient over the tensor, from random inputs, as s_t^(-tensor strength) with strength 1/2,
the high-rate optimum for independent errors. The same pass gives the squared gradients summed over each
column of a weight matrix (an input feature of a linear layer, an input channel and tap of a convolution)
and over each row (an output channel); a column that carries large activations (the outlier features of
transformers) is more sensitive. This tries steps within each tensor of

    step_ij = step_t * (c_j / mean c)^(-strength) * (r_i / mean r)^(-row strength)

(each factor of geometric mean 1, within 4x either way), where c_j is column j's sum and r_i row i's, on the
suite's models (scripts/suite_models.py) with their real task measures, varying one strength at a time
around the recipe's (tensor 1/2, columns 1/4, rows 0):
  --vary columns: column strength 0 (per-tensor steps alone), 1/4 and 1/2 (column_steps.json and .md)
  --vary rows: row strength 0, 1/4 and 1/2 (row_steps.json and .md)
  --vary tensors: tensor strength 1/4, 1/2 and 3/4 (tensor_steps.json and .md)
It is a proxy of the recipe, not the recipe: nearest rounding on the scalar grid (no gptq, no dependent
quantization, no bias correction), 10-bit symbols (a row that would need more gets a coarser scale, as in
the recipe), and size as the symbols' order-0 entropy per tensor, not a video stream; row factors would be
per-row scales, whose cost (a few bits a row on the eighth-octave grid) is not counted. Nothing here
changes a file vcwc writes. About 20-25 minutes for each --vary here.

    python scripts/explore_column_steps.py [--vary columns] [--models smollm2-135m all-mpnet-base-v2 mobilenet_v2]
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
from vcwc.quant.sensitivity import COLUMN_STRENGTH, MAX_COLUMN_OCTAVES, column_factors, sensitivities, step_offsets
from vcwc.recipe import step_from_qp

# (tensor strength, column strength, row strength); the recipe's is (0.5, COLUMN_STRENGTH, 0.0)
RECIPE = (0.5, COLUMN_STRENGTH, 0.0)
VARIATIONS = {
    "columns": [(0.5, strength, 0.0) for strength in (0.0, 0.25, 0.5)],
    "rows": [(0.5, COLUMN_STRENGTH, strength) for strength in (0.0, 0.25, 0.5)],
    "tensors": [(strength, COLUMN_STRENGTH, 0.0) for strength in (0.25, 0.5, 0.75)],
}
LADDERS = {"smollm2-135m": (-27, -25, -23, -21), "all-mpnet-base-v2": (-26, -24, -22), "mobilenet_v2": (-28, -26, -24)}


def quantized(state, offsets, columns, rows, step_qp: int, strength: float, row_strength: float) -> tuple[dict, float]:
    """The state dict with every coded tensor on its grid, and the symbols' entropy in bits per weight.
    Row factors divide the rows before quantization and multiply them back after, as per-row scales
    would (their cost, a few bits per row on the eighth-octave grid, is not counted)."""
    new, bits, weights = dict(state), 0.0, 0
    for name, sums in columns.items():
        tensor = state[name].float()
        config = QuantConfig(bits=MAX_BITS, step=step_from_qp(step_qp + offsets.get(name, 0.0)))
        factors = column_factors(rows[name], row_strength, MAX_COLUMN_OCTAVES) if row_strength else None
        values = tensor if factors is None else tensor / factors.reshape(-1, *[1] * (tensor.dim() - 1))
        q = quantize(values.numpy(), config, name, columns=column_factors(sums, strength, MAX_COLUMN_OCTAVES).numpy())
        bits += entropy_bits(q.symbols)
        weights += q.symbols.size
        restored = torch.from_numpy(dequantize(q.symbols, q.scales, columns=q.columns))
        if factors is not None:
            restored = restored * factors.reshape(-1, *[1] * (tensor.dim() - 1))
        new[name] = restored.to(state[name].dtype)
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


def explore(name: str, configurations: list[tuple[float, float, float]]) -> list[dict]:
    model = SUITE[name]
    state = read_state(model.path())
    coded = [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2 and t.numel()]
    module = build_model(Architecture(name, model.build), state).float()
    columns: dict[str, torch.Tensor] = {}
    row_sums: dict[str, torch.Tensor] = {}
    measured = sensitivities(module, coded, driver_for(module, model.input_shape), columns=columns, rows=row_sums)
    sizes = {n: state[n].numel() for n in coded}
    reference = model.measure(module)
    rows = []
    for tensor_strength, strength, row_strength in configurations:
        # step_offsets is s_t^(-1/2) in step QPs; another strength is a power of the sensitivities
        offsets = step_offsets({n: value ** (2 * tensor_strength) for n, value in measured.items()}, sizes)
        for step_qp in LADDERS[name]:
            weights, bits = quantized(state, offsets, columns, row_sums, step_qp, strength, row_strength)
            result = model.measure(model.load(weights), reference)
            row = {"model": name, "strength": strength, "step_qp": step_qp, "bits_per_weight": bits}
            if row_strength:
                row["row_strength"] = row_strength
            if tensor_strength != RECIPE[0]:
                row["tensor_strength"] = tensor_strength
            row.update({k: v for k, v in result.items() if isinstance(v, float)})
            row["original"] = {k: v for k, v in reference.items() if isinstance(v, float)}
            quality = row.get(model.quality, math.nan)
            print(
                f"{name} strengths {tensor_strength}/{strength}/{row_strength} QP {step_qp}: {bits:.3f} bits, "
                f"{model.quality} {quality:.4f}",
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


def markdown(rows: list[dict], configurations: list[tuple[float, float, float]]) -> str:
    lines = [
        "Steps from the sensitivity pass (`python scripts/explore_column_steps.py`): each tensor's step moved "
        "by its sensitivity s_t as s_t^-tensor strength (the `smallest` recipe: 1/2), then within the tensor "
        "by column sensitivity c_j as (c_j / mean c)^-column strength (the recipe: 1/4; 0: per-tensor steps "
        "only) and by row sensitivity r_i as (r_i / mean r)^-row strength (the recipe: 0). A proxy of the "
        "recipe: nearest rounding, no gptq, dependent quantization or bias correction, size as order-0 entropy "
        "of the symbols. Bits at the bar are interpolated between the two ladder points either side of it.",
        "",
        "| model | bar | tensor strength | column strength | row strength | bits/weight at the bar | vs the first |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["model"] for row in rows):
        ours = [row for row in rows if row["model"] == name]
        key, limit, lower_is_better = bar_of(name, ours[0]["original"])
        at_bar = {
            triple: bits_at_bar([r for r in ours if configuration_of(r) == triple], key, limit, lower_is_better)
            for triple in configurations
        }
        first = at_bar[configurations[0]]
        for (tensor_strength, strength, row_strength), bits in at_bar.items():
            ratio = f"{bits / first:.3f}x" if bits and first else "-"
            shown = f"{bits:.3f}" if bits else "- (not crossed in the ladder)"
            lines.append(
                f"| {name} | {SUITE[name].bar_text} | {tensor_strength} | {strength} | {row_strength} | {shown} "
                f"| {ratio} |"
            )
    lines += [
        "",
        "Every point:",
        "",
        "| model | tensor strength | column strength | row strength | step QP | bits/weight | quality |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("top1", "agreement", "mean_cosine", "min_cosine", "perplexity", "perplexity_change")
    for row in rows:
        quality = ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
        tensor_strength, strength, row_strength = configuration_of(row)
        lines.append(
            f"| {row['model']} | {tensor_strength} | {strength} | {row_strength} | {row['step_qp']} "
            f"| {row['bits_per_weight']:.3f} | {quality} |"
        )
    return "\n".join(lines) + "\n"


def configuration_of(row: dict) -> tuple[float, float, float]:
    return row.get("tensor_strength", RECIPE[0]), row["strength"], row.get("row_strength", 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LADDERS), choices=list(LADDERS))
    parser.add_argument("--vary", choices=list(VARIATIONS), default="columns", help="which strength to vary")
    args = parser.parse_args()
    configurations = VARIATIONS[args.vary]
    rows = [row for name in args.models for row in explore(name, configurations)]
    text = markdown(rows, configurations)
    write_results(RESULTS / "rate_accuracy", f"{args.vary[:-1]}_steps", rows, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
