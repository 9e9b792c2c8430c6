"""Measure directions for rate against accuracy (docs/rate-accuracy.md): which quantizer, codec mode and
layout give the fewest bits per weight at a given agreement with the original model.

For each CIFAR-10 ResNet given, on a fixed class-balanced subset of the 10,000-image test file:
  - int8 with max-based scales (per tensor), then the codec lossy at a QP ladder (the sweep's mode);
  - a fixed quantization step for every tensor (NNC-style), then the codec lossless on the small symbols;
  - rows against kernel_blocks arrangement at one step;
  - the same fixed-step symbols with output and input channels sorted by mean magnitude before the
    layout (bits only: a stored permutation is undone exactly, so accuracy is that of the unsorted file;
    the permutations are counted at 16 bits per index).
Writes results/rate_accuracy/explore.json and explore.md.

    python scripts/explore_rate_accuracy.py [--models resnet20 resnet56] [--limit 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import coded, shared_data_dir

import vcwc
from vcwc.bench.experiment import ModelUnderTest, coded_snr_db
from vcwc.codecs import EncoderSettings, ffmpeg, get_codec
from vcwc.eval.datasets import load_dataset
from vcwc.files import atomic_write
from vcwc.format import layout
from vcwc.io import load_model
from vcwc.quant.quantize import QuantConfig, quantize
from vcwc.recipe import qp_from_step

FILES = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
}
STEP_EXPONENTS = (-26, -24, -22, -20, -18)  # step = 2 ** (e / 4) in weight units, as NNCodec's qp
LOSSY_QPS = {"x265": (8, 12, 16, 20), "aom": (8, 16, 24)}


def measure(
    subject: ModelUnderTest, label: str, codec: str, qp: int | None, quant: QuantConfig, arrangement: str = "rows"
) -> dict:
    state = subject.state_dict
    recipe = vcwc.RECIPES["lossless"].with_changes(
        codec=codec,
        low_bits="off",  # every bit through the codec, as these comparisons were made
        qp=qp,
        bits=quant.bits,
        arrangement=arrangement,
        step_qp=None if quant.step is None else qp_from_step(quant.step),
    )
    compressed = vcwc.compress(subject.loaded, recipe)
    reconstructed = vcwc.decompress(compressed.data)
    report = compressed.size_report()
    result = subject.score(reconstructed)
    row = {
        "model": subject.name,
        "direction": label,
        "codec": codec,
        "qp": qp,
        "step": quant.step,
        "arrangement": arrangement,
        "bits_per_weight": report.bits_per_weight,
        "weight_snr_db": coded_snr_db(state, reconstructed, subject.is_coded),
        "top1": result.top1,
        "top1_change": result.top1 - subject.original.top1,
        "agreement": result.agreement,
        "mean_kl": result.mean_kl,
        "images": result.n_images,
    }
    print(
        f"{subject.name} {label} {codec} qp={qp} step={quant.step}: {row['bits_per_weight']:.3f} bpw, "
        f"agreement {row['agreement']:.2f}, KL {row['mean_kl']:.4f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def sorted_channel_bits(subject: ModelUnderTest, codec_name: str, step: float) -> float:
    """Bits per weight of fixed-step symbols with channels sorted by magnitude, kernels as k x k blocks."""
    quant = QuantConfig(step=step)
    matrices, permutation_bits, weights = [], 0, 0
    for name, tensor in coded(subject.state_dict).items():
        symbols = quantize(tensor.numpy(), quant, name).symbols
        weights += symbols.size
        magnitude = np.abs(symbols.astype(np.float64))
        symbols = symbols[np.argsort(-magnitude.reshape(len(symbols), -1).mean(1), kind="stable")]
        permutation_bits += 16 * symbols.shape[0]
        if symbols.ndim == 4:
            per_input = np.abs(symbols.astype(np.float64)).transpose(1, 0, 2, 3).reshape(symbols.shape[1], -1).mean(1)
            symbols = symbols[:, np.argsort(-per_input, kind="stable")]
            permutation_bits += 16 * symbols.shape[1]
        matrices.append(layout.as_matrix(symbols, "kernel_blocks"))
    codec = get_codec(codec_name)
    binary = ffmpeg.find_ffmpeg()
    limits = layout.FrameLimits(codec.block_size, codec.min_size, codec.max_width, codec.max_height)
    packing = layout.pack([m.shape for m in matrices], limits)
    stream_bytes = 0
    for luma in layout.render(packing, matrices):
        height, width = luma.shape
        stream_bytes += len(ffmpeg.encode(codec.job(width, height, EncoderSettings()), luma[None], binary))
    scale_bits = 32 * len(matrices)
    return (8 * stream_bytes + permutation_bits + scale_bits) / weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"], choices=list(FILES))
    parser.add_argument("--limit", type=int, default=2000, help="class-balanced test images per evaluation")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results/rate_accuracy"))
    args = parser.parse_args()
    folder = (args.data or shared_data_dir()) / "cifar10"
    dataset = load_dataset(folder / "cifar10_test_jpeg.npz", limit=args.limit)
    rows = []
    for name in args.models:
        subject = ModelUnderTest(name, load_model(folder / FILES[name]), f"cifar_{name}", dataset)
        for codec, qps in LOSSY_QPS.items():
            rows += [measure(subject, "int8 max scale, lossy codec", codec, qp, QuantConfig()) for qp in qps]
        for codec in ("x265", "aom", "x264"):
            rows += [
                measure(subject, "fixed step, lossless codec", codec, None, QuantConfig(step=2 ** (e / 4)))
                for e in STEP_EXPONENTS
            ]
        rows.append(
            measure(
                subject, "fixed step, lossless codec", "x265", None, QuantConfig(step=2 ** (-22 / 4)), "kernel_blocks"
            )
        )
        unsorted = {
            (r["codec"], r["step"]): r
            for r in rows
            if r["model"] == name and r["direction"] == "fixed step, lossless codec" and r["arrangement"] == "rows"
        }
        for codec in ("aom", "x264"):
            for e in STEP_EXPONENTS:
                base = unsorted[(codec, 2 ** (e / 4))]
                bits = sorted_channel_bits(subject, codec, 2 ** (e / 4))
                rows.append(
                    {
                        **base,
                        "direction": "fixed step, sorted channels, lossless codec",
                        "arrangement": "kernel_blocks",
                        "bits_per_weight": bits,
                    }
                )
                print(
                    f"{name} sorted {codec} step 2^({e}/4): {bits:.3f} bpw (unsorted {base['bits_per_weight']:.3f})",
                    file=sys.stderr,
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "explore.json", json.dumps(rows, indent=1).encode(), force=True)
    lines = [
        f"Agreement and KL on {args.limit:,} class-balanced images of cifar10_test_jpeg.npz.",
        "",
        "| model | direction | codec | QP | step | arrangement | bits/weight | weight SNR dB | agreement % | mean KL | top-1 change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = "-" if r["step"] is None else f"{r['step']:.4f}"
        lines.append(
            f"| {r['model']} | {r['direction']} | {r['codec']} | {'lossless' if r['qp'] is None else r['qp']} | "
            f"{step} | {r['arrangement']} | "
            f"{r['bits_per_weight']:.3f} | {r['weight_snr_db']:.1f} | {r['agreement']:.2f} | "
            f"{r['mean_kl']:.4f} | {r['top1_change']:+.2f} |"
        )
    atomic_write(args.out / "explore.md", ("\n".join(lines) + "\n").encode(), force=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
