"""Speed against NNCodec: weights encoded and decoded per second, in one run.

Warm process, model already in memory, median of --repeats (default 5) timed calls, for:
  - a torchvision-shaped ResNet-50 with random weights (25.5 M coded weights), and
  - the CIFAR-10 ResNet-56 from the shared data (0.85 M), where process start-up dominates.
vcwc runs the `smallest` recipe as users run it, and faster variants of it (OPERATING_POINTS), at one
base step QP, chosen per model so that the file lands near --target-bpw bits per weight,
inside the size targets' range; NNCodec runs 4 QPs lower, where its files are about as large. Start-up
is measured apart: a fresh `python -c "import vcwc.cli"` and NNCodec's worker import.

Writes results/speed/speed.json and speed.md and prints the table. NNCodec needs scripts/setup_nncodec.sh;
without it only vcwc's side is measured.

    python scripts/bench_speed.py [--data DIR] [--repeats 5] [--codecs x264,aom] [--out results/speed]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import coded, shared_data_dir, write_results

import vcwc
from vcwc.codecs import ffmpeg
from vcwc.errors import NNCodecUnavailable
from vcwc.io import from_checkpoint, load_model
from vcwc.metrics import entropy_bits
from vcwc.models.build import build_model
from vcwc.quant.quantize import QuantConfig, quantize
from vcwc.recipe import step_from_qp

# (label, changes to the `smallest` recipe). First the recipe as users run it (given the architecture:
# steps allocated by sensitivity, gptq rounding, bias correction); then one step for every tensor with
# nearest rounding and bias correction, the faster encoder of the same format, at speed operating points:
# superfast (same symbols, lossless, size within about 1%), ultrafast (CAVLC instead of CABAC: faster
# decoding for about 13% more bits), and SVT-AV1, an AV1 path decoded by dav1d.
OPERATING_POINTS = [
    ("vcwc --recipe smallest (x264, sensitivity allocation, gptq rounding, bias correction)", {}),
    ("vcwc x264, one step, nearest rounding + bias correction", {"allocation": "uniform", "rounding": "nearest"}),
    (
        "vcwc x264 preset superfast, one step, nearest rounding + bias correction",
        {"allocation": "uniform", "rounding": "nearest", "preset": "superfast"},
    ),
    (
        "vcwc x264 preset ultrafast, one step, nearest rounding + bias correction",
        {"allocation": "uniform", "rounding": "nearest", "preset": "ultrafast"},
    ),
    (
        "vcwc svtav1 preset 12, one step, nearest rounding + bias correction",
        {"allocation": "uniform", "rounding": "nearest", "codec": "svtav1", "preset": "12"},
    ),
]
ARCHS = {"ResNet-50 (random weights)": "resnet50", "ResNet-56 (CIFAR-10)": "cifar_resnet56"}


def entropy_bits_per_weight(state_dict: dict, step_qp: int) -> float:
    """Order-0 entropy of the fixed-step symbols, per tensor: a quick stand-in for the file size."""
    bits, count = 0.0, 0
    for name, tensor in coded(state_dict).items():
        symbols = quantize(tensor.numpy(), QuantConfig(step=step_from_qp(step_qp)), name).symbols
        bits += entropy_bits(symbols)
        count += symbols.size
    return bits / count


def pick_step_qp(state_dict: dict, target_bpw: float) -> int:
    return min(range(-32, -8), key=lambda qp: abs(entropy_bits_per_weight(state_dict, qp) - target_bpw))


def timed(function, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure_vcwc(loaded, arch: str, step_qp: int, label: str, changes: dict, repeats: int) -> dict:
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=step_qp, bias_correction="on", **changes)
    encode_seconds, compressed = timed(lambda: vcwc.compress(loaded, recipe, arch=arch), repeats)
    decode_seconds, _ = timed(lambda: vcwc.decompress(compressed.data), repeats)
    return {
        "method": label,
        "recipe": compressed.recipe,
        "bits_per_weight": compressed.size_report().bits_per_weight,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
    }


# With dependent quantization NNCodec's reconstruction levels at QP q sit about 2^(q/4) apart but each of
# its two quantizers steps twice that; its files match vcwc's in size about 4 QPs lower (results/cifar10).
NNCODEC_QP_OFFSET = -4


def measure_nncodec(loaded, step_qp: int, repeats: int) -> dict:
    from vcwc.bench.nncodec import nncodec_roundtrip

    tensors = {n: t.float().numpy() for n, t in coded(loaded.state_dict()).items()}
    result = nncodec_roundtrip(tensors, step_qp + NNCODEC_QP_OFFSET, repeats=repeats)
    weights = sum(t.size for t in tensors.values())
    return {
        "method": f"NNCodec {result.version} (dependent quantization, QP {step_qp + NNCODEC_QP_OFFSET})",
        "bits_per_weight": 8 * result.bitstream_bytes / weights,
        "encode_seconds": statistics.median(result.encode_times),
        "decode_seconds": statistics.median(result.decode_times),
        "startup_seconds": result.startup_seconds,
    }


def vcwc_startup_seconds(repeats: int) -> float:
    """A fresh interpreter importing vcwc's CLI (torch included), as every `vcwc` command pays."""
    command = [sys.executable, "-c", "import vcwc.cli"]
    return timed(lambda: subprocess.run(command, check=True), repeats)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="shared data folder (default $VCWC_DATA or ../shared/data)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--target-bpw",
        type=float,
        default=3.3,
        help="pick the step QP whose symbols' entropy is nearest this (default 3.3)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/speed"))
    args = parser.parse_args()
    torch.manual_seed(0)
    resnet50 = from_checkpoint(build_model("resnet50").state_dict())
    models = [("ResNet-50 (random weights)", resnet50)]
    # Random weights with default BatchNorm statistics: bias correction still runs its full pass.
    cifar = (args.data or shared_data_dir()) / "cifar10" / "resnet56-4bfd9763.th"
    if cifar.exists():
        models.append(("ResNet-56 (CIFAR-10)", load_model(cifar)))
    else:
        print(f"{cifar} not found: ResNet-56 left out", file=sys.stderr)
    rows = []
    for model_name, loaded in models:
        weights = sum(t.numel() for t in coded(loaded.state_dict()).values())
        step_qp = pick_step_qp(loaded.state_dict(), args.target_bpw)
        measured = [
            measure_vcwc(loaded, ARCHS[model_name], step_qp, label, changes, args.repeats)
            for label, changes in OPERATING_POINTS
        ]
        try:
            measured.append(measure_nncodec(loaded, step_qp, args.repeats))
        except NNCodecUnavailable as exc:
            print(f"NNCodec left out: {exc}", file=sys.stderr)
        for row in measured:
            row.update(
                model=model_name,
                coded_weights=weights,
                step_qp=step_qp,
                encode_weights_per_second=weights / row["encode_seconds"],
                decode_weights_per_second=weights / row["decode_seconds"],
            )
            print(
                f"{model_name}: {row['method']}: {row['bits_per_weight']:.3f} bpw, encode "
                f"{row['encode_weights_per_second'] / 1e6:.2f} M/s, decode {row['decode_weights_per_second'] / 1e6:.2f} M/s",
                file=sys.stderr,
                flush=True,
            )
        rows += measured
    startup = vcwc_startup_seconds(args.repeats)
    environment = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "ffmpeg": ffmpeg.version(ffmpeg.find_ffmpeg()),
        "repeats": args.repeats,
    }
    text = markdown(rows, startup, environment)
    write_results(args.out, "speed", {"environment": environment, "vcwc_startup_seconds": startup, "rows": rows}, text)
    print(text)
    return 0


