"""`vcwc decompress IN.vcwc -o OUT.safetensors|OUT.pt|DIR/`."""

from __future__ import annotations

import sys

from . import common


def add_parser(commands) -> None:
    p = commands.add_parser(
        "decompress",
        help="rebuild the model's weights from a .vcwc file",
        description="Writes every tensor with its original name, dtype and shape. A folder "
        "(a path ending in / or an existing folder) gets the input's shard files "
        "and model.safetensors.index.json; other files of the original folder "
        "(config, tokenizer) are not vcwc's business.",
    )
    p.add_argument("input", help="the .vcwc file")
    p.add_argument("-o", "--output", required=True, help="a .safetensors or .pt file, or a folder ending in /")
    p.add_argument(
        "--restore-prefix",
        action="store_true",
        help="put back the prefix (e.g. module.) and checkpoint layout the input model had",
    )
    p.add_argument(
        "--hwaccel",
        metavar="NAME",
        help="decode on hardware through this ffmpeg hwaccel (cuda, vaapi, qsv, ...); default software",
    )
    common.add_ffmpeg(p)
    common.add_jobs(p)
    p.add_argument("--force", action="store_true", help="overwrite the output file, or replace a non-empty folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..api import CompressedModel

    common.refuse_overwrite(args.output, args.force)
    compressed = CompressedModel.open(args.input)
    try:
        path = compressed.decompress_to(
            args.output,
            force=args.force,
            restore_prefix=args.restore_prefix,
            ffmpeg_path=args.ffmpeg,
            jobs=args.jobs,
            progress=True,
            hwaccel=args.hwaccel,
        )
    finally:
        compressed.close()
    print(f"{path}: {len(compressed.meta.tensors)} tensors", file=sys.stderr)
    return 0
