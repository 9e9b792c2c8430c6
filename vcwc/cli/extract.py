"""`vcwc extract IN.vcwc DIR`: everything a device needs to rebuild the model without vcwc."""

from __future__ import annotations

import sys

from . import common


def add_parser(commands) -> None:
    p = commands.add_parser(
        "extract",
        help="write a .vcwc file's raw video streams, scales and uncoded tensors",
        description="Writes frame_NNNN.h264/.hevc/.obu, scales.f32, uncoded.safetensors (biases, "
        "BatchNorm and every other tensor stored as it came) and streams.json (frame "
        "size, pixel format, codec, profile/level, tensor regions) for decoding on a "
        "device. The folder appears complete or not at all.",
    )
    p.add_argument("input", help="the .vcwc file")
    p.add_argument("directory", help="folder to write (created if missing)")
    common.add_force(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..codecs.streams import extract
    from ..format.container import Container

    with Container(args.input) as archive:
        path = extract(archive, args.directory, force=args.force)
        count = len(archive.meta.frames)
    print(f"{args.directory}: {count} stream{'s' if count != 1 else ''} and {path.name}", file=sys.stderr)
    return 0
