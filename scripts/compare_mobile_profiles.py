"""Regenerate results/mobile/: the phone-like software profiles (mobile-h264, mobile-hevc) against full
x264 and x265 on CIFAR-10 ResNet-20 and ResNet-56, per-tensor int8, a QP ladder, scored on the 846-image
lossless test file (a quick comparison; results/cifar10 has the 10,000-image numbers for the full encoders).

    python scripts/compare_mobile_profiles.py [--data DIR] [--out results/mobile]
"""

import argparse
import sys
from pathlib import Path

from common import shared_data_dir

from vcwc import cli

MODELS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", default="results/mobile")
    args = parser.parse_args()
    folder = (args.data or shared_data_dir()) / "cifar10"
    specs = [f"{folder / file}:cifar_{name}:{folder / 'cifar10_test_lossless.npz'}" for name, file in MODELS.items()]
    return cli.main(
        [
            "sweep",
            "--models",
            *specs,
            "--codecs",
            "x264,mobile-h264,x265,mobile-hevc",
            "--qps",
            "8,12,16,20,24,28,32",
            "--granularity",
            "per_tensor",
            "--baselines",
            "int8_zstd_per_tensor",
            "--out",
            args.out,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
