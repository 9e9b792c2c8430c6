"""Command line: a thin layer over the library. `main(argv)` returns the exit code."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import __version__, codecs, ffmpeg, probe
from .architectures import ARCHITECTURES
from .demo import SOFTWARE_CODECS
from .errors import InputError, VcwcError
from .experiment import BASELINES
from .files import check_output, load_model, save_state_dict
from .nncodec import QP_LADDER as NNCODEC_QP_LADDER
from .pipeline import CompressedModel, Selection, compress
from .quantize import step_from_qp
from .report import size_report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except VcwcError as exc:
        print(f"vcwc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vcwc: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcwc", description="Compress neural-network weights with video codecs.")
    parser.add_argument("--version", action="version", version=f"vcwc {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = commands.add_parser("compress", help="compress a model file into a .vcwc file")
    p.add_argument("model", help="a .pt/.pth/.th checkpoint or a .safetensors file")
    p.add_argument("-o", "--output", required=True, help="the .vcwc file to write")
    p.add_argument("--codec", choices=[*codecs.codec_names(), "auto"], metavar="CODEC",
                   help=f"video codec or profile (default x265): {', '.join(codecs.codec_names())}; or auto, the "
                        f"first working of {', '.join(codecs.AUTO_ORDER)}")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--qp", type=int, help="lossy coding at this constant QP (all-intra)")
    mode.add_argument("--lossless", action="store_true",
                      help="int8 symbols come back bit-exact (the default; the int8 rounding remains)")
    p.add_argument("--per-channel", action="store_true", help="one int8 scale per output channel")
    p.add_argument("--bits", type=int, default=8, help="quantization bits, 2..8 (default 8)")
    step = p.add_mutually_exclusive_group()
    step.add_argument("--step", type=float,
                      help="one quantization step in weight units for every tensor (NNC-style), then lossless "
                           "coding of the small symbols; e.g. 0.022 (see docs/rate-accuracy.md)")
    step.add_argument("--step-qp", type=int, metavar="QP",
                      help="the same step as a QP on NNCodec's scale, step = 2^(QP/4); write --step-qp=-18")
    step.add_argument("--target-drop", type=float, metavar="POINTS",
                      help="choose per-tensor steps by evaluation on --calibration: the coarsest whose top-1 "
                           "predictions change on at most POINTS %% of the calibration images (implies "
                           "--bias-correction; needs --arch)")
    p.add_argument("--calibration", metavar="DATA",
                   help="images for --target-drop (.npz with x, y, or class folders), e.g. "
                        "cifar10_train_lossless_subset.npz; never the test set you report on. Held-out images "
                        "predict the drop best: on its own training images a model changes fewer predictions")
    p.add_argument("--calibration-limit", type=int, metavar="N",
                   help="a class-balanced subset of N calibration images (faster, coarser)")
    p.add_argument("--max-evaluations", type=int, default=40, help="--target-drop's budget (default 40)")
    p.add_argument("--bias-correction", action="store_true",
                   help="correct BatchNorm running means and biases for the coded weights' mean output shift, "
                        "without data (needs --arch)")
    p.add_argument("--rounding", choices=["nearest", "gptq"], default="nearest",
                   help="how weights take their levels: nearest, or gptq (error-compensating rounding steered "
                        "by BatchNorm-driven noise, no data; needs --arch; smaller at equal accuracy, slower)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), metavar="ARCH",
                   help="the model's architecture, for --bias-correction and --rounding gptq: "
                        f"{', '.join(ARCHITECTURES)}")
    p.add_argument("--layers", choices=["all", "fc"], default="all",
                   help="code every >=2-D float tensor (all) or only 2-D fully-connected weights (fc)")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="code only tensors whose names match (fnmatch; repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="keep tensors whose names match exact (fnmatch; repeatable), e.g. conv1.weight")
    p.add_argument("--arrangement", choices=["rows", "kernel_blocks"], default="rows",
                   help="conv kernels as flattened rows or as k x k blocks in the frame")
    p.add_argument("--preset", help="encoder preset (x264/x265 names, aom cpu-used, SVT-AV1 preset number)")
    p.add_argument("--uncoded", choices=["exact", "float16"], default="exact",
                   help="how to store tensors that are not video-coded (biases, BatchNorm)")
    p.add_argument("--hw-device", metavar="DEVICE",
                   help="hardware device: a DRM render node for VA-API/QSV, a GPU index for NVENC")
    p.add_argument("--encoder", metavar="NAME", help="any ffmpeg encoder instead of --codec, with --encoder-args")
    p.add_argument("--encoder-args", default="", metavar="ARGS",
                   help='its options, e.g. "-qp {qp} -g 1"; without {qp} they must be lossless (verified)')
    p.add_argument("--encoder-format", choices=["h264", "hevc", "obu"],
                   help="the stream --encoder writes: h264, hevc, or obu (AV1)")
    _add_common(p, force=True, json_output=True)
    p.set_defaults(handler=_compress)

    p = commands.add_parser("decompress", help="rebuild a state dict from a .vcwc file")
    p.add_argument("input", help="the .vcwc file")
    p.add_argument("-o", "--output", required=True, help="a .safetensors or .pt file to write")
    p.add_argument("--restore-prefix", action="store_true",
                   help="put back the prefix (e.g. module.) and checkpoint layout the input model had")
    p.add_argument("--hwaccel", metavar="NAME",
                   help="decode on hardware through this ffmpeg hwaccel (cuda, vaapi, qsv, ...); default software")
    _add_common(p, force=True)
    p.set_defaults(handler=_decompress)

    p = commands.add_parser("info", help="per-tensor sizes, codecs and errors of a .vcwc file")
    p.add_argument("input", help="the .vcwc file")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(handler=_info)

    p = commands.add_parser("extract", help="write a .vcwc file's raw video streams and their description",
                            description="Writes frame_NNNN.h264/.hevc/.obu, scales.f32 and streams.json (frame "
                                        "size, pixel format, codec, profile/level, tensor regions) for decoding "
                                        "on a device.")
    p.add_argument("input", help="the .vcwc file")
    p.add_argument("directory", help="folder to write (created if missing)")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    p.set_defaults(handler=_extract)

    p = commands.add_parser("eval", help="accuracy of a model or .vcwc file on an evaluation set")
    p.add_argument("model", help="a .vcwc file, or a .pt/.pth/.th/.safetensors model")
    p.add_argument("--arch", required=True, help=f"architecture: {', '.join(ARCHITECTURES)}")
    p.add_argument("--data", required=True, help="a .npz with x (uint8 NHWC) and y, or a folder of class folders")
    p.add_argument("--reference", help="the original model: adds agreement of top-1 predictions and mean KL")
    p.add_argument("--limit", type=int, help="evaluate a fixed class-balanced subset of this many images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--ffmpeg", help="ffmpeg binary for .vcwc input")
    p.set_defaults(handler=_eval)

    p = commands.add_parser("demo", help="compress a model with every working codec and compare size and accuracy",
                            description="With no arguments: the bundled digits ResNet and its held-out digits.")
    p.add_argument("--model", help="model file (default: the bundled digits ResNet)")
    p.add_argument("--arch", help="architecture of --model (default: digits_resnet)")
    p.add_argument("--data", help="evaluation set (default: the bundled held-out digits)")
    p.add_argument("--limit", type=int, help="evaluate a fixed class-balanced subset of this many images")
    p.add_argument("--codecs", default=",".join(SOFTWARE_CODECS), help="comma-separated codecs")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: $VCWC_FFMPEG, else imageio-ffmpeg's)")
    p.set_defaults(handler=_demo)

    p = commands.add_parser("sweep", help="compare codecs and QPs on size against accuracy over many models",
                            description="Each point (model, codec, scales, QP) writes its own JSON record under "
                                        "OUT/points; finished points are skipped on rerun.")
    p.add_argument("--models", nargs="+", required=True, metavar="SPEC",
                   help="PATH:ARCH:DATA[:LIMIT], or a .toml file of [[model]] tables (name, path, arch, data, limit)")
    p.add_argument("--codecs", default=",".join(SOFTWARE_CODECS), help="comma-separated codecs or profiles")
    p.add_argument("--qps", help="comma-separated QPs, 'lossless' for lossless (default: each codec's own ladder)")
    p.add_argument("--granularity", default="per_tensor,per_channel",
                   help="comma-separated: per_tensor, per_channel (int8 scales, then the codec at --qps), step "
                        "(one fixed step 2^(QP/4) for every tensor at --step-qps, codec lossless); default "
                        "per_tensor,per_channel")
    p.add_argument("--corrections", default="none", metavar="LIST",
                   help="comma-separated: none, bias (data-free bias correction), gptq+bias (data-free "
                        "error-compensating rounding too); both need each model's arch; every codec point is run "
                        "once per entry (default none)")
    p.add_argument("--step-qps", metavar="LIST",
                   help="comma-separated step QPs for --granularity step, on NNCodec's QP scale; write "
                        "--step-qps=-22,-21 (default -26 to -14)")
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated baselines, or 'none'")
    p.add_argument("--screen", type=int, metavar="N",
                   help="score every QP on N class-balanced images first, then the full data only around each knee")
    p.add_argument("--knee-agreement", type=float, default=99.0,
                   help="with --screen: the knee is the first QP whose screening agreement falls below this %%")
    p.add_argument("--out", required=True, help="sweep folder (records, tables, plots)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="points in parallel processes (threads are split)")
    p.add_argument("--force", action="store_true", help="recompute finished points")
    p.add_argument("--dry-run", action="store_true", help="list the points and whether they are done, run nothing")
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: $VCWC_FFMPEG, else imageio-ffmpeg's)")
    p.add_argument("--nncodec", action="store_true",
                   help="add the NNCodec baseline (needs scripts/setup_nncodec.sh; skipped if not set up)")
    p.add_argument("--nncodec-qps", metavar="LIST",
                   help="comma-separated NNCodec QPs, implies --nncodec; write --nncodec-qps=-30,-29 (with '=', "
                        f"as they start with a minus) (default {','.join(map(str, NNCODEC_QP_LADDER))})")
    p.add_argument("--nncodec-python", metavar="PATH",
                   help="the NNCodec environment's python (default: $VCWC_NNCODEC_PYTHON, else .venv-nncodec)")
    p.set_defaults(handler=_sweep)

    p = commands.add_parser("report", help="rebuild a sweep's tables and plots from its JSON records")
    p.add_argument("out", help="the sweep folder")
    p.set_defaults(handler=_report)

    p = commands.add_parser("encoders", help="which encoders this ffmpeg has and which work here")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: $VCWC_FFMPEG, else imageio-ffmpeg's)")
    p.add_argument("--refresh", action="store_true", help="probe every encoder again, ignoring cached results")
    p.set_defaults(handler=_encoders)
    return parser


def _add_common(p, *, force=False, json_output=False):
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: $VCWC_FFMPEG, else imageio-ffmpeg's)")
    p.add_argument("--workers", type=int, help="ffmpeg processes at once (default: one per core)")
    if force:
        p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    if json_output:
        p.add_argument("--json", action="store_true", help="machine-readable summary on stdout")


def _compress(args) -> int:
    output = Path(args.output)
    check_output(output, args.force)
    model = load_model(args.model)
    selection = Selection(args.layers, tuple(args.include), tuple(args.exclude))
    video_codec = _chosen_codec(args)
    for option, used in (("--bias-correction", args.bias_correction), ("--target-drop", args.target_drop),
                         ("--rounding gptq", args.rounding == "gptq")):
        if used and not args.arch:
            raise InputError(f"{option} needs --arch (the model's architecture)")
    step = step_from_qp(args.step_qp) if args.step_qp is not None else args.step
    searched = None
    if args.target_drop is not None:
        searched = _target_search(args, model, selection)
        step = {name: step_from_qp(qp) for name, qp in searched.best.step_qps.items()}
    compressed = compress(model, codec=video_codec, qp=args.qp, per_channel=args.per_channel, bits=args.bits,
                          step=step, bias_correction=args.bias_correction or searched is not None,
                          rounding=args.rounding, arch=args.arch,
                          selection=selection, arrangement=args.arrangement, preset=args.preset,
                          uncoded=args.uncoded, ffmpeg_path=args.ffmpeg, workers=args.workers, progress=True,
                          device=args.hw_device)
    compressed.save(output, force=args.force)
    report = size_report(compressed)
    search = _search_summary(searched) if searched else None
    if args.json:
        print(json.dumps({"output": str(output), **_summary(report), **({"target_drop": search} if search else {})},
                         indent=2))
    else:
        if search:
            print(f"--target-drop {args.target_drop}: {search['evaluations']} evaluations on {search['images']:,} "
                  f"calibration images; chosen step QPs {search['step_qps_range']}, calibration agreement "
                  f"{search['agreement']:.2f}%, mean KL {search['mean_kl']:.4f}")
        if args.qp is not None:
            lossy = f"QP {args.qp}"
        elif step is not None:
            lossy = "fixed quantization step" + ("s per tensor" if searched else "") + ", lossless on the symbols"
        else:
            lossy = "lossless on the int8 symbols"
        if args.rounding != "nearest":
            lossy += f", {args.rounding} rounding"
        if args.bias_correction or searched:
            lossy += ", bias-corrected"
        print(f"{output}: {report.file_bytes:,} bytes, {report.compression_ratio:.1f}x smaller than the original "
              f"({report.original_bytes:,} bytes); {report.coded_weights:,} weights coded with {video_codec.name}, "
              f"{lossy}, at {report.bits_per_weight:.3f} bits/weight; lowest weight SNR {_lowest_snr(report)}")
    return 0


def _chosen_codec(args) -> codecs.Codec:
    """The codec --codec, --codec auto or --encoder asks for; auto says on stderr what it picked."""
    from .hardware import CustomCodec

    if args.encoder:
        if args.codec:
            raise InputError("give either --codec or --encoder, not both")
        if not args.encoder_format:
            raise InputError("--encoder needs --encoder-format (h264, hevc or obu) to know how to store and decode")
        return CustomCodec(args.encoder, args.encoder_args, args.encoder_format, probe_qp=args.qp)
    if args.encoder_args or args.encoder_format:
        raise InputError("--encoder-args and --encoder-format go with --encoder")
    if args.codec != "auto":
        chosen = codecs.get_codec(args.codec or "x265")
        if chosen.experimental:
            print(f"vcwc: {chosen.name} is experimental (never run end to end by the maintainers); the round "
                  f"trip is verified as for any codec", file=sys.stderr)
        return chosen
    settings = codecs.EncoderSettings(qp=args.qp, preset=args.preset, device=args.hw_device)
    chosen, passed = probe.choose_auto(ffmpeg.find_ffmpeg(args.ffmpeg), settings)
    for name, why in passed:
        print(f"vcwc: --codec auto: passed over {name}: {why}", file=sys.stderr)
    print(f"vcwc: --codec auto picked {chosen.name} ({chosen.encoder})", file=sys.stderr)
    return chosen


def _decompress(args) -> int:
    output = Path(args.output)
    check_output(output, args.force)
    compressed = CompressedModel.open(args.input)
    state_dict = compressed.decompress(ffmpeg_path=args.ffmpeg, workers=args.workers, progress=True,
                                       hwaccel=args.hwaccel)
    source = compressed.metadata["source"]
    extras, container_key = source["extras"] or None, None
    if args.restore_prefix:
        state_dict = {source["prefix"] + name: tensor for name, tensor in state_dict.items()}
        container_key = source["container_key"]
    save_state_dict(state_dict, output, force=args.force, extras=extras, container_key=container_key)
    print(f"{output}: {len(state_dict)} tensors", file=sys.stderr)
    return 0


def _info(args) -> int:
    from .streams import describe_streams

    compressed = CompressedModel.open(args.input)
    report = size_report(compressed)
    streams = describe_streams(compressed)
    if args.json:
        print(json.dumps({"input": args.input, "vcwc_version": compressed.metadata["vcwc_version"],
                          "ffmpeg_version": compressed.metadata["ffmpeg_version"], **report.to_dict(),
                          "streams": streams}, indent=2))
        return 0
    rows = [(t.name, "x".join(map(str, t.shape)), t.storage if t.storage == "uncoded" else t.codec,
             "-" if t.qp is None else str(t.qp), f"{t.bytes:,.0f}", f"{t.bits_per_weight:.3f}", _snr_text(t.snr_db))
            for t in report.tensors]
    print(_table(("tensor", "shape", "codec", "QP", "bytes", "bits/weight", "SNR dB"), rows))
    print()
    print(_summary_text(report))
    if streams:
        print()
        fit = [s["hardware_decoders"] for s in streams]
        rows = [(s["frame"], s["codec"], f"{s['width']}x{s['height']}", f"{s['bytes']:,}", s.get("profile", "?"),
                 s.get("level", "?"), "yes" if f["fits"] else "no: " + f["note"]) for s, f in zip(streams, fit)]
        print(_table(("frame", "codec", "size", "bytes", "profile", "level", "fits phone/GPU decoders"), rows))
    return 0


def _extract(args) -> int:
    from .streams import extract

    compressed = CompressedModel.open(args.input)
    path = extract(compressed, args.directory, force=args.force)
    count = len(compressed.metadata["frames"])
    print(f"{args.directory}: {count} stream{'s' if count != 1 else ''} and {path.name}", file=sys.stderr)
    return 0


def _eval(args) -> int:
    from .architectures import build_model, get_architecture
    from .datasets import load_dataset
    from .evaluate import evaluate

    spec = get_architecture(args.arch)
    dataset = load_dataset(args.data, limit=args.limit)
    model = build_model(args.arch, load_weights(args.model, args.ffmpeg))
    reference = build_model(args.arch, load_weights(args.reference, args.ffmpeg)) if args.reference else None
    result = evaluate(model, dataset, spec.preprocess, batch_size=args.batch_size, reference=reference)
    if args.json:
        print(json.dumps({"model": args.model, "arch": args.arch, "data": args.data, "reference": args.reference,
                          **result.to_dict()}, indent=2))
        return 0
    line = f"{args.model}: top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% on {result.n_images:,} images"
    if reference is not None:
        line += f"; agreement with the reference {result.agreement:.2f}%, mean KL {result.mean_kl:.2e}"
    print(line)
    return 0


def load_weights(path: str, ffmpeg_path: str | None = None):
    """A state dict from a model file, or from a .vcwc file decompressed in memory."""
    if Path(path).suffix == ".vcwc":
        return CompressedModel.open(path).decompress(ffmpeg_path=ffmpeg_path, progress=True)
    return load_model(path).state_dict


def _demo(args) -> int:
    from .demo import run_demo

    codec_list = [name.strip() for name in args.codecs.split(",") if name.strip()]
    for name in codec_list:
        codecs.get_codec(name)  # unknown names fail before any work
    result = run_demo(args.model, args.arch, args.data, limit=args.limit, codecs=codec_list,
                      ffmpeg_path=args.ffmpeg, progress=True)
    if args.json:
        print(json.dumps({"model": result.model, "arch": result.arch, "data": result.data, "skipped": result.skipped,
                          "rows": result.rows}, indent=2, default=str))
        return 0
    original = result.rows[0]
    print(f"{result.model} ({result.arch}), evaluated on {result.data} ({original['eval_images']:,} images)\n")
    rows = [(row["method"], _qp_text(row), f"{row['file_bytes']:,}", f"{row['bits_per_weight']:.3f}",
             f"{row['compression_ratio']:.1f}x", f"{row['weight_snr_db']:.1f}" if math.isfinite(row["weight_snr_db"])
             else "exact", f"{row['top1']:.2f}", f"{row['agreement']:.2f}" if row["agreement"] is not None else "-")
            for row in result.rows]
    print(_table(("method", "QP", "file bytes", "bits/weight", "ratio", "SNR dB", "top-1 %", "agreement %"), rows))
    for name, reason in result.skipped.items():
        print(f"skipped {name}: {reason}")
    print("\nbits/weight: coded weights only (video streams + scales); ratio: original file size over "
          "compressed size. Lossless = the int8 symbols come back bit-exact.")
    return 0


def _qp_text(row: dict) -> str:
    if row["codec"] is None:
        return "-"
    return "lossless" if row["qp"] is None else str(row["qp"])


def _sweep(args) -> int:
    from .sweep import GRANULARITIES, ModelSpec, Sweep, knee_points, plan_points
    from .sweep_report import write_report

    models = [spec for text in args.models for spec in ModelSpec.parse(text)]
    codec_list = _split(args.codecs)
    for name in codec_list:
        codecs.get_codec(name)
    granularities = _split(args.granularity)
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise InputError(f"--granularity: {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    baselines = () if args.baselines == "none" else tuple(_split(args.baselines))
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise InputError(f"--baselines: unknown {', '.join(unknown)}; known: {', '.join(BASELINES)}")
    qps = None
    if args.qps:
        values = [None if value == "lossless" else _int_option("--qps", value) for value in _split(args.qps)]
        qps = {name: values for name in codec_list}
    nncodec_qps = None
    if args.nncodec_qps:
        nncodec_qps = [_int_option("--nncodec-qps", value) for value in _split(args.nncodec_qps)]
    elif args.nncodec:
        nncodec_qps = list(NNCODEC_QP_LADDER)
    step_qps = [_int_option("--step-qps", value) for value in _split(args.step_qps)] if args.step_qps else None
    sweep = Sweep(Path(args.out), force=args.force, jobs=args.jobs, ffmpeg_path=args.ffmpeg,
                  nncodec_python=args.nncodec_python)
    grid = dict(nncodec_qps=nncodec_qps, step_qps=step_qps, corrections=tuple(_split(args.corrections)))
    if args.screen:
        screening = plan_points(models, codec_list, granularities, qps, baselines=(), eval_limit=args.screen, **grid)
        full_grid = plan_points(models, codec_list, granularities, qps, baselines=baselines, **grid)
        if args.dry_run:
            return _list_points(sweep, screening)
        screened = sweep.run(screening)
        points = [p for p in full_grid if p.is_baseline] + knee_points(screened, full_grid, args.knee_agreement)
    else:
        points = plan_points(models, codec_list, granularities, qps, baselines=baselines, **grid)
        if args.dry_run:
            return _list_points(sweep, points)
    records = sweep.run(points)
    paths = write_report(Path(args.out))
    failed = [r for r in records if r.get("status") == "failed"]
    print(f"{len(records)} points ({len(failed)} failed); wrote {', '.join(str(p) for p in paths.values())}",
          file=sys.stderr)
    for record in failed:
        print(f"failed: {record['label']}: {record['error'].splitlines()[0]}", file=sys.stderr)
    return 1 if failed else 0


def _list_points(sweep, points) -> int:
    pending = set(map(id, sweep.pending(points)))
    for point in points:
        print(f"{'todo' if id(point) in pending else 'done'}  {sweep.key(point)}  {point.label()}")
    print(f"{len(pending)} of {len(points)} points to run", file=sys.stderr)
    return 0


def _report(args) -> int:
    from .sweep_report import write_report

    paths = write_report(Path(args.out))
    print("\n".join(str(path) for path in paths.values()))
    return 0


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_option(option: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        also = " or 'lossless'" if option == "--qps" else ""
        raise InputError(f"{option}: {value!r} is not a whole number{also}") from None


def _encoders(args) -> int:
    binary = ffmpeg.find_ffmpeg(args.ffmpeg)
    statuses = probe.all_availability(binary, refresh=args.refresh)
    if args.json:
        print(json.dumps({"ffmpeg": binary, "ffmpeg_version": ffmpeg.version(binary),
                          "encoders": [{**codecs.get_codec(s.codec).describe(), **s.to_dict()} for s in statuses]},
                         indent=2))
        return 0
    print(f"{ffmpeg.version(binary)}\n{binary}\n")
    rows = []
    for s in statuses:
        codec = codecs.get_codec(s.codec)
        kind = codec.kind + (", experimental" if codec.experimental else "")
        rows.append((s.codec, s.encoder, codec.standard, kind, codec.default_mode, "yes" if s.works else "no",
                     s.reason))
    print(_table(("codec", "encoder", "standard", "kind", "default", "works", "reason"), rows))
    print("\nlossy codecs need --qp; --codec auto tries " + ", ".join(codecs.AUTO_ORDER) + " in that order")
    return 0


def _target_search(args, model, selection):
    from .datasets import load_dataset
    from .target import search

    if not args.calibration:
        raise InputError("--target-drop needs --calibration (images to evaluate on, not the test set)")
    calibration = load_dataset(args.calibration, limit=args.calibration_limit)
    return search(model, args.arch, calibration, args.target_drop, max_evaluations=args.max_evaluations,
                  selection=selection, rounding=args.rounding, progress=True)


def _search_summary(searched) -> dict:
    best, qps = searched.best, searched.best.step_qps
    return {"target_drop": searched.target_drop, "evaluations": searched.evaluations,
            "images": searched.subject.original.n_images, "agreement": best.agreement, "mean_kl": best.mean_kl,
            "calibration_top1": best.calibration_top1, "original_calibration_top1": searched.subject.original.top1,
            "step_qps": qps, "step_qps_range": f"{min(qps.values())}..{max(qps.values())}"}


def _summary(report) -> dict:
    return {key: value for key, value in report.to_dict().items() if key != "tensors"}


def _summary_text(report) -> str:
    return (f"file {report.file_bytes:,} bytes = header+metadata {report.header_bytes:,} + video {report.video_bytes:,}"
            f" + scales {report.quantizer_bytes:,} + uncoded {report.uncoded_bytes:,}\n"
            f"{report.coded_weights:,} coded weights at {report.bits_per_weight:.3f} bits/weight; "
            f"{report.compression_ratio:.2f}x smaller than the original {report.original_bytes:,} bytes")


def _lowest_snr(report) -> str:
    values = [float(t.snr_db) for t in report.tensors if t.storage == "video"]
    return f"{min(values):.1f} dB" if values else "n/a"


def _snr_text(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    return "exact" if math.isinf(value) and value > 0 else f"{value:.1f}"


def _table(header, rows) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
