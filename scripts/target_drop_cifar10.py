"""`--target-drop` on the CIFAR-10 ResNets (issue 7): per-tensor steps chosen on the training-image
calibration subset, then the file scored on the 10,000-image test file it never saw.

For each model and budget (0.5 and 1 point): the search's evaluations, the calibration agreement and KL
it stopped at, the real file's bits per weight (x264, lossless on the step symbols, --rounding, bias
correction), and
its top-1 change, agreement and KL on the test file. Writes results/cifar10/target_drop.json and
target_drop.md.

    python scripts/target_drop_cifar10.py [--data DIR] [--calibration-limit 2000] [--rounding gptq]
        [--out results/cifar10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import shared_data_dir

import vcwc
from vcwc.bench.experiment import ModelUnderTest
from vcwc.bench.target import search
from vcwc.eval.datasets import load_dataset
from vcwc.files import atomic_write
from vcwc.io import load_model

MODELS = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
BUDGETS = (0.5, 1.0)
CODEC = "x264"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="shared data folder (default $VCWC_DATA or ../shared/data)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--calibration-limit", type=int, default=2000)
    parser.add_argument("--max-evaluations", type=int, default=40)
    parser.add_argument("--rounding", choices=["nearest", "gptq"], default="gptq")
    parser.add_argument("--out", type=Path, default=Path("results/cifar10"))
    args = parser.parse_args()
    folder = (args.data or shared_data_dir()) / "cifar10"
    calibration = load_dataset(folder / "cifar10_train_lossless_subset.npz", limit=args.calibration_limit)
    test = load_dataset(folder / "cifar10_test_jpeg.npz")
    rows = []
    for name in args.models:
        loaded = load_model(folder / MODELS[name])
        arch = f"cifar_{name}"
        subject = ModelUnderTest(name, loaded, arch, test)
        for budget in BUDGETS:
            start = time.perf_counter()
            searched = search(
                loaded,
                arch,
                calibration,
                budget,
                max_evaluations=args.max_evaluations,
                rounding=args.rounding,
                progress=True,
            )
            search_seconds = time.perf_counter() - start
            best = searched.best
            overrides = tuple(vcwc.TensorOverride(name=n, step_qp=q) for n, q in best.step_qps.items())
            recipe = vcwc.RECIPES["lossless"].with_changes(
                codec=CODEC, bias_correction="on", rounding=args.rounding, overrides=overrides
            )
            compressed = vcwc.compress(loaded, recipe, arch=arch)
            result = subject.score(vcwc.decompress(compressed.data))
            report = compressed.size_report()
            row = {
                "model": name,
                "target_drop": budget,
                "evaluations": searched.evaluations,
                "calibration_images": searched.subject.original.n_images,
                "search_seconds": search_seconds,
                "calibration_agreement": best.agreement,
                "calibration_mean_kl": best.mean_kl,
                "calibration_top1_change": best.calibration_top1 - searched.subject.original.top1,
                "step_qps": best.step_qps,
                "codec": CODEC,
                "rounding": args.rounding,
                "bits_per_weight": report.bits_per_weight,
                "file_bytes": report.file_bytes,
                "test_images": result.n_images,
                "original_top1": subject.original.top1,
                "top1": result.top1,
                "top1_change": result.top1 - subject.original.top1,
                "agreement": result.agreement,
                "mean_kl": result.mean_kl,
            }
            rows.append(row)
            write(rows, args.out)  # after every row: a long run keeps what it measured
            print(
                f"{name} target {budget}: {row['evaluations']} evaluations, {row['bits_per_weight']:.3f} bpw, "
                f"test change {row['top1_change']:+.2f}, agreement {row['agreement']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    print(write(rows, args.out))
    return 0


def write(rows: list[dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "target_drop.json", json.dumps(rows, indent=1).encode(), force=True)
    lines = [
        f"`vcwc compress --target-drop`: per-tensor step QPs chosen on {rows[0]['calibration_images']:,} "
        "class-balanced images of cifar10_train_lossless_subset.npz (criterion: at most that % of "
        f"calibration predictions change; vcwc/bench/target.py), x264 lossless on the symbols, "
        f"{rows[0]['rounding']} rounding, bias correction; "
        "then scored on the 10,000-image test file, which the search never saw. Evaluations: candidates "
        "scored on the calibration images, besides one pass of the original model.",
        "",
        "| model | target drop | evaluations | step QPs | bits/weight | calibration agreement % | "
        "test top-1 change | test agreement % | test mean KL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        qps = r["step_qps"].values()
        lines.append(
            f"| {r['model']} | {r['target_drop']} | {r['evaluations']} | {min(qps)}..{max(qps)} | "
            f"{r['bits_per_weight']:.3f} | {r['calibration_agreement']:.2f} | {r['top1_change']:+.2f} | "
            f"{r['agreement']:.2f} | {r['mean_kl']:.4f} |"
        )
    atomic_write(out / "target_drop.md", ("\n".join(lines) + "\n").encode(), force=True)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
