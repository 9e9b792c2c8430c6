"""`vcwc eval MODEL_OR_VCWC --data PATH`: accuracy of an image classifier, or a text model's perplexity or
agreement with the original, against a reference."""

from __future__ import annotations

from pathlib import Path

from ..models.registry import ARCHITECTURES, DEFAULT_PREPROCESS
from . import common


def add_parser(commands) -> None:
    p = commands.add_parser("eval", help="quality of a model or .vcwc file on images or text")
    p.add_argument("model", help="a .vcwc file, or a model file")
    p.add_argument(
        "--arch",
        help=f"architecture: a registered name ({', '.join(ARCHITECTURES)}) or MODULE:CALLABLE (images are then "
        f"taken at their size and normalized with ImageNet's mean and spread); needed for images; for text, "
        f"the default is the class named by the config.json beside the model (or --reference)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="images: a .npz with x (uint8 NHWC) and y, or a folder of class folders; any other file is read "
        "as UTF-8 text (perplexity for a language model; sentence-embedding cosine to --reference for an encoder)",
    )
    p.add_argument(
        "--reference",
        help="the original model: adds agreement of top-1 predictions and mean KL (images), the perplexity "
        "change and next-token agreement (language models); a text encoder needs it",
    )
    p.add_argument(
        "--tokenizer", help="text: a tokenizer.json (default: the one beside the model, or beside --reference)"
    )
    p.add_argument(
        "--limit",
        type=int,
        help="images: a fixed class-balanced subset of this many; text: this many windows of 512 tokens "
        "(default 16) or lines (default 512)",
    )
    p.add_argument(
        "--mean",
        help="images: per-channel mean to subtract after scaling pixels to 0..1, comma-separated (default: the "
        "architecture's, else ImageNet's 0.485,0.456,0.406); with --std",
    )
    p.add_argument(
        "--std",
        help="images: per-channel spread to divide by, comma-separated (ImageNet's 0.229,0.224,0.225; a model "
        "trained on inputs in -1..1 takes 0.5,0.5,0.5 with --mean 0.5,0.5,0.5)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per batch")
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
    from ..errors import InputError
    from ..eval.datasets import is_image_data

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    result = run_images(args) if is_image_data(args.data) else run_text(args)
    if args.json:
        common.print_json({"model": args.model, "data": args.data, "reference": args.reference, **result})
    return 0


def run_images(args) -> dict:
    from ..errors import InputError
    from ..eval.classification import evaluate
    from ..eval.datasets import load_dataset
    from ..models.build import build_model, resolve

    if args.arch is None:
        raise InputError("an image evaluation needs the model's architecture: --arch NAME or MODULE:CALLABLE")
    architecture = resolve(args.arch)
    preprocess = normalized(architecture.preprocess or DEFAULT_PREPROCESS, args.mean, args.std)
    dataset = load_dataset(args.data, limit=args.limit)
    model = build_model(architecture, load_weights(args.model, args.ffmpeg))
    reference = build_model(architecture, load_weights(args.reference, args.ffmpeg)) if args.reference else None
    result = evaluate(model, dataset, preprocess, batch_size=args.batch_size, reference=reference)
    if not args.json:
        line = f"{args.model}: top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% on {result.n_images:,} images"
        if reference is not None:
            line += f"; agreement with the reference {result.agreement:.2f}%, mean KL {result.mean_kl:.2e}"
        print(line)
    return {"arch": args.arch, **result.to_dict()}


def normalized(preprocess, mean: str | None, std: str | None):
    """The preprocessing with --mean and --std in place of its own."""
    from dataclasses import replace

    from ..errors import InputError

    if mean is None and std is None:
        return preprocess
    if mean is None or std is None:
        raise InputError("--mean and --std go together")
    try:
        values = [tuple(float(part) for part in text.split(",")) for text in (mean, std)]
        return replace(preprocess, mean=values[0], std=values[1])
    except ValueError as exc:
        raise InputError(f"--mean {mean} --std {std}: {exc}") from None


def run_text(args) -> dict:
    from ..eval.text import evaluate_text, load_tokenizer, read_text, text_architecture, tokenizer_beside
    from ..models.build import build_model

    text = read_text(args.data)
    weights = load_weights(args.model, args.ffmpeg)
    # The folder that tells the architecture and the tokenizer: the model's own, else the reference's.
    folders = [path for path in (args.model, args.reference) if path and Path(path).suffix != ".vcwc"]
    architecture = text_architecture(args.arch, {name: tuple(t.shape) for name, t in weights.items()}, folders)
    tokenizer_path = args.tokenizer or tokenizer_beside(folders)
    model = build_model(architecture, weights).float()
    reference = build_model(architecture, load_weights(args.reference, args.ffmpeg)).float() if args.reference else None
    result = evaluate_text(
        model, text, load_tokenizer(tokenizer_path), args.data, reference=reference, limit=args.limit
    )
    if not args.json:
        if result.task == "language_model":
            line = f"{args.model}: perplexity {result.perplexity:.3f} over {result.tokens:,} tokens"
            if reference is not None:
                line += (
                    f"; the reference's {result.reference_perplexity:.3f} ({result.perplexity_change:+.2f}%), "
                    f"next-token agreement {result.next_token_agreement:.2f}%"
                )
        else:
            line = (
                f"{args.model}: sentence embeddings' cosine to the reference's: mean {result.mean_cosine:.4f}, "
                f"min {result.min_cosine:.4f} over {result.samples:,} lines"
            )
        print(line)
    return {"arch": architecture.name, **result.to_dict()}