def markdown(rows: list[dict], startup: float, environment: dict) -> str:
    lines = [
        f"Median of {environment['repeats']} timed calls in a warm process, model in memory; "
        f"{environment['cpus']} CPUs, {environment['ffmpeg']}. vcwc: the `smallest` recipe at one base "
        "step QP (the codec lossless on the symbols); NNCodec 4 QPs lower, at a similar size. "
        "Ratios are against NNCodec on the same model.",
        "",
        "| model | method | step QP | bits/weight | encode M weights/s | decode M weights/s | "
        "encode vs NNCodec | decode vs NNCodec |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference = next((r for r in rows if r["model"] == row["model"] and r["method"].startswith("NNCodec")), None)
        ratios = (
            ("-", "-")
            if reference is None
            else (
                f"{row['encode_weights_per_second'] / reference['encode_weights_per_second']:.1f}x",
                f"{row['decode_weights_per_second'] / reference['decode_weights_per_second']:.1f}x",
            )
        )
        lines.append(
            f"| {row['model']} | {row['method']} | {row['step_qp']} | {row['bits_per_weight']:.3f} | "
            f"{row['encode_weights_per_second'] / 1e6:.2f} | {row['decode_weights_per_second'] / 1e6:.2f} | "
            f"{ratios[0]} | {ratios[1]} |"
        )
    nncodec_startup = [r["startup_seconds"] for r in rows if "startup_seconds" in r]
    lines += [
        "",
        f"Process start-up, paid once by every command-line run and not in the rates above: vcwc "
        f"{startup:.2f} s (`python -c 'import vcwc.cli'`, median)"
        + (
            f"; NNCodec {statistics.median(nncodec_startup):.2f} s (its worker's interpreter and imports)."
            if nncodec_startup
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
