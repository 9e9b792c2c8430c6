"""Lossless figures: per codec, bits per coded weight beside zstd -19 of the same int8 symbols,
file size against fp32, compress and decompress seconds.

Models: ResNet-56 from the shared CIFAR-10 data and a torchvision-shaped ResNet-18 with random weights.
Writes results/lossless/lossless.json and lossless.md; prints the table.

    python scripts/bench_lossless.py [--data DIR] [--out results/lossless]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import zstandard
from common import shared_data_dir

import vcwc
from vcwc.codecs import ffmpeg
from vcwc.files import atomic_write
from vcwc.io import ModelSource, from_checkpoint
from vcwc.models.build import build_model

CODECS = ["x264", "x265", "aom", "svtav1"]


def zstd_bits_per_weight(state_dict, per_channel: bool) -> float:
    """zstd -19 of all coded tensors' int8 symbols concatenated, plus their float32 scales."""
    selection = vcwc.Selection()
    config = vcwc.QuantConfig("per_channel" if per_channel else "per_tensor")
    symbols, scales, count = [], [], 0
    for name, tensor in state_dict.items():
        if selection.is_coded(name, tensor.is_floating_point(), tuple(tensor.shape)):
            q = vcwc.quantize(tensor.numpy(), config, name)
            symbols.append(q.symbols.tobytes())
            scales.append(q.scales.astype("<f4").tobytes())
            count += q.symbols.size
    size = len(zstandard.ZstdCompressor(level=19).compress(b"".join(symbols))) + sum(map(len, scales))
    return 8 * size / count


def measure(name: str, model, granularity: str) -> list[dict]:
    loaded = model if isinstance(model, ModelSource) else from_checkpoint(model)
    state_dict = loaded.state_dict()
    per_channel = granularity == "per_channel"
    fp32_bytes = sum(t.numel() * 4 for t in state_dict.values())
    rows = []
    zstd_bpw = zstd_bits_per_weight(state_dict, per_channel)
    for codec in CODECS:
        start = time.perf_counter()
        compressed = vcwc.compress(loaded, vcwc.RECIPES["lossless"].with_changes(codec=codec, granularity=granularity))
        encode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        vcwc.decompress(compressed.data)
        decode_seconds = time.perf_counter() - start
        report = compressed.size_report()
        rows.append(
            {
                "model": name,
                "granularity": granularity,
                "codec": codec,
                "coded_weights": report.coded_weights,
                "bits_per_weight": round(report.bits_per_weight, 4),
                "zstd19_bits_per_weight": round(zstd_bpw, 4),
                "file_bytes": report.file_bytes,
                "fp32_bytes": fp32_bytes,
                "file_vs_fp32_percent": round(100 * report.file_bytes / fp32_bytes, 2),
                "compress_seconds": round(encode_seconds, 2),
                "decompress_seconds": round(decode_seconds, 2),
            }
        )
        print(
            f"{name} {granularity} {codec}: {rows[-1]['bits_per_weight']:.3f} bpw (zstd {zstd_bpw:.3f}), "
            f"{rows[-1]['file_vs_fp32_percent']}% of fp32, {encode_seconds:.2f}s / {decode_seconds:.2f}s"
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | scales | codec | bits/weight | zstd -19 bits/weight | file / fp32 | compress s | decompress s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['granularity']} | {r['codec']} | {r['bits_per_weight']:.3f} | "
            f"{r['zstd19_bits_per_weight']:.3f} | {r['file_vs_fp32_percent']:.1f}% | "
            f"{r['compress_seconds']:.2f} | {r['decompress_seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="shared data folder (default $VCWC_DATA or ../shared/data)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/lossless"))
    args = parser.parse_args()
    data = args.data or shared_data_dir()
    torch.manual_seed(0)
    models = {
        "cifar_resnet56": vcwc.load_model(data / "cifar10" / "resnet56-4bfd9763.th"),
        "resnet18 (random weights)": build_model("resnet18").state_dict(),
    }
    rows = [
        row
        for name, model in models.items()
        for granularity in ("per_tensor", "per_channel")
        for row in measure(name, model, granularity)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    environment = {
        "vcwc": vcwc.__version__,
        "ffmpeg": ffmpeg.version(ffmpeg.find_ffmpeg()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "numpy": np.__version__,
    }
    atomic_write(
        args.out / "lossless.json",
        json.dumps({"environment": environment, "rows": rows}, indent=2).encode(),
        force=True,
    )
    atomic_write(args.out / "lossless.md", markdown(rows).encode(), force=True)
    print(markdown(rows))


if __name__ == "__main__":
    main()
