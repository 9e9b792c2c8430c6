"""`vcwc compress MODEL -o OUT.vcwc [--recipe NAME|FILE] [settings that override the recipe's]`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..codecs.base import AUTO_ORDER, codec_names
from ..errors import InputError
from ..models.registry import ARCHITECTURES, NO_ARCHITECTURE
from ..recipe import CUSTOM_PREFIX, RECIPES, Recipe, get_recipe, qp_from_step
from ..recipe.settings import ALLOCATIONS, ROUNDINGS
from . import common, target_drop

RECIPE_HELP = "; ".join(f"{name}: {recipe.describe()}" for name, recipe in RECIPES.items())


def add_parser(commands) -> None:
    p = commands.add_parser(
        "compress",
        help="compress a model file into a .vcwc file",
        description="Compress a model with a recipe. Named recipes: " + RECIPE_HELP + ". Any setting below "
        "overrides the recipe's. gptq rounding and the bias correction need the architecture (--arch); "
        "with 'auto' they apply where it is given and the model's statistics suit them (docs/recipes.md).",
    )
    p.add_argument(
        "model",
        help="a .pt/.pth/.th/.bin checkpoint, a .safetensors file, or a Hugging Face folder: sharded "
        "safetensors (or its model.safetensors.index.json), model.safetensors or pytorch_model.bin",
    )
    p.add_argument("-o", "--output", required=True, help="the .vcwc file to write")
    p.add_argument(
        "--recipe",
        default="lossless",
        metavar="NAME|FILE",
        help=f"{', '.join(RECIPES)} (default lossless), or a .json/.toml recipe file",
    )
    p.add_argument(
        "--codec",
        choices=[*codec_names(), "auto"],
        metavar="CODEC",
        help=f"video codec or profile: {', '.join(codec_names())}; or auto, the first working of "
        f"{', '.join(AUTO_ORDER)}",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--qp", type=int, help="lossy coding at this constant QP (all-intra)")
    mode.add_argument(
        "--lossless",
        action="store_true",
        help="the codec returns the symbols bit-exactly (the quantization error remains)",
    )
    p.add_argument("--preset", help="encoder preset (x264/x265 names, aom cpu-used, SVT-AV1 preset number)")
    scales = p.add_mutually_exclusive_group()
    scales.add_argument(
        "--per-channel",
        action="store_const",
        const="per_channel",
        dest="granularity",
        help="one scale per output channel",
    )
    scales.add_argument(
        "--per-tensor", action="store_const", const="per_tensor", dest="granularity", help="one scale per tensor"
    )
    p.add_argument("--bits", type=int, help="quantization bits, 2..10 (9 and 10 in 10-bit frames)")
    step = p.add_mutually_exclusive_group()
    step.add_argument(
        "--step-qp",
        type=float,
        metavar="QP",
        help="one quantization step 2^(QP/4) in weight units for every tensor (NNCodec's QP scale; "
        "useful range about -32 to -14); write --step-qp=-16",
    )
    step.add_argument("--step", type=float, help="the same step in weight units, e.g. 0.0625")
    step.add_argument("--no-step", action="store_true", help="no fixed step: scales from each tensor's range")
    step.add_argument(
        "--target-drop",
        type=float,
        metavar="POINTS",
        help="choose per-tensor steps by evaluation on --calibration: the coarsest whose top-1 "
        "predictions change on at most POINTS %% of the calibration images (needs --arch)",
    )
    p.add_argument(
        "--allocation",
        choices=ALLOCATIONS,
        help="steps per tensor: one for all (uniform), or moved around the base by how much each tensor's error moves "
        "the model's output (sensitivity; no data; needs --arch), also per column of each tensor "
        "(sensitivity_columns), or auto (sensitivity_columns where --arch is given)",
    )
    p.add_argument(
        "--rounding",
        choices=ROUNDINGS,
        help="how weights take their levels: nearest, gptq (error-compensating rounding steered by "
        "noise, no data; needs --arch), dependent (two quantizers switched by a state machine, as NNC's; "
        "needs the codec lossless), or auto (gptq where --arch is given and the inputs are --calibration "
        "or the network has BatchNorm, else dependent where lossless; docs/recipes.md)",
    )
    bias = p.add_mutually_exclusive_group()
    bias.add_argument(
        "--bias-correction",
        action="store_const",
        const="on",
        dest="bias_correction",
        help="correct BatchNorm running means and biases for the coded weights' mean output shift, "
        "without data (needs --arch)",
    )
    bias.add_argument(
        "--no-bias-correction",
        action="store_const",
        const="off",
        dest="bias_correction",
        help="switch the bias correction off",
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help=f"the model's architecture, for the data-free methods: a registered name "
        f"({', '.join(ARCHITECTURES)}) or MODULE:CALLABLE, a callable of an importable module "
        f"that returns the model (nn.Module) without arguments. Without it, a Hugging Face model's "
        f"config.json beside the weights names it (with transformers installed); {NO_ARCHITECTURE}: weight-only",
    )
    p.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="one input's shape for the noise pass where the architecture does not say, e.g. 3,224,224",
    )
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="real model inputs (.npz, .pt or .safetensors: one array is the positional input, several "
        "named arrays such as input_ids and attention_mask are keyword arguments) that drive gptq and "
        "the bias correction instead of noise; the file records that data was used. With "
        "--target-drop: labelled images (.npz with x, y, or class folders), never the test set you "
        "report on; held-out images predict the drop best",
    )
    p.add_argument(
        "--calibration-limit",
        type=int,
        metavar="N",
        help="use the first N calibration inputs (with --target-drop: a class-balanced subset of N images)",
    )
    p.add_argument("--max-evaluations", type=int, default=40, help="--target-drop's budget (default 40)")
    p.add_argument(
        "--layers",
        choices=["all", "fc"],
        help="code every >=2-D float tensor (all) or only 2-D fully-connected weights (fc)",
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="code only tensors whose names match (fnmatch; repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="keep tensors whose names match as they are (fnmatch; repeatable), e.g. conv1.weight",
    )
    p.add_argument(
        "--arrangement",
        choices=["rows", "kernel_blocks"],
        help="conv kernels as flattened rows or as k x k blocks in the frame",
    )
    p.add_argument(
        "--uncoded",
        choices=["exact", "float16"],
        help="how to store tensors that are not video-coded (biases, BatchNorm)",
    )
    p.add_argument(
        "--hw-device", metavar="DEVICE", help="hardware device: a DRM render node for VA-API/QSV, a GPU index for NVENC"
    )
    p.add_argument("--encoder", metavar="NAME", help="any ffmpeg encoder instead of --codec, with --encoder-args")
    p.add_argument(
        "--encoder-args",
        metavar="ARGS",
        help='its options, e.g. "-qp {qp} -g 1"; without {qp} they must be lossless (verified)',
    )
    p.add_argument(
        "--encoder-format",
        choices=["h264", "hevc", "obu"],
        help="the stream --encoder writes: h264, hevc, or obu (AV1)",
    )
    p.add_argument(
        "--min-snr",
        type=float,
        metavar="DB",
        help="refuse (write nothing) if a coded tensor's weight SNR falls below DB; below 10 dB is always a warning",
    )
    common.add_ffmpeg(p)
    common.add_jobs(p)
    common.add_force(p)
    common.add_json(p, "one JSON object on stdout (bits_per_weight, sizes, recipe, methods, warnings)")
    p.set_defaults(handler=run)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The named or file recipe, with the settings given on the command line put in."""
    recipe = get_recipe(args.recipe)
    changes: dict = {}
    if args.encoder:
        if args.codec:
            raise InputError("give either --codec or --encoder, not both")
        if not args.encoder_format:
            raise InputError("--encoder needs --encoder-format (h264, hevc or obu) to know how to store and decode")
        changes.update(
            {
                "codec.name": CUSTOM_PREFIX + args.encoder,
                "codec.encoder_args": args.encoder_args or "",
                "codec.encoder_format": args.encoder_format,
                "codec.preset": None,
            }
        )
    elif args.encoder_args or args.encoder_format:
        raise InputError("--encoder-args and --encoder-format go with --encoder")
    elif args.codec:
        changes["codec.name"] = args.codec
        if recipe.codec.preset is not None and args.preset is None:
            changes["codec.preset"] = None  # a named recipe's preset belongs to its own codec
    if args.qp is not None:
        changes["codec.qp"] = args.qp
    elif args.lossless:
        changes["codec.qp"] = None
    if args.preset is not None:
        changes["codec.preset"] = args.preset
    if args.granularity:
        changes["quantizer.granularity"] = args.granularity
    if args.bits is not None:
        changes["quantizer.bits"] = args.bits
    if args.step_qp is not None:
        changes["quantizer.step_qp"] = args.step_qp
    elif args.step is not None:
        if not (args.step > 0 and math.isfinite(args.step)):
            raise InputError(f"--step must be a positive number, got {args.step}")
        changes["quantizer.step_qp"] = qp_from_step(args.step)
    elif args.no_step or args.target_drop is not None:
        changes["quantizer.step_qp"] = None
    if args.rounding:
        changes["rounding"] = args.rounding
    if args.allocation:
        changes["quantizer.allocation"] = args.allocation
    if args.bias_correction:
        changes["bias_correction"] = args.bias_correction
    for option in ("layers", "arrangement", "uncoded"):
        if getattr(args, option):
            changes[option if option != "layers" else "selection.layers"] = getattr(args, option)
    if args.include:
        changes["selection.include"] = tuple(args.include)
    if args.exclude:
        changes["selection.exclude"] = tuple(args.exclude)
    return recipe.with_changes(**changes)


