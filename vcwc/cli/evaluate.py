"""`vcwc eval MODEL_OR_VCWC --arch ARCH --data PATH`: accuracy of an image classifier, against a reference."""

from __future__ import annotations

import json
from pathlib import Path

from ..models.registry import ARCHITECTURES, DEFAULT_PREPROCESS


def add_parser(commands) -> None:
    p = commands.add_parser("eval", help="accuracy of a model or .vcwc file on an image evaluation set")
    p.add_argument("model", help="a .vcwc file, or a model file")
    p.add_argument(
        "--arch",
        required=True,
        help=f"architecture: a registered name ({', '.join(ARCHITECTURES)}) or MODULE:CALLABLE (images are then "
        f"taken at their size and normalized with ImageNet's mean and spread)",
    )
    p.add_argument("--data", required=True, help="a .npz with x (uint8 NHWC) and y, or a folder of class folders")
    p.add_argument("--reference", help="the original model: adds agreement of top-1 predictions and mean KL")
    p.add_argument("--limit", type=int, help="evaluate a fixed class-balanced subset of this many images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--ffmpeg", help="ffmpeg binary for .vcwc input")
    p.set_defaults(handler=run)


def load_weights(path: str, ffmpeg_path: str | None = None):
    """A state dict from a model file, or from a .vcwc file decompressed in memory."""
    from ..api import decompress
    from ..io import load_model

    if Path(path).suffix == ".vcwc":
        return decompress(path, ffmpeg_path=ffmpeg_path, progress=True)
    return load_model(path).state_dict()


def run(args) -> int:
    from ..eval.classification import evaluate
    from ..eval.datasets import load_dataset
    from ..models.build import build_model, resolve

    architecture = resolve(args.arch)
    preprocess = architecture.preprocess or DEFAULT_PREPROCESS
    dataset = load_dataset(args.data, limit=args.limit)
    model = build_model(architecture, load_weights(args.model, args.ffmpeg))
    reference = build_model(architecture, load_weights(args.reference, args.ffmpeg)) if args.reference else None
    result = evaluate(model, dataset, preprocess, batch_size=args.batch_size, reference=reference)
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "arch": args.arch,
                    "data": args.data,
                    "reference": args.reference,
                    **result.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    line = f"{args.model}: top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% on {result.n_images:,} images"
    if reference is not None:
        line += f"; agreement with the reference {result.agreement:.2f}%, mean KL {result.mean_kl:.2e}"
    print(line)
    return 0
