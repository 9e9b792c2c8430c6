"""The generality suite: real pretrained models outside CIFAR, compressed with the commands users run.

For each model of scripts/suite_models.py (an ImageNet CNN with depthwise convolutions, a transformer
sentence embedder, a causal language model), over a ladder of step QPs:

    vcwc compress MODEL -o OUT.vcwc --recipe smallest --step-qp=Q [--arch ARCH --input-shape SHAPE] --json
    vcwc decompress OUT.vcwc -o RECON.safetensors

then the task measure on real data. Beside it, on the same tensors (every float tensor of 2+ dimensions)
and in the same accounting: NNCodec 2.1.3 at QPs in steps of 1 (scripts/setup_nncodec.sh), and int8 per
output channel + zstd -19. Each point is one JSON record in results/generality/points/ (a rerun skips
finished points, unless a vcwc point was made with other settings of `smallest` or other "auto" rules);
then the table (the smallest file meeting each model's bar, and the ratios the issue asks for) and a plot
are written. The suite's models come from scripts/prepare_models.py.

    python scripts/generality.py [--models NAME ...] [--no-arch | --folder-arch] [--allocation uniform|sensitivity]
                                 [--calibration] [--step-qps Q ...] [--out results/generality]

`--no-arch`, `--folder-arch`, `--allocation` and `--calibration` run variants of the recipe (their own
points, method `vcwc-weight-only`, `vcwc-folder` (no --arch: the class a Hugging Face folder's config.json
names), `vcwc-ALLOCATION` or `vcwc-calibration`), compared with the recipe as users run it in a
second table. `--calibration` gives the text models real inputs (`--calibration FILE`) from text their
measure never reads (scripts/suite_models.py), to see what data would add to the data-free recipe.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import zstandard
from common import REPO_ROOT, RESULTS
from suite_models import SUITE, SuiteModel, read_state

from vcwc.errors import NNCodecUnavailable
from vcwc.files import atomic_write
from vcwc.quant.quantize import QuantConfig, dequantize, quantize
from vcwc.recipe import AUTO_RULES, named

# Step QPs of the smallest recipe, and NNCodec's QPs, per model: in steps of 1 from inside each bar to past
# it (where the knees lay in exploratory runs), so that the smallest file meeting the bar is found to one QP.
# Dependent quantization (the transformers' rounding) meets a bar about 3 step QPs finer than nearest rounding.
STEP_QPS = {"mobilenet_v2": range(-26, -19), "all-mpnet-base-v2": range(-32, -25), "smollm2-135m": range(-30, -23)}
# With real inputs the transformers' layers take gptq, whose bar lies at coarser QPs.
CALIBRATION_STEP_QPS = {"all-mpnet-base-v2": range(-26, -22), "smollm2-135m": range(-26, -20)}
NNCODEC_QPS = {"mobilenet_v2": range(-35, -29), "all-mpnet-base-v2": range(-33, -28), "smollm2-135m": range(-32, -27)}


def coded_names(state: dict[str, torch.Tensor]) -> list[str]:
    return [n for n, t in state.items() if t.is_floating_point() and t.dim() >= 2 and t.numel()]


def recipe_stamp(name: str) -> dict:
    """What a vcwc point is measured with beyond its command line: the named recipe's settings and the rules
    of its "auto" choices. A record made with others is measured again (a change inside a method, which
    neither shows, still needs its records deleted)."""
    return json.loads(json.dumps({"recipe": named(name).to_dict(), "auto_rules": AUTO_RULES}))


class Suite:
    def __init__(self, model: SuiteModel, out: Path, path: Path | None = None):
        self.model, self.out, self.path = model, out, path or model.path()
        self.state = read_state(self.path)
        self.coded = coded_names(self.state)
        self.weights = sum(self.state[n].numel() for n in self.coded)
        torch.manual_seed(0)
        self.reference = model.measure(model.load(self.state))

    def record_path(self, method: str, setting) -> Path:
        return self.out / "points" / f"{self.model.name}--{method}--{setting}.json"

    def point(self, method: str, setting, run, stamp: dict | None = None) -> dict:
        """The record of one point, measured by `run` unless a record of it exists with the same `stamp`."""
        path = self.record_path(method, setting)
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("stamp") == stamp:
                return record
            print(
                f"{path}: made with other recipe settings or auto rules, or unstamped; measured again", file=sys.stderr
            )
        start = time.perf_counter()
        record = {"model": self.model.name, "method": method, "setting": setting, **run()}
        if stamp is not None:
            record["stamp"] = stamp
        record["seconds"] = time.perf_counter() - start
        quality = {k: v for k, v in record.pop("quality").items() if isinstance(v, (int, float))}
        record.update(quality=quality, meets_bar=self.model.bar(quality, self.reference))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record, indent=1).encode(), force=True)
        print(
            f"{self.model.name} {method} {setting}: {record['bits_per_weight']:.3f} bpw, {quality}",
            file=sys.stderr,
            flush=True,
        )
        return record

    def measure(self, state: dict[str, torch.Tensor]) -> dict:
        return self.model.measure(self.model.load(state), self.reference)

    def compress_command(self, compressed: Path, recipe: list[str], arch: str) -> list[str]:
        """`vcwc compress` of this model as users type it: with --arch ("given"), with the architecture its
        folder's config.json names ("folder"), or weight-only ("none")."""
        command = [sys.executable, "-m", "vcwc", "compress", str(self.path), "-o", str(compressed), "--json", *recipe]
        if arch == "given":
            command += ["--arch", self.model.arch, "--input-shape", ",".join(map(str, self.model.input_shape))]
        elif arch == "none":  # not even the class the model folder's config.json names
            command += ["--arch", "none"]
        return command

    def vcwc(self, step_qp: int, arch: str, options: tuple[str, ...] = ()) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            compressed, restored = Path(folder) / "model.vcwc", Path(folder) / "restored.safetensors"
            recipe = ["--recipe", "smallest", f"--step-qp={step_qp}", *options]
            command = self.compress_command(compressed, recipe, arch)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
            if done.returncode:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
            encode_seconds = time.perf_counter() - start
            summary = json.loads(done.stdout)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "vcwc", "decompress", str(compressed), "-o", str(restored)],
                check=True,
                capture_output=True,
                cwd=REPO_ROOT,
            )
            decode_seconds = time.perf_counter() - start
            state = read_state(restored)
        return {
            "bits_per_weight": summary["bits_per_weight"],
            "file_bytes": summary["file_bytes"],
            "coded_weights": summary["coded_weights"],
            "encode_seconds": encode_seconds,
            "decode_seconds": decode_seconds,
            "recipe": summary["recipe"],
            "methods": summary["methods"],
            "warnings": summary["warnings"],
            "notes": summary.get("notes", []),
            "quality": self.measure(state),
        }

    def nncodec(self, qp: int) -> dict:
        from vcwc.bench.nncodec import nncodec_roundtrip

        tensors = {n: self.state[n].float().numpy() for n in self.coded}
        result = nncodec_roundtrip(tensors, qp)
        state = dict(self.state)
        for name in self.coded:
            state[name] = torch.from_numpy(result.reconstructed[name]).to(self.state[name].dtype)
        return {
            "bits_per_weight": 8 * result.bitstream_bytes / self.weights,
            "encode_seconds": result.encode_seconds,
            "decode_seconds": result.decode_seconds,
            "quality": self.measure(state),
        }

    def int8_zstd(self) -> dict:
        state, symbols, scale_bytes = dict(self.state), [], 0
        for name in self.coded:
            q = quantize(self.state[name].float().numpy(), QuantConfig("per_channel"), name)
            symbols.append(q.symbols.tobytes())
            scale_bytes += 4 * len(q.scales)
            state[name] = torch.from_numpy(dequantize(q.symbols, q.scales)).to(self.state[name].dtype)
        size = len(zstandard.ZstdCompressor(level=19).compress(b"".join(symbols))) + scale_bytes
        return {"bits_per_weight": 8 * size / self.weights, "quality": self.measure(state)}


