"""Does rounding other than to the nearest level pay for itself? (docs/rate-accuracy.md, issue 7)

On the fixed-step recipe with the data-free bias correction, compare at several step QPs:
  - nearest: symbol = round(w / step), what vcwc does;
  - deadzone: |symbol| = floor(|w| / step + 0.5 - d), which sends weights near a decision threshold
    toward zero (fewer bits, as video encoders do with their rounding offsets);
  - ecsq: per weight, the nearer level or the next one toward zero, whichever costs less in
    (w / step - symbol)^2 + lambda * bits(symbol), with bits from the tensor's own symbol histogram
    (entropy-constrained scalar quantization, three passes).
Bits are the symbols' order-0 entropy per tensor (the x264 recipe lands within about 1% of it); agreement
and KL are measured on the calibration images (the training-image subset, not the test file), because
this chooses a method.
Writes results/rate_accuracy/rounding.json and rounding.md.

    python scripts/explore_rounding.py [--models resnet20 resnet56] [--limit 2000] [--qps -20 -19 -18 -17 -16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from common import coded as coded_tensors
from common import shared_data_dir

from vcwc.bench.experiment import ModelUnderTest
from vcwc.eval.datasets import load_dataset
from vcwc.files import atomic_write
from vcwc.io import load_model
from vcwc.metrics import entropy_bits
from vcwc.models.build import resolve
from vcwc.pipeline.methods import prepare
from vcwc.recipe import step_from_qp

FILES = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
SCHEMES = [("nearest", 0.0), ("deadzone", 0.1), ("deadzone", 0.2), ("ecsq", 0.05), ("ecsq", 0.1), ("ecsq", 0.2)]


def rounded(weights: np.ndarray, step: float, scheme: str, parameter: float) -> np.ndarray:
    """Integer levels of weights / step under one rounding scheme."""
    x = weights / step
    nearest = np.rint(x)
    if scheme == "nearest":
        return nearest
    if scheme == "deadzone":
        return np.sign(x) * np.floor(np.abs(x) + 0.5 - parameter)
    if scheme == "ecsq":
        toward_zero = nearest - np.sign(nearest)
        levels = nearest
        for _ in range(3):  # the histogram moves as levels move; three passes settle it
            counts = np.bincount((levels + 128).astype(np.int64).ravel(), minlength=256) + 0.5
            bits = -np.log2(counts / counts.sum())
            cost_nearest = (x - nearest) ** 2 + parameter * bits[(nearest + 128).astype(np.int64)]
            cost_toward = (x - toward_zero) ** 2 + parameter * bits[(toward_zero + 128).astype(np.int64)]
            levels = np.where(cost_toward < cost_nearest, toward_zero, nearest)
        return levels
    raise ValueError(scheme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"], choices=list(FILES))
    parser.add_argument("--data", type=Path, help="shared data folder (default $VCWC_DATA or ../shared/data)")
    parser.add_argument("--limit", type=int, default=2000, help="calibration images (class-balanced)")
    parser.add_argument("--qps", type=int, nargs="+", default=[-20, -19, -18, -17, -16])
    parser.add_argument("--out", type=Path, default=Path("results/rate_accuracy"))
    args = parser.parse_args()
    folder = (args.data or shared_data_dir()) / "cifar10"
    calibration = load_dataset(folder / "cifar10_train_lossless_subset.npz", limit=args.limit)
    rows = []
    for model in args.models:
        loaded = load_model(folder / FILES[model])
        subject = ModelUnderTest(model, loaded, f"cifar_{model}", calibration)
        state = subject.state_dict
        coded = list(coded_tensors(state))
        correction = prepare(loaded, coded, resolve(subject.arch), "nearest", bias_correction=True).correction
        for qp in args.qps:
            step = step_from_qp(qp)
            for scheme, parameter in SCHEMES:
                weights, bits = {}, 0.0
                for name in coded:
                    levels = rounded(state[name].double().numpy(), step, scheme, parameter)
                    bits += entropy_bits(levels)
                    weights[name] = torch.from_numpy(levels * step).to(state[name].dtype)
                rebuilt = {**state, **weights, **correction.corrected(state, weights)}
                result = subject.score(rebuilt)
                row = {
                    "model": model,
                    "step_qp": qp,
                    "scheme": scheme,
                    "parameter": parameter,
                    "entropy_bits_per_weight": bits / subject.coded_weights,
                    "agreement": result.agreement,
                    "mean_kl": result.mean_kl,
                    "images": result.n_images,
                }
                print(
                    f"{model} QP {qp} {scheme} {parameter}: {row['entropy_bits_per_weight']:.3f} bpw, "
                    f"agreement {row['agreement']:.2f}, KL {row['mean_kl']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "rounding.json", json.dumps(rows, indent=1).encode(), force=True)
    lines = [
        f"Rounding schemes on the fixed-step recipe with bias correction; {args.limit} calibration images "
        "(training subset); bits are the symbols' order-0 entropy per tensor.",
        "",
        "| model | step QP | scheme | parameter | bits/weight | agreement % | mean KL |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['step_qp']} | {r['scheme']} | {r['parameter']} | "
        f"{r['entropy_bits_per_weight']:.3f} | {r['agreement']:.2f} | {r['mean_kl']:.4f} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    atomic_write(args.out / "rounding.md", text.encode(), force=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
