"""Rows sorted by their RMS before coding: does x264 gain from neighbouring rows of like spread? (a
direction measured, not built).

CABAC adapts to local statistics, and a frame holds a tensor's rows one under another, so rows of like
spread side by side might code in fewer bits than the model's own order. This compresses each prepared
generality-suite model (scripts/prepare_models.py) weight-only (`--recipe smallest --arch none`, where
every tensor's symbols are chosen row by row, so sorting the rows only reorders them) at the step QP where
`smallest` meets its bar (results/generality), once as it is and once with every coded tensor's rows sorted
by RMS. A format that sorted rows would also store each tensor's permutation, ceil(log2(rows)) bits a row:
its cost is counted beside the gain.

Writes results/rate_accuracy/row_order.json and row_order.md.

    python scripts/explore_row_order.py [--models NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
from common import RESULTS, write_results
from explore_presets import bar_step_qps
from generality import coded_names
from suite_models import SUITE, read_state

import vcwc


def rows_sorted_by_rms(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The state with every float tensor of 2+ dimensions' rows in order of RMS, and the bits its
    permutations would take."""
    sorted_state, permutation_bits = dict(state), 0
    for name in coded_names(state):
        tensor = state[name]
        rows = tensor.shape[0]
        order = torch.argsort(tensor.float().reshape(rows, -1).pow(2).mean(1), stable=True)
        sorted_state[name] = tensor[order].contiguous()
        permutation_bits += rows * math.ceil(math.log2(max(rows, 2)))
    return sorted_state, permutation_bits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SUITE))
    args = parser.parse_args()
    step_qps = bar_step_qps()
    rows = []
    for name in args.models:
        model = SUITE[name]
        if not model.path().exists() or name not in step_qps:
            print(f"{name}: not prepared or no bar point in results/generality, left out", file=sys.stderr)
            continue
        state = read_state(model.path())
        recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=step_qps[name])
        as_is = vcwc.compress(state, recipe, arch="none").size_report()
        sorted_state, permutation_bits = rows_sorted_by_rms(state)
        by_rms = vcwc.compress(sorted_state, recipe, arch="none").size_report()
        row = {
            "model": name,
            "step_qp": step_qps[name],
            "coded_weights": as_is.coded_weights,
            "bits_per_weight": as_is.bits_per_weight,
            "sorted_bits_per_weight": by_rms.bits_per_weight,
            "permutation_bits_per_weight": permutation_bits / as_is.coded_weights,
        }
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    # A run on some models keeps the other models' rows of the last run.
    measured = {row["model"] for row in rows}
    previous = RESULTS / "rate_accuracy" / "row_order.json"
    kept = (
        [row for row in json.loads(previous.read_text()) if row["model"] not in measured] if previous.is_file() else []
    )
    rows = sorted(kept + rows, key=lambda row: list(SUITE).index(row["model"]) if row["model"] in SUITE else len(SUITE))
    text = markdown(rows)
    write_results(RESULTS / "rate_accuracy", "row_order", rows, text)
    print(text)
    return 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "`--recipe smallest --arch none` at each model's bar step QP, rows as the model has them and sorted by "
        "RMS (`python scripts/explore_row_order.py`); the permutations' cost is what a format would add.",
        "",
        "| model | step QP | bits/weight | rows sorted by RMS | change | permutations | net change |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base, sorted_bits = row["bits_per_weight"], row["sorted_bits_per_weight"]
        extra = row["permutation_bits_per_weight"]
        lines.append(
            f"| {row['model']} | {row['step_qp']} | {base:.4f} | {sorted_bits:.4f} | "
            f"{100 * (sorted_bits / base - 1):+.2f}% | {extra:.4f} | {100 * ((sorted_bits + extra) / base - 1):+.2f}% |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