def smallest_meeting(records: list[dict], method: str) -> dict | None:
    return min(
        (r for r in records if r["method"] == method and r["meets_bar"]),
        key=lambda r: r["bits_per_weight"],
        default=None,
    )


def text(record: dict | None) -> str:
    return "none" if record is None else f"{record['bits_per_weight']:.3f} (QP {record['setting']})"


def table(records: list[dict]) -> tuple[str, str, str]:
    """The summary (per model, the smallest file meeting its bar by each method, and the ratios the targets
    are set on: at most 0.8 of NNCodec and 0.5 of int8 + zstd), the recipe's variants against it, and the
    detail of every point."""
    lines = [
        "| model | bar | vcwc smallest meeting it | NNCodec smallest meeting it | int8/channel + zstd -19 | "
        "vcwc / NNCodec | vcwc / int8+zstd |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in SUITE.items():
        mine = [r for r in records if r["model"] == name]
        if not mine:
            continue
        best, nnc = smallest_meeting(mine, "vcwc"), smallest_meeting(mine, "nncodec")
        zstd = next((r for r in mine if r["method"] == "int8_zstd"), None)

        ratio_nnc = f"{best['bits_per_weight'] / nnc['bits_per_weight']:.2f}" if best and nnc else "-"
        ratio_zstd = f"{best['bits_per_weight'] / zstd['bits_per_weight']:.2f}" if best and zstd else "-"
        lines.append(
            f"| {name} | {model.bar_text} | {text(best)} | {text(nnc)} | "
            f"{zstd['bits_per_weight']:.3f} | {ratio_nnc} | {ratio_zstd} |"
            if zstd
            else ""
        )
    variants = sorted({r["method"] for r in records if r["method"].startswith("vcwc-")})
    variant_lines = []
    if variants:
        variant_lines += [
            "Variants of the recipe (the smallest file meeting the bar; `vcwc` is the recipe as users run it; "
            "-: not run):",
            "",
            "| model | vcwc | " + " | ".join(variants) + " |",
            "|---|---|" + "---|" * len(variants),
        ]
        for name in SUITE:
            mine = [r for r in records if r["model"] == name]
            if mine:
                cells = [
                    text(smallest_meeting(mine, method)) if any(r["method"] == method for r in mine) else "-"
                    for method in ["vcwc", *variants]
                ]
                variant_lines.append(f"| {name} | " + " | ".join(cells) + " |")
    detail = ["", "| model | method | setting | bits/weight | quality | meets bar |", "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["model"], r["method"], str(r["setting"]))):
        quality = ", ".join(f"{k} {v:.4f}" for k, v in r["quality"].items())
        detail.append(
            f"| {r['model']} | {r['method']} | {r['setting']} | {r['bits_per_weight']:.3f} | {quality} | "
            f"{'yes' if r['meets_bar'] else 'no'} |"
        )
    summary = "\n".join(line for line in lines if line) + "\n"
    variants = ("\n".join(variant_lines) + "\n") if variant_lines else ""
    return summary, variants, "\n".join(detail[1:]) + "\n"


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in SUITE if any(r["model"] == n for r in records)]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        key = SUITE[name].quality
        for method in sorted({r["method"] for r in records if r["model"] == name}):
            points = sorted(
                (r["bits_per_weight"], r["quality"][key])
                for r in records
                if r["model"] == name and r["method"] == method
            )
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=method)
        axis.set_title(f"{name} ({SUITE[name].bar_text})")
        axis.set_xlabel("bits per coded weight")
        axis.set_ylabel(key)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    atomic_write(
        path,
        lambda temporary: figure.savefig(temporary, dpi=110, format="png", metadata={"Software": None}),
        force=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SUITE), choices=list(SUITE))
    parser.add_argument("--no-arch", action="store_true", help="compress with --arch none (weight-only)")
    parser.add_argument(
        "--folder-arch", action="store_true", help="compress without --arch: the model folder's config.json"
    )
    parser.add_argument(
        "--allocation",
        choices=["uniform", "sensitivity"],
        help="this step allocation instead of auto's (sensitivity_columns with the architecture)",
    )
    parser.add_argument("--step-qps", type=int, nargs="+", help="these step QPs of vcwc's ladder only")
    parser.add_argument("--calibration", action="store_true", help="real inputs for the models that have them")
    parser.add_argument("--out", type=Path, default=RESULTS / "generality")
    args = parser.parse_args()
    torch.set_num_threads(2)
    arch = "none" if args.no_arch else "folder" if args.folder_arch else "given"
    method = {"none": "vcwc-weight-only", "folder": "vcwc-folder"}.get(arch)
    method = method or (f"vcwc-{args.allocation}" if args.allocation else "vcwc")
    method += "-calibration" if args.calibration else ""
    options = ("--allocation", args.allocation) if args.allocation else ()
    for name in args.models:
        if args.calibration and SUITE[name].calibration is None:
            print(f"{name}: no calibration inputs, left out", file=sys.stderr)
            continue
        suite = Suite(SUITE[name], args.out)
        model_options = options + (("--calibration", str(SUITE[name].calibration_file())) if args.calibration else ())
        ladder = (CALIBRATION_STEP_QPS if args.calibration else STEP_QPS)[name]
        for qp in args.step_qps or ladder:
            run = functools.partial(suite.vcwc, qp, arch, model_options)
            suite.point(method, qp, run, stamp=recipe_stamp("smallest"))
        suite.point("int8_zstd", "per_channel", suite.int8_zstd)
        try:
            for qp in NNCODEC_QPS[name]:
                suite.point("nncodec", qp, lambda qp=qp, suite=suite: suite.nncodec(qp))
        except NNCodecUnavailable as exc:
            print(f"NNCodec left out: {exc}", file=sys.stderr)
    records = [json.loads(p.read_text()) for p in sorted((args.out / "points").glob("*.json"))]
    summary, variants, detail = table(records)
    text = summary + (f"\n{variants}" if variants else "") + "\nEvery point:\n\n" + detail
    atomic_write(args.out / "summary.md", summary.encode(), force=True)
    atomic_write(args.out / "variants.md", variants.encode(), force=True)
    atomic_write(args.out / "generality.md", text.encode(), force=True)
    atomic_write(args.out / "records.json", json.dumps(records, indent=1).encode(), force=True)
    plot(records, args.out / "generality.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
