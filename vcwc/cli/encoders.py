"""`vcwc encoders`: which encoders this ffmpeg has and which work here. No torch needed."""

from __future__ import annotations

from . import common


def add_parser(commands) -> None:
    p = commands.add_parser("encoders", help="which encoders this ffmpeg has and which work here")
    common.add_json(p)
    common.add_ffmpeg(p)
    p.add_argument("--refresh", action="store_true", help="probe every encoder again, ignoring cached results")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..codecs import AUTO_ORDER, ffmpeg, get_codec, probe

    binary = ffmpeg.find_ffmpeg(args.ffmpeg)
    statuses = probe.all_availability(binary, refresh=args.refresh)
    if args.json:
        common.print_json(
            {
                "ffmpeg": binary,
                "ffmpeg_version": ffmpeg.version(binary),
                "encoders": [{**get_codec(s.codec).describe(), **s.to_dict()} for s in statuses],
            }
        )
        return 0
    print(f"{ffmpeg.version(binary)}\n{binary}\n")
    rows = []
    for s in statuses:
        codec = get_codec(s.codec)
        kind = codec.kind + (", experimental" if codec.experimental else "")
        rows.append(
            (s.codec, s.encoder, codec.standard, kind, codec.default_mode, "yes" if s.works else "no", s.reason)
        )
    print(common.table(("codec", "encoder", "standard", "kind", "default", "works", "reason"), rows))
    print("\nlossy codecs need --qp; --codec auto tries " + ", ".join(AUTO_ORDER) + " in that order")
    return 0
