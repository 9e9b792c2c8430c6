"""A real language model end to end: SmolLM2-135M-Instruct as sharded bf16 safetensors (scripts/prepare_models.py).

In one run, with the commands users type (`vcwc compress DIR ...`, `vcwc decompress FILE -o DIR/`):
perplexity (scripts/suite_models.py: the first 8,192 tokens of ../shared/data/text/tinyshakespeare.txt in 16
windows of 512) of the original, of the `lossless` and per-channel lossless files, and of `--recipe
smallest` over a step-QP ladder (weight-only, and with the architecture given); bits per weight; NNCodec and
int8 per channel + zstd -19 on the same weights; encode and decode throughput; peak resident memory.

The checkpoint was made from a 4-bit (Q4_1) gguf, so its weights sit on per-block grids that a method could
exploit. Shorter ladders of `smallest` with the architecture and of NNCodec run again on a copy with
Gaussian noise of a tenth of each 32-block's Q4_1 step added to every quantized matrix, to show that the
ranking holds without the grid.

Writes results/llm/llm.json and llm.md. Points are kept in results/llm/points/ (a rerun skips them, as
scripts/generality.py does); the points that scripts/generality.py runs identically on the original
checkpoint (`smallest` with the architecture, NNCodec, int8 + zstd) are kept once, in
results/generality/points/.

    python scripts/bench_llm.py [--ladder Q ...] [--nncodec-qps Q ...] [--skip-noisy]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, run_measured, write_results
from generality import Suite, recipe_stamp
from suite_models import SUITE, cache_dir

from vcwc.format.safetensors import SafetensorsFile, SafetensorsWriter, from_array

BLOCK = 32  # values per Q4_1 block along a row
SMALLEST = ("--recipe", "smallest")
NAMED_RECIPE = {"lossless": "lossless", "smallest": "smallest", "smallest+arch": "smallest"}  # by method
# This script's methods that scripts/generality.py runs identically on the original checkpoint, by its names.
SHARED_WITH_GENERALITY = {"smallest+arch": "vcwc", "nncodec": "nncodec", "int8_zstd": "int8_zstd"}


class LanguageModel(Suite):
    """The suite's SmolLM2 at a given folder (the prepared one, or a noisy copy)."""

    def __init__(self, folder: Path, out: Path, label: str):
        self.folder, self.label = folder, label
        super().__init__(SUITE["smollm2-135m"], out, folder)

    def record_path(self, method: str, setting) -> Path:
        if self.label == "original" and method in SHARED_WITH_GENERALITY:
            # The same command or measurement on the same weights as the generality suite's: one record serves both.
            name = f"{self.model.name}--{SHARED_WITH_GENERALITY[method]}--{setting}.json"
            return RESULTS / "generality" / "points" / name
        return self.out / "points" / f"{self.label}--{method}--{setting}.json"

    def command_point(self, recipe: list[str], arch: str = "none") -> dict:
        """One recipe through the command line, with time and memory measured (`arch` as Suite.compress_command
        takes it)."""
        with tempfile.TemporaryDirectory() as temporary:
            compressed, restored = Path(temporary) / "m.vcwc", Path(temporary) / "restored"
            command = self.compress_command(compressed, recipe, arch)
            encode = run_measured(command)
            decode = run_measured([sys.executable, "-m", "vcwc", "decompress", str(compressed), "-o", f"{restored}/"])
            summary = json.loads(encode.pop("stdout"))
            decode.pop("stdout")
            state = _read_folder(restored)
        return {
            "bits_per_weight": summary["bits_per_weight"],
            "file_bytes": summary["file_bytes"],
            "encode": encode,
            "decode": decode,
            "weights_per_second_encode": self.weights / encode["seconds"],
            "weights_per_second_decode": self.weights / decode["seconds"],
            "methods": summary["methods"],
            "quality": self.measure(state),
        }


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    from vcwc.io import load_model

    return load_model(folder).state_dict()


