"""Step allocation by data-free sensitivity against one step for every tensor, on the CIFAR-10 ResNets
(docs/recipes.md: the `smallest` recipe's "auto" allocation).

Each point is the `smallest` recipe (x264 lossless on the symbols, gptq rounding and bias correction from
noise) at one base step QP with `allocation` uniform or sensitivity, compressed and decoded with the real
codec and scored on the calibration images (the training-image subset, not the test file, because this
chooses a method). Then, per model, the bits per weight sensitivity allocation needs to reach the same
agreement and the same mean KL as uniform (interpolated between its points). Writes
results/rate_accuracy/allocation.json and allocation.md.

    python scripts/compare_allocation.py [--models resnet20 resnet56] [--limit 2000] [--qps -17 -16 -15 -14]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import RESULTS, shared_data_dir, write_results

from vcwc.bench.experiment import ModelUnderTest
from vcwc.eval.datasets import load_dataset
from vcwc.io import load_model
from vcwc.recipe import RECIPES

FILES = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
ALLOCATIONS = ("uniform", "sensitivity")


def bits_at(points: list[dict], measure: str, value: float) -> float | None:
    """Bits per weight where a ladder of points reaches `value` of `measure` (linear between neighbours)."""
    ladder = sorted(points, key=lambda p: p["bits_per_weight"])
    for low, high in zip(ladder, ladder[1:]):
        a, b = low[measure], high[measure]
        if min(a, b) <= value <= max(a, b) and a != b:
            t = (value - a) / (b - a)
            return low["bits_per_weight"] + t * (high["bits_per_weight"] - low["bits_per_weight"])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"], choices=list(FILES))
    parser.add_argument("--limit", type=int, default=2000, help="calibration images (class-balanced)")
    parser.add_argument("--qps", nargs="+", type=int, default=[-17, -16, -15, -14])
    args = parser.parse_args()
    folder = shared_data_dir() / "cifar10"
    calibration = load_dataset(folder / "cifar10_train_lossless_subset.npz", limit=args.limit)
    records = []
    for model in args.models:
        subject = ModelUnderTest(model, load_model(folder / FILES[model]), f"cifar_{model}", calibration)
        for allocation in ALLOCATIONS:
            for qp in args.qps:
                recipe = RECIPES["smallest"].with_changes(step_qp=qp, allocation=allocation)
                record = subject.run_codec(recipe)
                keep = ("bits_per_weight", "agreement", "mean_kl", "top1", "encode_seconds")
                records.append(
                    {"model": model, "allocation": allocation, "step_qp": qp, **{k: record[k] for k in keep}}
                )
                print(model, allocation, qp, {k: round(record[k], 4) for k in keep}, file=sys.stderr, flush=True)
    lines = [
        f"# Step allocation on the CIFAR-10 ResNets\n\n`scripts/compare_allocation.py`: the `smallest` recipe "
        f"(gptq rounding, bias correction) at base step QPs {args.qps}, {args.limit} calibration images.\n",
        "| model | allocation | step QP | bits/weight | agreement % | mean KL | top-1 % |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['allocation']} | {r['step_qp']} | {r['bits_per_weight']:.3f} | {r['agreement']:.2f} "
        f"| {r['mean_kl']:.4f} | {r['top1']:.2f} |"
        for r in records
    ]
    lines += [
        "\nBits of sensitivity allocation / bits of uniform at the same quality (each uniform point's agreement "
        "or KL, where the sensitivity ladder reaches it):\n",
        "| model | at uniform's agreement | at uniform's mean KL |",
        "|---|---|---|",
    ]
    for model in args.models:
        uniform = [r for r in records if r["model"] == model and r["allocation"] == "uniform"]
        sensitive = [r for r in records if r["model"] == model and r["allocation"] == "sensitivity"]
        ratios = {}
        for measure in ("agreement", "mean_kl"):
            found = [
                bits / u["bits_per_weight"]
                for u in uniform
                if (bits := bits_at(sensitive, measure, u[measure])) is not None
            ]
            ratios[measure] = f"{np.mean(found):.3f} (mean of {len(found)})" if found else "out of range"
        lines.append(f"| {model} | {ratios['agreement']} | {ratios['mean_kl']} |")
    write_results(RESULTS / "rate_accuracy", "allocation", records, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
