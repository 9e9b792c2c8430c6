"""`vcwc demo`: every working software codec on one model, size against accuracy, in one table."""

from __future__ import annotations

import math

from ..bench.names import SOFTWARE_CODECS
from ..codecs.base import get_codec
from . import common


def add_parser(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="compress a model with every working codec and compare size and accuracy",
        description="With no arguments: the bundled digits ResNet and its held-out digits.",
    )
    p.add_argument("--model", help="model file (default: the bundled digits ResNet)")
    p.add_argument(
        "--arch", help="architecture of --model: a registered name or MODULE:CALLABLE (default: digits_resnet)"
    )
    p.add_argument("--data", help="evaluation set (default: the bundled held-out digits)")
    p.add_argument("--limit", type=int, help="evaluate a fixed class-balanced subset of this many images")
    p.add_argument("--codecs", default=",".join(SOFTWARE_CODECS), help="comma-separated codecs")
    common.add_json(p)
    common.add_ffmpeg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..bench.demo import run_demo

    codec_list = common.split(args.codecs)
    for name in codec_list:
        get_codec(name)  # unknown names fail before any work
    result = run_demo(
        args.model, args.arch, args.data, limit=args.limit, codecs=codec_list, ffmpeg_path=args.ffmpeg, progress=True
    )
    if args.json:
        common.print_json(
            {
                "model": result.model,
                "arch": result.arch,
                "data": result.data,
                "skipped": result.skipped,
                "rows": result.rows,
            },
            default=str,
        )
        return 0
    original = result.rows[0]
    print(f"{result.model} ({result.arch}), evaluated on {result.data} ({original['eval_images']:,} images)\n")
    rows = [
        (
            row["method"],
            _qp_text(row),
            f"{row['file_bytes']:,}",
            f"{row['bits_per_weight']:.3f}",
            f"{row['compression_ratio']:.1f}x",
            f"{row['weight_snr_db']:.1f}" if math.isfinite(row["weight_snr_db"]) else "exact",
            f"{row['top1']:.2f}",
            f"{row['agreement']:.2f}" if row["agreement"] is not None else "-",
        )
        for row in result.rows
    ]
    print(
        common.table(("method", "QP", "file bytes", "bits/weight", "ratio", "SNR dB", "top-1 %", "agreement %"), rows)
    )
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    print(
        "\nbits/weight: coded weights only (video streams + scales); ratio: original file size over "
        "compressed size. Lossless = the int8 symbols come back bit-exact; 'step Q' = one fixed quantization "
        "step 2^(Q/4) for every tensor, the codec lossless on the symbols (`vcwc compress --help`)."
    )
    return 0


def _qp_text(row: dict) -> str:
    if row["codec"] is None:
        return "-"
    if row.get("granularity") == "step":
        return f"step {row['qp']}"
    return "lossless" if row["qp"] is None else str(row["qp"])
