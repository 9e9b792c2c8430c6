"""One model under test: compress it at given settings, rebuild it, and score it against the original.

Shared by `vcwc demo` and `vcwc sweep`. The original model's outputs are computed once; reconstructions
are scored against them (vcwc.bench.scoring: an image classifier's accuracy, agreement and KL, a text
model's perplexity or embedding cosine), and identical reconstructions are scored once.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zstandard

from ..api import compress, decompress
from ..errors import InputError, VcwcWarning
from ..eval.datasets import Dataset
from ..eval.text import text_architecture
from ..files import atomic_write
from ..io import ModelSource
from ..metrics import snr_db
from ..models.build import build_model, load_weights_into, resolve
from ..models.registry import DEFAULT_PREPROCESS
from ..quant.quantize import QuantConfig, dequantize, quantize
from ..recipe import Recipe, Selection, step_from_qp
from .names import BASELINES, CORRECTIONS
from .scoring import ImageScoring, TextData, TextScoring


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and values: equal digests mean identical reconstructions."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(
            tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        )
    return digest.hexdigest()


def correction_of(recipe: Recipe) -> str | None:
    """A record's "correction": the CORRECTIONS entry a recipe's methods match, None for "none"."""
    settings = {"rounding": recipe.rounding, "bias_correction": recipe.bias_correction}
    name = next((name for name, values in CORRECTIONS.items() if values == settings), None)
    if name is None:
        steps = ([recipe.rounding] if recipe.rounding != "nearest" else []) + (
            ["bias"] if recipe.bias_correction == "on" else []
        )
        name = "+".join(steps) or "none"
    return None if name == "none" else name


def recipe_fields(recipe: Recipe) -> dict:
    """The fields a sweep record has always had, read from the recipe that made the point."""
    step_qp = recipe.quantizer.step_qp
    return {
        "method": recipe.codec.name,
        "codec": recipe.codec.name,
        "qp": step_qp if step_qp is not None else recipe.codec.qp,
        "lossless": recipe.codec.qp is None,
        "granularity": "step" if step_qp is not None else recipe.quantizer.granularity,
        "step": step_from_qp(step_qp) if step_qp is not None else None,
        "correction": correction_of(recipe),
        "recipe_name": recipe.name,  # a named recipe or recipe file run as it is; None in the granularity grid
    }


@dataclass
class ModelUnderTest:
    """A loaded model, its architecture and evaluation data, with the original's scores computed once.

    `dataset` is labelled images for an image classifier, or a text (TextData) for a text model, whose
    architecture may then come from the Hugging Face folder it sits in (`arch` None)."""

    name: str
    loaded: ModelSource
    arch: str | None
    dataset: Dataset | TextData
    progress: bool = False
    selection: Selection = field(default_factory=Selection)
    evaluation_store: Path | None = None  # folder of scores kept across processes and reruns
    input_shape: tuple[int, ...] | None = None  # for an architecture that does not record its own
    _scores: dict[str, object] = field(default_factory=dict, repr=False)  # by weights digest

    def __post_init__(self):
        self.state_dict = self.loaded.state_dict()
        if isinstance(self.dataset, TextData):
            shapes = {name: tuple(tensor.shape) for name, tensor in self.state_dict.items()}
            architecture = text_architecture(self.arch, shapes, [self.loaded.source])
            self.module = build_model(architecture, self.state_dict).float()
            self.scoring = TextScoring(self.module, self.dataset, self.progress)
        else:
            architecture = resolve(self.arch, self.input_shape)
            self.module = build_model(architecture, self.state_dict)
            preprocess = architecture.preprocess or DEFAULT_PREPROCESS
            self.scoring = ImageScoring(self.module, self.dataset, preprocess, self.progress)
        self.original = self.scoring.original
        self._scores[weights_digest(self.state_dict)] = self.original

    def is_coded(self, name: str, tensor: torch.Tensor) -> bool:
        return self.selection.is_coded(name, tensor.is_floating_point(), tuple(tensor.shape))

    @property
    def coded_weights(self) -> int:
        return sum(t.numel() for n, t in self.state_dict.items() if self.is_coded(n, t))

    def score(self, state_dict: dict[str, torch.Tensor]):
        return self.scored(state_dict)[0]

    def scored(self, state_dict: dict[str, torch.Tensor]) -> tuple[object, bool]:
        """The evaluation of these weights, and whether it was already known (in memory or in the store)."""
        key = weights_digest(state_dict)
        if key in self._scores:
            return self._scores[key], True
        stored = self._stored_score(key)
        known = stored is not None
        if stored is None:
            load_weights_into(self.module, state_dict)
            stored = self.scoring.score(self.module)
            load_weights_into(self.module, self.state_dict)
            self._store_score(key, stored)
        self._scores[key] = stored
        return stored, known

    def _store_path(self, weights_key: str) -> Path | None:
        if self.evaluation_store is None:
            return None
        # The same weights scored on other data or with another architecture's preprocessing differ.
        context = f"{weights_key}|{self.arch}|{self.scoring.context}"
        return Path(self.evaluation_store) / f"{hashlib.sha256(context.encode()).hexdigest()[:24]}.json"

    def _stored_score(self, weights_key: str):
        path = self._store_path(weights_key)
        if path is None or not path.is_file():
            return None
        return self.scoring.result(json.loads(path.read_text()))

    def _store_score(self, weights_key: str, result) -> None:
        path = self._store_path(weights_key)
        if path is not None:
            atomic_write(path, json.dumps(result.to_dict()).encode(), force=True)

    def accuracy_fields(self, result) -> dict:
        return {**self.scoring.fields(result), "cached_evaluation": False}

    def run_codec(self, recipe: Recipe, *, ffmpeg_path: str | None = None, jobs: int | None = None) -> dict:
        """Compress, decompress and score one recipe; a JSON-able record."""
        start = time.perf_counter()
        with warnings.catch_warnings():  # the record keeps them, beside the SNR that explains them
            warnings.simplefilter("ignore", VcwcWarning)
            compressed = compress(
                self.loaded,
                recipe.with_changes(selection=self.selection),
                ffmpeg_path=ffmpeg_path,
                jobs=jobs,
                arch=self.arch,
                input_shape=self.input_shape,
            )
        encode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        reconstructed = decompress(compressed.data, ffmpeg_path=ffmpeg_path, jobs=jobs)
        decode_seconds = time.perf_counter() - start
        report = compressed.size_report()
        result, cached = self.scored(reconstructed)
        record = {
            **recipe_fields(recipe),
            "recipe": compressed.recipe,
            "file_bytes": report.file_bytes,
            "coded_bytes": report.coded_bytes,
            "metadata_bytes": report.header_bytes,
            "uncoded_bytes": report.uncoded_bytes,
            "coded_weights": report.coded_weights,
            "bits_per_weight": report.bits_per_weight,
            "compression_ratio": report.compression_ratio,
            "weight_snr_db": coded_snr_db(self.state_dict, reconstructed, self.is_coded),
            "encode_seconds": encode_seconds,
            "decode_seconds": decode_seconds,
            "ffmpeg_version": compressed.meta.ffmpeg_version,
            "warnings": compressed.warnings,
            **self.accuracy_fields(result),
        }
        record["cached_evaluation"] = cached
        return record

    def run_baseline(self, method: str) -> dict:
        """fp32, fp16, int8 (raw bytes) and int8 + zstd -19, per tensor or per channel, in the same accounting."""
        reconstructed, coded_bytes = baseline(self.state_dict, method, self.is_coded)
        uncoded = sum(t.numel() * t.element_size() for n, t in self.state_dict.items() if not self.is_coded(n, t))
        original_bytes = sum(t.numel() * t.element_size() for t in self.state_dict.values())
        weights = self.coded_weights
        return {
            "method": method,
            "codec": None,
            "qp": None,
            "lossless": None,
            "granularity": "per_channel" if method.endswith("per_channel") else "per_tensor",
            "file_bytes": coded_bytes + uncoded,
            "coded_bytes": coded_bytes,
            "metadata_bytes": 0,
            "uncoded_bytes": uncoded,
            "coded_weights": weights,
            "bits_per_weight": 8 * coded_bytes / weights,
            "compression_ratio": original_bytes / (coded_bytes + uncoded),
            "weight_snr_db": coded_snr_db(self.state_dict, reconstructed, self.is_coded),
            "encode_seconds": None,
            "decode_seconds": None,
            "ffmpeg_version": None,
            **self.accuracy_fields(self.score(reconstructed)),
        }

    def run_nncodec(self, qp: int, *, use_dq: bool = True, python: str | None = None) -> dict:
        """NNCodec on the tensors vcwc would code (the Selection's), in the same accounting as run_codec.

        Its bitstream carries each tensor's name and shape besides the weights; all of it counts in
        bits_per_weight, and the names' share is reported. Speeds come from NNCodec's own encode and
        decode calls; encode_seconds and decode_seconds each add the measured start-up of its Python
        (interpreter and imports), as a standalone encode or decode run would pay it.
        """
        from .nncodec import nncodec_roundtrip

        state_dict = self.state_dict
        coded = {n: t for n, t in state_dict.items() if self.is_coded(n, t)}
        result = nncodec_roundtrip(
            {n: t.detach().float().numpy() for n, t in coded.items()}, qp, use_dq=use_dq, python=python
        )
        reconstructed = {
            n: torch.from_numpy(result.reconstructed[n]).to(t.dtype) if n in coded else t for n, t in state_dict.items()
        }
        uncoded = sum(t.numel() * t.element_size() for n, t in state_dict.items() if n not in coded)
        original_bytes = sum(t.numel() * t.element_size() for t in state_dict.values())
        weights = self.coded_weights
        evaluation, cached = self.scored(reconstructed)
        record = {
            "method": "nncodec",
            "codec": "nncodec",
            "qp": qp,
            "lossless": False,
            "granularity": "per_tensor",
            "file_bytes": result.bitstream_bytes + uncoded,
            "coded_bytes": result.bitstream_bytes,
            "metadata_bytes": 0,
            "uncoded_bytes": uncoded,
            "coded_weights": weights,
            "bits_per_weight": 8 * result.bitstream_bytes / weights,
            "compression_ratio": original_bytes / (result.bitstream_bytes + uncoded),
            "weight_snr_db": coded_snr_db(state_dict, reconstructed, self.is_coded),
            "encode_seconds": result.startup_seconds + result.encode_seconds,
            "decode_seconds": result.startup_seconds + result.decode_seconds,
            "encode_seconds_excl_startup": result.encode_seconds,
            "decode_seconds_excl_startup": result.decode_seconds,
            "startup_seconds": result.startup_seconds,
            "worker_seconds": result.worker_seconds,
            "ffmpeg_version": None,
            "nncodec_version": result.version,
            "nncodec_use_dq": use_dq,
            # Inside coded_bytes, not on top: NNCodec stores names and shapes in its own bitstream.
            "bitstream_includes_names_and_shapes": True,
            "bitstream_name_bytes": result.name_bytes,
            **self.accuracy_fields(evaluation),
        }
        record["cached_evaluation"] = cached
        return record


def baseline(state_dict: dict[str, torch.Tensor], method: str, is_coded):
    """(reconstructed state dict, bytes of the coded tensors including their float32 scales).

    Uncoded tensors are counted at their original size for every baseline, as for vcwc files.
    """
    if method not in BASELINES:
        raise InputError(f"unknown baseline {method!r}; known: {', '.join(BASELINES)}")
    reconstructed, payload, scale_bytes = {}, [], 0
    for name, tensor in state_dict.items():
        if not is_coded(name, tensor):
            reconstructed[name] = tensor
            continue
        if method in ("fp32", "fp16"):
            stored = tensor.float() if method == "fp32" else tensor.half()
            payload.append(stored.numpy().tobytes())
            reconstructed[name] = stored.to(tensor.dtype)
            continue
        values = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        q = quantize(values, QuantConfig("per_channel" if method.endswith("per_channel") else "per_tensor"), name)
        payload.append(q.symbols.tobytes())
        scale_bytes += 4 * len(q.scales)
        reconstructed[name] = torch.from_numpy(dequantize(q.symbols, q.scales)).to(tensor.dtype)
    data = b"".join(payload)
    if "zstd" in method:
        data = zstandard.ZstdCompressor(level=19).compress(data)
    return reconstructed, len(data) + scale_bytes


def coded_snr_db(original: dict, reconstructed: dict, is_coded) -> float:
    """SNR over all coded weights together (signal and error energies summed across tensors)."""
    names = [n for n, t in original.items() if is_coded(n, t)]
    if not names:
        return float("inf")
    reference = np.concatenate([original[n].detach().double().reshape(-1).numpy() for n in names])
    values = np.concatenate([reconstructed[n].detach().double().reshape(-1).numpy() for n in names])
    return snr_db(reference, values)