def run(args) -> int:
    from ..api import compress
    from ..io import load_model
    from ..models.huggingface import config_path

    output = Path(args.output)
    common.refuse_overwrite(args.output, args.force)
    recipe = recipe_from_args(args)
    input_shape = common.shape("--input-shape", args.input_shape)
    folder_config = args.arch is None and config_path(args.model) is not None  # the API may build it from there
    for option, used in (
        (f"--allocation {recipe.quantizer.allocation}", recipe.quantizer.by_sensitivity),
        ("--target-drop", args.target_drop is not None),
        ("--rounding gptq", recipe.rounding == "gptq"),
        ("--bias-correction", recipe.bias_correction == "on"),
    ):
        if used and args.arch in (None, NO_ARCHITECTURE) and not folder_config:
            raise InputError(f"{option} needs --arch (the model's architecture)")
    model = load_model(args.model)
    searched = None
    if args.target_drop is not None:
        searched, recipe = target_drop.searched_recipe(args, model, recipe)
    warnings_seen: list[str] = []
    with common.reported_warnings(warnings_seen):
        calibration = None
        if args.calibration and searched is None:
            from ..quant.inputs import load_calibration

            calibration = load_calibration(args.calibration, limit=args.calibration_limit)
        compressed = compress(
            model,
            recipe,
            arch=args.arch,
            input_shape=input_shape,
            calibration=calibration,
            output=output,
            force=args.force,
            ffmpeg_path=args.ffmpeg,
            jobs=args.jobs,
            device=args.hw_device,
            progress=True,
            min_snr_db=args.min_snr,
        )
    for note in compressed.notes:
        common.say(note)
    report = compressed.size_report()
    methods = compressed.meta.methods or {}
    _say_methods(methods)
    if args.json:
        search = target_drop.search_summary(searched) if searched else None
        common.print_json(
            {
                "output": str(output),
                **summary(report),
                "recipe": compressed.recipe,
                "methods": methods,
                "warnings": warnings_seen,
                "notes": compressed.notes,
                **({"target_drop": search} if search else {}),
            }
        )
        return 0
    if searched:
        search = target_drop.search_summary(searched)
        print(
            f"--target-drop {args.target_drop}: {search['evaluations']} evaluations on {search['images']:,} "
            f"calibration images; chosen step QPs {search['step_qps_range']}, calibration agreement "
            f"{search['agreement']:.2f}%, mean KL {search['mean_kl']:.4f}"
        )
    resolved = Recipe.from_dict(compressed.recipe)
    print(
        f"{output}: {report.file_bytes:,} bytes, {common.size_against_original(report.compression_ratio)} than the "
        f"original ({report.original_bytes:,} bytes); {common.bits_per_weight_text(report)}, coded with "
        f"{resolved.describe()}; lowest weight SNR {lowest_snr(report)}"
    )
    return 0


