"""Regenerate results/cifar10/: the four CIFAR-10 ResNets from the shared data, every software codec,
per-tensor and per-channel scales, lossless and a QP ladder, against the plain baselines; then the
rate-accuracy comparison: the fixed-step quantizer (x264 and aom lossless on the symbols;
without and with the data-free bias correction and gptq rounding) at step QPs in steps of 1, against
NNCodec at its QPs in steps of 1 around its knee (if it is set up,
scripts/setup_nncodec.sh), all on the 10,000-image test file.

Two passes keep it under an hour on 2 cores: every QP is screened on a fixed class-balanced subset of
the 10,000-image test file (agreement with the original predictions), then only the QPs around each
codec's knee are scored on all 10,000 images; the same points are also scored on the 846-image
lossless file. Not run in CI.

    python scripts/regenerate_cifar10.py [--data DIR] [--out results/cifar10] [--screen 500] [-j 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import shared_data_dir

from vcwc.bench.names import SOFTWARE_CODECS
from vcwc.bench.sweep import ModelSpec, Point, Sweep, knee_points, plan_points
from vcwc.bench.sweep_report import write_report

MODELS = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
GRANULARITIES = ["per_tensor", "per_channel"]
# Fixed step 2 ** (qp / 4), from far inside both accuracy budgets to past them: (codecs, correction, QPs).
# The data-free corrections move the budgets' edges to coarser steps, gptq rounding by about two more
# QPs; it runs with x264 only, the recipe's codec.
STEP_LADDERS = [
    (["x264", "aom"], "none", list(range(-23, -15))),
    (["x264", "aom"], "bias", list(range(-23, -13))),
    (["x264"], "gptq+bias", list(range(-21, -11))),
]
# NNCodec's QPs, in steps of 1 from inside both budgets to at least two QPs past its 1-point knee: that
# knee is at QP -21 or coarser for ResNet-20/32 (where lucky coarse QPs land inside), and at -24 to -25
# for ResNet-44/56, where the coarse end is cut to keep the run near an hour on 2 cores.
NNCODEC_QPS = {
    "resnet20": list(range(-28, -18)),
    "resnet32": list(range(-28, -18)),
    "resnet44": list(range(-28, -21)),
    "resnet56": list(range(-28, -21)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="shared data folder (default $VCWC_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path("results/cifar10"))
    parser.add_argument("--screen", type=int, default=500, help="screening subset size")
    parser.add_argument("--knee-agreement", type=float, default=99.0)
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--no-nncodec", action="store_true", help="leave out the NNCodec ladder")
    args = parser.parse_args()
    folder = (args.data or shared_data_dir()) / "cifar10"
    jpeg, lossless = folder / "cifar10_test_jpeg.npz", folder / "cifar10_test_lossless.npz"
    on_jpeg = [ModelSpec(name, str(folder / file), f"cifar_{name}", str(jpeg)) for name, file in MODELS.items()]
    on_lossless = [
        ModelSpec(f"{name} (846 lossless images)", str(folder / file), f"cifar_{name}", str(lossless))
        for name, file in MODELS.items()
    ]
    start = time.time()
    sweep = Sweep(args.out, jobs=args.jobs)
    screened = sweep.run(
        plan_points(on_jpeg, list(SOFTWARE_CODECS), GRANULARITIES, baselines=(), eval_limit=args.screen)
    )
    print(f"screening done in {time.time() - start:.0f} s", file=sys.stderr)
    full_grid = plan_points(on_jpeg, list(SOFTWARE_CODECS), GRANULARITIES)
    chosen = [p for p in full_grid if p.is_baseline] + knee_points(screened, full_grid, args.knee_agreement)
    sweep.run(chosen)
    print(f"10,000-image scoring done in {time.time() - start:.0f} s", file=sys.stderr)
    for codecs, correction, step_qps in STEP_LADDERS:
        sweep.run(plan_points(on_jpeg, codecs, ["step"], baselines=(), step_qps=step_qps, corrections=(correction,)))
    if not args.no_nncodec:
        for spec in on_jpeg:
            sweep.run(plan_points([spec], [], [], baselines=(), nncodec_qps=NNCODEC_QPS[spec.name]))
    print(f"fixed-step and NNCodec ladders done in {time.time() - start:.0f} s", file=sys.stderr)
    by_name = {spec.path: spec for spec in on_lossless}
    sweep.run([Point(by_name[p.model.path], p.method, p.recipe, p.nncodec_qp) for p in chosen])
    paths = write_report(args.out)
    print(f"done in {time.time() - start:.0f} s: {', '.join(map(str, paths.values()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
