"""`vcwc info IN.vcwc [--json]`: what is in a file, tensor by tensor, and how it was made. No torch needed."""

from __future__ import annotations

from . import common


def add_parser(commands) -> None:
    p = commands.add_parser("info", help="per-tensor sizes, settings and errors of a .vcwc file, and its recipe")
    p.add_argument("input", help="the .vcwc file")
    common.add_json(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..codecs.streams import describe_streams
    from ..format.container import Container
    from ..format.report import size_report
    from ..recipe import Recipe

    with Container(args.input) as archive:
        meta = archive.meta
        report = size_report(meta, archive.file_bytes, archive.header_bytes)
        streams = describe_streams(archive)
    recipe = Recipe.from_dict(meta.recipe, f"{args.input}: recipe") if meta.recipe else None
    if args.json:
        common.print_json(
            {
                "input": args.input,
                "vcwc_version": meta.vcwc_version,
                "ffmpeg_version": meta.ffmpeg_version,
                "recipe": meta.recipe,
                "methods": meta.methods,
                "bias_correction": meta.bias_correction,
                **report.to_dict(),
                "streams": streams,
            }
        )
        return 0
    corrected = set(((meta.methods or {}).get("bias_correction") or {}).get("corrected") or ())
    rows = []
    for t in report.tensors:
        if t.storage != "video":
            rows.append(
                (
                    t.name,
                    "x".join(map(str, t.shape)),
                    t.storage,
                    "-",
                    "-",
                    "-",
                    f"{t.bytes:,.0f}",
                    f"{t.bits_per_weight:.3f}",
                    common.snr_text(t.snr_db),
                )
            )
            continue
        step = recipe.step_qp_for(t.name) if recipe else None
        qp = f"step {step:g}" if step is not None else ("lossless" if t.qp is None else str(t.qp))
        rows.append(
            (
                t.name,
                "x".join(map(str, t.shape)),
                t.codec,
                qp,
                t.rounding,
                "yes" if t.name in corrected else "-",
                f"{t.bytes:,.0f}",
                f"{t.bits_per_weight:.3f}",
                common.snr_text(t.snr_db),
            )
        )
    print(
        common.table(
            ("tensor", "shape", "codec", "QP", "rounding", "bias corr.", "bytes", "bits/weight", "SNR dB"), rows
        )
    )
    print()
    print(
        f"file {report.file_bytes:,} bytes = header+metadata {report.header_bytes:,} + video {report.video_bytes:,}"
        f" + scales {report.quantizer_bytes:,} + uncoded {report.uncoded_bytes:,}\n"
        f"{common.bits_per_weight_text(report)}; "
        f"{common.size_against_original(report.compression_ratio, 2)} than the original {report.original_bytes:,} bytes"
    )
    if recipe:
        print(f"recipe: {recipe.name or 'custom'}: {recipe.describe()}")
    methods = meta.methods or {}
    if "inputs" in methods:
        architecture = (methods.get("architecture") or {}).get("name", "the model")
        inputs = methods["inputs"]
        print(f"data-free methods ran {architecture} on {str(inputs.get('kind', '?')).replace('_', ' ')}")
    for method, section in methods.items():
        skipped = section.get("nearest_instead") or section.get("uncorrected") or {}
        for name, reason in skipped.items() if isinstance(skipped, dict) else ():
            print(f"{method.replace('_', ' ')} not applied to {name}: {reason}")
    if streams:
        print()
        rows = [
            (
                s["frame"],
                s["codec"],
                f"{s['width']}x{s['height']}",
                f"{s['bytes']:,}",
                s.get("profile", "?"),
                s.get("level", "?"),
                "yes" if s["hardware_decoders"]["fits"] else "no: " + s["hardware_decoders"]["note"],
            )
            for s in streams
        ]
        print(common.table(("frame", "codec", "size", "bytes", "profile", "level", "fits phone/GPU decoders"), rows))
    return 0