def _say_methods(methods: dict) -> None:
    inputs = methods.get("inputs")
    if inputs:
        where = f" from {inputs['file']}" if "file" in inputs else ""
        common.say(f"statistics from {inputs['kind'].replace('_', ' ')}{where}")
    allocation = methods.get("step_allocation")
    if allocation:
        columns = allocation.get("column_steps")
        common.say(
            f"steps allocated by sensitivity on {len(allocation['step_qp_offsets'])} tensors"
            + (f", and per column on {len(columns)}" if columns is not None else "")
        )
    dependent = methods.get("dependent_quantization")
    if dependent:
        common.say(f"dependent quantization on {len(dependent['tensors'])} tensors")
    gptq = methods.get("gptq_rounding")
    if gptq:
        skipped = gptq["nearest_instead"]
        common.say(
            f"gptq rounding on {len(gptq['served'])} tensors"
            + (f"; nearest rounding on {len(skipped)} ({_reasons(skipped)})" if skipped else "")
        )
    bias = methods.get("bias_correction")
    if bias:
        skipped = bias["uncorrected"]
        common.say(
            f"bias correction on {len(bias['corrected'])} tensors"
            + (f"; none on {len(skipped)} ({_reasons(skipped)})" if skipped else "")
        )


def _reasons(skipped: dict) -> str:
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        by_reason.setdefault(reason, []).append(name)
    parts = [
        f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}: {reason}" for reason, names in by_reason.items()
    ]
    return "; ".join(parts)


def summary(report) -> dict:
    return {key: value for key, value in report.to_dict().items() if key != "tensors"}


def lowest_snr(report) -> str:
    values = [float(t.snr_db) for t in report.tensors if t.storage == "video"]
    return f"{min(values):.1f} dB" if values else "n/a"
