"""`vcwc sweep`: size against accuracy over many models, codecs and settings; resumable."""

from __future__ import annotations

import sys
from pathlib import Path

from ..bench.names import (
    BACKENDS,
    BASELINES,
    CORRECTIONS,
    GRANULARITIES,
    KNEE_ABOVE,
    KNEE_BELOW,
    NNCODEC_QP_LADDER,
    SOFTWARE_CODECS,
)
from ..codecs.base import get_codec
from ..errors import InputError
from ..recipe import RECIPES
from . import common


def add_parser(commands) -> None:
    p = commands.add_parser(
        "sweep",
        help="compare codecs and QPs on size against accuracy over many models",
        description="Each point (model, recipe or baseline) writes its own JSON record under "
        "OUT/points; finished points are skipped on rerun.",
    )
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="PATH:ARCH:DATA[:LIMIT] with a registered ARCH, or a .toml file of [[model]] tables (name, "
        "path, arch, data, limit, input_shape, tokenizer; arch may be MODULE:CALLABLE there, with input_shape "
        "such as [3, 224, 224] where the registry has none). DATA: labelled images (.npz or class folders), "
        "or a text for a language model or text encoder, whose arch and tokenizer may come from its Hugging "
        "Face folder (docs/sweeps.md)",
    )
    p.add_argument(
        "--codecs",
        help=f"comma-separated codecs or profiles (default {','.join(SOFTWARE_CODECS)}; with --recipes, each "
        "recipe's own codec)",
    )
    p.add_argument(
        "--recipes",
        metavar="LIST",
        help=f"comma-separated named recipes ({', '.join(RECIPES)}) or .json/.toml recipe files, each run as "
        "`vcwc compress --recipe` runs it, with --codecs if given, at each of --step-qps where it has a fixed "
        "step; replaces the --granularity grid unless that is given too",
    )
    p.add_argument("--qps", help="comma-separated QPs, 'lossless' for lossless (default: each codec's own ladder)")
    p.add_argument(
        "--granularity",
        help="comma-separated: per_tensor, per_channel (int8 scales, then the codec at --qps), step "
        "(one fixed step 2^(QP/4) for every tensor at --step-qps, codec lossless), or none; default "
        "per_tensor,per_channel (none with --recipes)",
    )
    p.add_argument(
        "--corrections",
        default="none",
        metavar="LIST",
        help=f"comma-separated: {', '.join(CORRECTIONS)}: none, bias (data-free bias correction), "
        f"gptq+bias (data-free error-compensating rounding too); both need each model's arch; every "
        f"codec point is run once per entry (default none)",
    )
    p.add_argument(
        "--step-qps",
        metavar="LIST",
        help="comma-separated step QPs for --granularity step, on NNCodec's QP scale; write "
        "--step-qps=-22,-21 (default -26 to -14)",
    )
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated baselines, or 'none'")
    p.add_argument(
        "--screen",
        type=int,
        metavar="N",
        help="score every QP on N class-balanced images first, then the full data only around each knee",
    )
    p.add_argument(
        "--knee-agreement",
        type=float,
        default=99.0,
        help="with --screen: the knee is the first QP whose screening agreement falls below this %%",
    )
    p.add_argument("--out", required=True, help="sweep folder (records, tables, plots)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="points at once (in processes, or Ray tasks)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads of each point (torch and ffmpeg; a Ray task declares as many CPUs); results depend on "
        "it, so keep it when comparing runs (default: this machine's CPUs / -j)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where points run: local (this machine's processes) or ray (a Ray cluster; needs the ray "
        'extra, pip install -e ".[ray]"); same records and resume on both (default local)',
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --backend ray: the cluster to join, auto or ray://HOST:PORT (default: start Ray here)",
    )
    p.add_argument("--force", action="store_true", help="recompute finished points")
    p.add_argument("--dry-run", action="store_true", help="list the points and whether they are done, run nothing")
    common.add_ffmpeg(p)
    p.add_argument(
        "--nncodec",
        action="store_true",
        help="add the NNCodec baseline (needs scripts/setup_nncodec.sh; skipped if not set up)",
    )
    p.add_argument(
        "--nncodec-qps",
        metavar="LIST",
        help=f"comma-separated NNCodec QPs, implies --nncodec; write --nncodec-qps=-30,-29 (with '=', as "
        f"they start with a minus) (default {','.join(map(str, NNCODEC_QP_LADDER))})",
    )
    p.add_argument(
        "--nncodec-python",
        metavar="PATH",
        help="the NNCodec environment's python (default: $VCWC_NNCODEC_PYTHON, else the environment "
        "scripts/setup_nncodec.sh builds)",
    )
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..bench.backends import make_backend
    from ..bench.sweep import Sweep

    full_grid, screening = _plan(args)
    backend = make_backend(args.backend, args.ray_address)
    sweep = Sweep(
        Path(args.out),
        force=args.force,
        jobs=args.jobs,
        ffmpeg_path=args.ffmpeg,
        nncodec_python=args.nncodec_python,
        threads=args.threads,
        backend=backend,
    )
    try:
        return _run_plan(args, sweep, full_grid, screening)
    finally:
        backend.close()


