"""Points per minute of `vcwc sweep` on the local backend and on Ray, the same sweep at the same parallelism.

The sweep is the CIFAR sweep's screening pass for one model: ResNet-20 from the shared data, every
software codec, per-tensor and per-channel scales, lossless and each codec's QP ladder, scored on a
class-balanced subset of the 10,000-image test file (the bundled digits model when the data is absent).
Each run starts in a fresh folder; the Ray instance (num_cpus = jobs x threads) is started before the
clock starts, as a cluster would already be running; its workers still import vcwc on their first
task, inside the timing. Rounds alternate the order (local, ray, ray, local, ...) so a change in the
machine's load hits both. Records must be identical on both backends but for timings.

    python scripts/bench_sweep_backends.py [--data DIR] [-j 2] [--rounds 2] [--eval-limit 500]

Writes results/sweep_backends/bench.json and bench.md. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, RESULTS, shared_data_dir

from vcwc.bench.names import SOFTWARE_CODECS
from vcwc.bench.ray_backend import RayBackend, import_ray
from vcwc.bench.sweep import ModelSpec, Sweep, plan_points
from vcwc.bench.sweep_task import VARYING_FIELDS
from vcwc.version import __version__


def model_spec(data: Path) -> ModelSpec:
    folder = data / "cifar10"
    if (folder / "resnet20-12fca82f.th").is_file():
        return ModelSpec(
            "resnet20", str(folder / "resnet20-12fca82f.th"), "cifar_resnet20", str(folder / "cifar10_test_jpeg.npz")
        )
    models = REPO_ROOT / "models"
    return ModelSpec(
        "digits", str(models / "digits_resnet.safetensors"), "digits_resnet", str(models / "digits_test.npz")
    )


def timed_run(name: str, points, out: Path, jobs: int, threads: int, backend) -> dict:
    sweep = Sweep(out, jobs=jobs, threads=threads, progress=False, backend=backend)
    load = os.getloadavg()
    start = time.perf_counter()
    records = sweep.run(points)
    seconds = time.perf_counter() - start
    failed = [r["label"] for r in records if r["status"] != "ok"]
    print(
        f"{name}: {len(points)} points in {seconds:.1f} s, {60 * len(points) / seconds:.1f} points/min", file=sys.stderr
    )
    return {
        "backend": name,
        "points": len(points),
        "seconds": seconds,
        "points_per_minute": 60 * len(points) / seconds,
        "evaluations": sweep.evaluated,
        "not_ok": failed,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "records": records,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="shared data folder (default $VCWC_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep_backends")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, help="per point (default: this machine's CPUs / jobs)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per backend, in alternating order")
    parser.add_argument("--eval-limit", type=int, default=500, help="images per evaluation (the screening subset)")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the record")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    spec = model_spec(args.data or shared_data_dir())
    points = plan_points(
        [spec], list(SOFTWARE_CODECS), ["per_tensor", "per_channel"], baselines=(), eval_limit=args.eval_limit
    )
    ray = import_ray()
    start = time.perf_counter()
    ray.init(num_cpus=args.jobs * threads, include_dashboard=False, logging_level=logging.ERROR)
    ray_start_seconds = time.perf_counter() - start
    order = [("local", "ray") if index % 2 == 0 else ("ray", "local") for index in range(args.rounds)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        for index, pair in enumerate(order):
            for name in pair:
                backend = RayBackend() if name == "ray" else None
                runs.append(timed_run(name, points, Path(scratch) / f"{name}-{index}", args.jobs, threads, backend))
    ray.shutdown()
    first = {name: next(run["records"] for run in runs if run["backend"] == name) for name in ("local", "ray")}

    def comparable(records):
        return [{k: v for k, v in record.items() if k not in VARYING_FIELDS} for record in records]

    identical = comparable(first["local"]) == comparable(first["ray"])
    rate = {
        name: statistics.median(run["points_per_minute"] for run in runs if run["backend"] == name)
        for name in ("local", "ray")
    }
    result = {
        "vcwc_version": __version__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "sweep": {
            "model": spec.name,
            "codecs": list(SOFTWARE_CODECS),
            "granularities": ["per_tensor", "per_channel"],
            "eval_limit": args.eval_limit,
            "points": len(points),
            "jobs": args.jobs,
            "threads": threads,
        },
        "ray_start_seconds": ray_start_seconds,
        "runs": [{k: v for k, v in run.items() if k != "records"} for run in runs],
        "median_points_per_minute": rate,
        "ray_over_local": rate["ray"] / rate["local"],
        "records_identical": identical,
        "note": args.note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "bench.md").write_text(markdown(result))
    print((args.out / "bench.md").read_text())
    return 0 if identical else 1


def markdown(result: dict) -> str:
    sweep = result["sweep"]
    lines = [
        "# Sweep backends: points per minute",
        "",
        f"{sweep['points']} points of {sweep['model']} ({', '.join(sweep['codecs'])}; "
        f"{' and '.join(sweep['granularities'])}; lossless and each codec's QP ladder; {sweep['eval_limit']} "
        f"evaluation images), -j {sweep['jobs']} with {sweep['threads']} thread(s) per point, on "
        f"{result['machine']['cpus']} CPUs; Ray {result['machine']['ray']} on one local instance started "
        f"in {result['ray_start_seconds']:.1f} s (not counted). Made by `python scripts/bench_sweep_backends.py`.",
        "",
        "| run | backend | seconds | points/min | evaluations | load average before (1, 5, 15 min) |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(result["runs"]):
        load = ", ".join(f"{value:.1f}" for value in run["load_average_before"])
        lines.append(
            f"| {index + 1} | {run['backend']} | {run['seconds']:.1f} | {run['points_per_minute']:.1f} | "
            f"{run['evaluations']} | {load} |"
        )
    rate = result["median_points_per_minute"]
    lines += [
        "",
        f"Median: local {rate['local']:.1f}, Ray {rate['ray']:.1f} points/min; Ray / local = "
        f"{result['ray_over_local']:.2f}. Records identical on both backends (but for timings): "
        f"{'yes' if result['records_identical'] else 'NO'}.",
        "",
    ]
    if result["note"]:
        lines += [result["note"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
