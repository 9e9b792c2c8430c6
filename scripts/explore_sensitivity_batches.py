"""How the batches of a sensitivity pass combine: summed as they are, or each counting alike (the library's).

The step allocation (vcwc.quant.sensitivity) needs each coded tensor's share of the output's sensitivity,
estimated over batches of random inputs. This runs the pass with many batches on the suite's models
(scripts/suite_models.py, their default inputs: random tokens or noise), keeps each batch's values, and
reports the spread of the batches' totals (relative to the median batch), and how well the step offsets
from disjoint groups of batches (the size the library uses) agree with each other, for both ways of
combining: the weight-weighted RMS difference in step QPs, averaged over pairs of groups. Writes
results/rate_accuracy/sensitivity_batches.json and .md.

    python scripts/explore_sensitivity_batches.py [--models all-mpnet-base-v2 mobilenet_v2] [--batches 32]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys

import numpy as np
import torch
from common import RESULTS, write_results
from suite_models import SUITE, read_state

from vcwc.models.build import Architecture, build_model
from vcwc.quant.inputs import TOKEN_BATCHES, driver_for
from vcwc.quant.sensitivity import add_batch_alike, sensitivities, step_offsets


def summed_as_they_are(sums: dict, batch: dict, sizes: dict) -> None:
    for name, value in batch.items():
        sums[name] = sums.get(name, 0.0) + value


def per_batch(name: str, batches: int) -> tuple[list[dict[str, float]], dict[str, int], int]:
    """Each batch's raw sensitivities (one pass over `batches` batches of the model's default inputs), the
    tensors' sizes, and the number of batches the library takes of these inputs."""
    model = SUITE[name]
    state = read_state(model.path())
    coded = [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2]
    module = build_model(Architecture(name, model.build), state).float()
    driver = driver_for(module, model.input_shape)
    default, driver.batches = driver.batches, batches
    recorded: list[dict[str, float]] = []
    sensitivities(module, coded, driver, combine=lambda sums, batch, sizes: recorded.append(batch))
    return recorded, {n: state[n].numel() for n in coded}, default


def offsets_of(batches: list[dict[str, float]], sizes: dict[str, int], combine) -> dict[str, float]:
    sums: dict[str, float] = {}
    for batch in batches:
        combine(sums, batch, {name: sizes[name] for name in batch})
    return step_offsets(sums, sizes)


def rms(a: dict[str, float], b: dict[str, float], sizes: dict[str, int]) -> float:
    names = [n for n in a if n in b]
    total = sum(sizes[n] for n in names)
    return math.sqrt(sum(sizes[n] * (a[n] - b[n]) ** 2 for n in names) / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["all-mpnet-base-v2", "mobilenet_v2"], choices=list(SUITE))
    parser.add_argument("--batches", type=int, default=4 * TOKEN_BATCHES)
    args = parser.parse_args()
    torch.set_num_threads(2)
    records, lines = [], []
    for name in args.models:
        batches, sizes, size = per_batch(name, args.batches)
        totals = np.array([sum(sizes[n] * v for n, v in batch.items()) for batch in batches])
        relative = totals / np.median(totals)
        groups = [batches[i : i + size] for i in range(0, len(batches) - size + 1, size)]
        record = {
            "model": name,
            "batches": len(batches),
            "group": size,
            "batch_totals_relative": relative.round(3).tolist(),
        }
        for label, combine in (("summed", summed_as_they_are), ("alike", add_batch_alike)):
            offsets = [offsets_of(group, sizes, combine) for group in groups]
            pairs = [rms(a, b, sizes) for a, b in itertools.combinations(offsets, 2)]
            record[f"{label}_group_rms"] = float(np.mean(pairs)) if pairs else None
        records.append(record)
        print(record, file=sys.stderr, flush=True)
        lines.append(
            f"| {name} | {len(batches)} ({size} at a time) | {relative.max():.1f}x | {relative.min():.2f}x | "
            f"{record['summed_group_rms']:.2f} | {record['alike_group_rms']:.2f} |"
        )
    text = (
        "# Combining the batches of the sensitivity pass\n\n"
        f"`scripts/explore_sensitivity_batches.py`: one pass of {args.batches} batches of each model's default "
        "inputs; step offsets from disjoint groups of as many batches as the library takes of such inputs, "
        "compared pairwise (weight-weighted RMS difference, step QPs).\n\n"
        "| model | batches | largest batch total / median | smallest | offsets between groups, summed as they "
        "are | each batch alike |\n|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    write_results(RESULTS / "rate_accuracy", "sensitivity_batches", records, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