def _plan(args) -> tuple[list, list | None]:
    """The full grid of points, and the screening points of --screen (else None)."""
    from ..bench.sweep import ModelSpec, plan_points

    models = [spec for text in args.models for spec in ModelSpec.parse(text)]
    recipes = tuple(_recipe(text) for text in common.split(args.recipes)) if args.recipes else ()
    chosen_codecs = common.split(args.codecs) if args.codecs else None
    codec_list = chosen_codecs or list(SOFTWARE_CODECS)
    for name in codec_list:
        get_codec(name)
    granularity = args.granularity or ("none" if recipes else "per_tensor,per_channel")
    granularities = [] if granularity == "none" else common.split(granularity)
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise InputError(f"--granularity: {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    baselines = () if args.baselines == "none" else tuple(common.split(args.baselines))
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise InputError(f"--baselines: unknown {', '.join(unknown)}; known: {', '.join(BASELINES)}")
    qps = None
    if args.qps:
        values = [
            None if value == "lossless" else common.whole_number("--qps", value, " or 'lossless'")
            for value in common.split(args.qps)
        ]
        qps = {name: values for name in codec_list}
    nncodec_qps = None
    if args.nncodec_qps:
        nncodec_qps = [common.whole_number("--nncodec-qps", value) for value in common.split(args.nncodec_qps)]
    elif args.nncodec:
        nncodec_qps = list(NNCODEC_QP_LADDER)
    step_qps = [common.whole_number("--step-qps", v) for v in common.split(args.step_qps)] if args.step_qps else None
    grid = dict(
        nncodec_qps=nncodec_qps,
        step_qps=step_qps,
        corrections=tuple(common.split(args.corrections)),
        recipes=recipes,
        recipe_codecs=chosen_codecs,
    )
    full_grid = plan_points(models, codec_list, granularities, qps, baselines=baselines, **grid)
    screening = None
    if args.screen:
        screening = plan_points(models, codec_list, granularities, qps, baselines=(), eval_limit=args.screen, **grid)
    return full_grid, screening


def _recipe(text: str):
    """A named recipe, or a recipe file's, named by the file where it has no name (records tell them apart)."""
    from ..recipe import get_recipe

    recipe = get_recipe(text)
    return recipe if recipe.name else recipe.with_changes(name=Path(text).stem)


def _run_plan(args, sweep, full_grid, screening) -> int:
    from ..bench.sweep import knee_points
    from ..bench.sweep_report import write_report

    if screening is not None:
        if args.dry_run:
            _list_points(sweep, screening)
            most = _most_full_points(full_grid)
            print(
                f"then at most {most} full-data points: the baselines, and per series lossless plus the QPs "
                f"around its knee (which the screening decides)",
                file=sys.stderr,
            )
            return 0
        screened = sweep.run(screening)
        points = [p for p in full_grid if p.is_baseline] + knee_points(screened, full_grid, args.knee_agreement)
    else:
        points = full_grid
        if args.dry_run:
            return _list_points(sweep, points)
    records = sweep.run(points)
    paths = write_report(Path(args.out))
    failed = [r for r in records if r.get("status") == "failed"]
    print(
        f"{len(records)} points ({len(failed)} failed); wrote {', '.join(str(p) for p in paths.values())}",
        file=sys.stderr,
    )
    for record in failed:
        print(f"failed: {record['label']}: {record['error'].splitlines()[0]}", file=sys.stderr)
    return 1 if failed else 0


def _most_full_points(full_grid) -> int:
    series: dict[tuple, list] = {}
    for point in full_grid:
        if not point.is_baseline:
            key = (point.model, point.method, point.granularity, point.correction, point.recipe_name)
            series.setdefault(key, []).append(point)
    window = KNEE_BELOW + KNEE_ABOVE
    return sum(1 for p in full_grid if p.is_baseline) + sum(
        sum(1 for p in members if p.qp is None) + min(window, sum(1 for p in members if p.qp is not None))
        for members in series.values()
    )


def _list_points(sweep, points) -> int:
    pending = set(map(id, sweep.pending(points)))
    for point in points:
        print(f"{'todo' if id(point) in pending else 'done'}  {sweep.key(point)}  {point.label()}")
    print(f"{len(pending)} of {len(points)} points to run", file=sys.stderr)
    return 0