def noisy_copy(source: Path, target: Path, seed: int = 0) -> Path:
    """The checkpoint with N(0, (step/10)^2) added to every 2-D weight, step = each 32-block's Q4_1 step
    ((max - min) / 15 of the block's values), written as bf16 shards of the same layout."""
    if (target / "model.safetensors.index.json").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index = json.loads((source / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        reader = SafetensorsFile(source / shard)
        entries = [(name, e.dtype, e.shape) for name, e in reader.entries.items()]
        with SafetensorsWriter(target / shard, entries, {"format": "pt"}) as writer:
            for name, dtype, shape in entries:
                values = reader.array(name)
                if len(shape) == 2 and shape[1] % BLOCK == 0:
                    blocks = values.reshape(shape[0], -1, BLOCK)
                    step = (blocks.max(axis=2, keepdims=True) - blocks.min(axis=2, keepdims=True)) / 15
                    values = (blocks + rng.standard_normal(blocks.shape, dtype=np.float32) * step / 10).reshape(shape)
                writer.write(name, from_array(values, dtype))
    (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return target


def markdown(records: list[dict], reference: dict) -> str:
    lines = [
        f"SmolLM2-135M-Instruct (134.5 M coded weights, bf16, tied embedding stored once), perplexity on the "
        f"first 8,192 tokens of tinyshakespeare in 16 windows of 512: original {reference['perplexity']:.3f}. "
        "Its weights come from a Q4_1 (4-bit) gguf and sit on per-block grids; `noisy` is the same checkpoint "
        "with Gaussian noise of a tenth of each block's Q4_1 step added.",
        "",
        "| checkpoint | method | setting | bits/weight | perplexity | change % | encode M w/s | decode M w/s | "
        "encode peak RSS | decode peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {shared: method for method, shared in SHARED_WITH_GENERALITY.items()}
    for r in records:
        quality = r["quality"]
        if isinstance(r.get("encode"), dict):
            speed = (
                f"{r['weights_per_second_encode'] / 1e6:.2f} | {r['weights_per_second_decode'] / 1e6:.2f} | "
                f"{r['encode']['peak_rss_bytes'] / 2**30:.2f} GiB | {r['decode']['peak_rss_bytes'] / 2**30:.2f} GiB"
            )
        elif "encode_seconds" in r and "coded_weights" in r:  # run by scripts/generality.py: time, no memory
            rates = [r["coded_weights"] / r[key] / 1e6 for key in ("encode_seconds", "decode_seconds")]
            speed = f"{rates[0]:.2f} | {rates[1]:.2f} | - | -"
        else:
            speed = "- | - | - | -"
        lines.append(
            f"| {r['checkpoint']} | {labels.get(r['method'], r['method'])} | {r['setting']} | {r['bits_per_weight']:.3f} | "
            f"{quality['perplexity']:.3f} | {quality['perplexity_change']:+.2f} | {speed} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder", type=int, nargs="+", default=[-30, -29, -28, -27, -26, -25, -24, -18])
    parser.add_argument("--weight-only-ladder", type=int, nargs="+", default=[-28, -26])
    parser.add_argument("--nncodec-qps", type=int, nargs="+", default=[-32, -31, -30, -29, -28])
    parser.add_argument("--noisy-ladder", type=int, nargs="+", default=[-28, -26])
    parser.add_argument("--noisy-nncodec-qps", type=int, nargs="+", default=[-31, -30, -29])
    parser.add_argument("--skip-noisy", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "llm")
    args = parser.parse_args()
    torch.set_num_threads(2)
    prepared = cache_dir() / "smollm2-135m"
    checkpoints = {"original": prepared}
    if not args.skip_noisy:
        checkpoints["noisy"] = noisy_copy(prepared, Path(tempfile.gettempdir()) / "vcwc-smollm2-noisy")
    records = []
    reference = None
    for label, folder in checkpoints.items():
        suite = LanguageModel(folder, args.out, label)
        reference = reference or suite.reference
        original = label == "original"
        runs = []
        if original:
            runs += [
                ("lossless", "per_tensor", lambda s=suite: s.command_point(["--recipe", "lossless"])),
                ("lossless", "per_channel", lambda s=suite: s.command_point(["--recipe", "lossless", "--per-channel"])),
            ]
        runs += [
            ("smallest+arch", q, lambda s=suite, q=q: s.command_point([*SMALLEST, f"--step-qp={q}"], arch="given"))
            for q in (args.ladder if original else args.noisy_ladder)
        ]
        if original:
            runs += [
                ("smallest", q, lambda s=suite, q=q: s.command_point([*SMALLEST, f"--step-qp={q}"]))
                for q in args.weight_only_ladder
            ]
            runs.append(("int8_zstd", "per_channel", suite.int8_zstd))
        runs += [
            ("nncodec", q, lambda s=suite, q=q: s.nncodec(q))
            for q in (args.nncodec_qps if original else args.noisy_nncodec_qps)
        ]
        for method, setting, run in runs:
            stamp = recipe_stamp(NAMED_RECIPE[method]) if method in NAMED_RECIPE else None
            record = suite.point(method, setting, run, stamp=stamp)
            records.append({**record, "checkpoint": label})
    text = markdown(records, reference)
    write_results(args.out, "llm", records, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
