"""compress: load -> select -> quantize -> lay out -> encode -> pack. decompress: the reverse."""

from __future__ import annotations

import copy
import fnmatch
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
import torch
import zstandard
from torch import nn
from tqdm import tqdm

from . import __version__, container, ffmpeg, layout, probe
from .architectures import build_model, get_architecture
from .codecs import Codec, EncoderSettings, stream_decoder
from .container import Blob, Container
from .correction import BiasCorrection
from .errors import CodecError, InputError, IntegrityError
from .files import LoadedModel, atomic_write, from_checkpoint, load_model
from .gptq import input_moments
from .metrics import error_stats
from .quantize import QuantConfig, Rounding, dequantize, quantize

UncodedStorage = Literal["exact", "float16"]
UNCODED_ZSTD_LEVEL = 19
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class Selection:
    """Which tensors go through the video codec; the rest are stored as they came.

    Default: every non-empty floating-point tensor with at least 2 dimensions. `layers="fc"` keeps only
    2-D weights (fully-connected layers, as in the original paper). `include` patterns (fnmatch)
    narrow the choice to matching names; `exclude` patterns remove names from it.
    """

    layers: Literal["all", "fc"] = "all"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.layers not in ("all", "fc"):
            raise InputError(f"layers must be 'all' or 'fc', got {self.layers!r}")

    def is_coded(self, name: str, tensor: torch.Tensor) -> bool:
        if not tensor.is_floating_point() or tensor.ndim < 2 or tensor.numel() == 0:
            return False
        if self.layers == "fc" and tensor.ndim != 2:
            return False
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def check_patterns(self, names: list[str]) -> None:
        for option, patterns in (("--include", self.include), ("--exclude", self.exclude)):
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                    raise InputError(f"{option} pattern {pattern!r} matches no tensor name")


@dataclass(frozen=True)
class TensorPlan:
    """How one coded tensor is encoded. Tensors share frames only when their plans' `frame_key` match."""

    name: str
    codec: Codec
    settings: EncoderSettings
    quant: QuantConfig
    arrangement: layout.Arrangement = "rows"

    @property
    def frame_key(self) -> tuple:
        return self.codec.name, self.settings

    @property
    def payload(self) -> dict:
        return {"type": "video", "codec": self.codec.name, "standard": self.codec.standard,
                "lossless": self.settings.lossless, "qp": self.settings.qp,
                "preset": self.settings.preset or self.codec.default_preset}


def compress(model, codec: str | Codec = "x265", qp: int | None = None, *, per_channel: bool = False,
             bits: int = 8, step: float | Mapping[str, float] | None = None, selection: Selection | None = None,
             arrangement: layout.Arrangement = "rows",
             preset: str | None = None, uncoded: UncodedStorage = "exact", ffmpeg_path: str | None = None,
             workers: int | None = None, progress: bool = False, device: str | None = None,
             bias_correction: bool = False, rounding: Rounding = "nearest", arch: str | nn.Module | None = None,
             input_shape: tuple[int, ...] | None = None) -> CompressedModel:
    """Compress a state dict, checkpoint dict, nn.Module or model file into a .vcwc file.

    qp=None is lossless on the int8 symbols (the only error is the int8 quantization itself).
    `codec` is a registered name, "auto" (the first working encoder of codecs.AUTO_ORDER), or a Codec
    instance such as hardware.CustomCodec. `device` picks a hardware encoder's device (--hw-device).
    `step` fixes the quantization step for every tensor, or per tensor as a mapping from coded tensor
    names (as --target-drop chooses them).
    `bias_correction` moves BatchNorm running means and biases to cancel the mean output shift of the
    coded weights (vcwc.correction; no data used). It needs the architecture: `arch` names a registered
    one or is a module (default: `model`, if it is a module); `input_shape` (channels first) defaults
    to the registered architecture's. `rounding="gptq"` chooses each weight's level by error-compensating
    rounding against noise-driven input moments (vcwc.gptq; no data used) and needs the architecture too.
    """
    loaded = model if isinstance(model, LoadedModel) else (
        load_model(model) if isinstance(model, (str, os.PathLike)) else from_checkpoint(model))
    selection = selection or Selection()
    selection.check_patterns(list(loaded.state_dict))
    if uncoded not in ("exact", "float16"):
        raise InputError(f"uncoded storage must be 'exact' or 'float16', got {uncoded!r}")
    settings = EncoderSettings(qp=qp, preset=preset, device=device)
    video_codec = probe.resolve_codec(codec, settings, ffmpeg_path)
    video_codec.check(settings)
    coded = [name for name, tensor in loaded.state_dict.items() if selection.is_coded(name, tensor)]
    steps = step if isinstance(step, Mapping) else dict.fromkeys(coded, step)
    missing = [name for name in coded if name not in steps]
    if missing:
        raise InputError(f"per-tensor steps lack {', '.join(map(repr, missing[:5]))}")
    granularity = "per_channel" if per_channel else "per_tensor"
    plans = {name: TensorPlan(name, video_codec, settings, QuantConfig(granularity, bits, steps[name], rounding),
                              arrangement) for name in coded}
    module = arch if arch is not None else model if isinstance(model, nn.Module) else None
    correction = estimate_correction(loaded, coded, module, input_shape) if bias_correction else None
    moments = estimate_input_moments(loaded, coded, module, input_shape) if rounding == "gptq" else None
    return encode_plans(loaded, plans, uncoded=uncoded, ffmpeg_path=ffmpeg_path, workers=workers,
                        progress=progress, correction=correction, input_moments=moments)


def estimate_correction(loaded: LoadedModel, coded: list[str], arch: str | nn.Module | None,
                        input_shape: tuple[int, ...] | None = None) -> BiasCorrection:
    """The data-free bias correction of these coded tensors, on the architecture they belong to."""
    module, input_shape = _noise_subject(loaded, arch, input_shape, "bias correction")
    return BiasCorrection.estimate(module, coded, input_shape)


def estimate_input_moments(loaded: LoadedModel, coded: list[str], arch: str | nn.Module | None,
                           input_shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """The noise-driven input moments that gptq rounding of these coded tensors needs (vcwc.gptq)."""
    module, input_shape = _noise_subject(loaded, arch, input_shape, "gptq rounding")
    return input_moments(module, coded, input_shape)


def _noise_subject(loaded: LoadedModel, arch: str | nn.Module | None, input_shape: tuple[int, ...] | None,
                   purpose: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The model as a module holding the loaded weights, and one input's shape, for a pass of noise."""
    if arch is None:
        raise InputError(f"{purpose} needs the model's architecture (--arch, or pass the nn.Module)")
    if isinstance(arch, str):
        return build_model(arch, loaded.state_dict), tuple(input_shape or get_architecture(arch).input_shape)
    if input_shape is None:
        raise InputError(f"{purpose} on a module needs its input_shape, e.g. (3, 224, 224)")
    # A copy: the caller's module keeps its own weights.
    return build_model(copy.deepcopy(arch), loaded.state_dict), tuple(input_shape)


def encode_plans(loaded: LoadedModel, plans: dict[str, TensorPlan], *, uncoded: UncodedStorage = "exact",
                 ffmpeg_path: str | None = None, workers: int | None = None,
                 progress: bool = False, correction: BiasCorrection | None = None,
                 input_moments: Mapping[str, torch.Tensor] | None = None) -> CompressedModel:
    """Encode the tensors named in `plans` with their own settings; store every other tensor as it is,
    or as `correction` moves it to fit the coded tensors as they decode. Plans with gptq rounding take
    their layer's `input_moments`."""
    binary = ffmpeg.find_ffmpeg(ffmpeg_path)
    for codec in {plan.codec.name: plan.codec for plan in plans.values()}.values():
        probe.require(codec, binary)
    blobs: list[Blob] = []
    records: dict[str, dict] = {}
    quantized = {}
    scale_bytes = bytearray()
    for name, plan in plans.items():
        moments = (input_moments or {}).get(name)
        q = quantize(loaded.state_dict[name], plan.quant, name, moments)
        quantized[name] = q
        records[name] = {
            "quantizer": {"kind": "linear_symmetric", "granularity": plan.quant.granularity, "axis": 0,
                          "bits": plan.quant.bits, "max_level": plan.quant.max_level,
                          "scales": {"offset": len(scale_bytes), "count": len(q.scales), "dtype": "float32"}},
            "layout": {"arrangement": plan.arrangement,
                       "matrix": list(layout.matrix_shape(tuple(q.symbols.shape), plan.arrangement)),
                       "permutation": None},
            "payload": plan.payload,
        }
        if plan.quant.rounding == "gptq" and moments is not None:  # absent: nearest, as files before gptq were
            records[name]["quantizer"]["rounding"] = "gptq"
        scale_bytes += q.scales.astype("<f4").tobytes()

    frames_table, decoded_symbols = _encode_groups(plans, quantized, records, blobs, binary, workers, progress)
    if plans:
        quantizer_blob = len(blobs)
        blobs.append(Blob("quantizer", bytes(scale_bytes)))
        for name in plans:
            records[name]["quantizer"]["scales"]["blob"] = quantizer_blob

    reconstructed_weights = {}
    for name, plan in plans.items():
        decoded = decoded_symbols[name]
        if plan.settings.lossless and not np.array_equal(decoded, quantized[name].symbols):
            raise CodecError(f"{plan.codec.name} did not return tensor {name!r} bit-exactly in lossless mode; "
                             f"this encoder or ffmpeg build cannot be trusted for lossless coding")
        original = loaded.state_dict[name]
        reconstructed = dequantize(decoded, quantized[name].scales)
        reconstructed_weights[name] = torch.from_numpy(reconstructed).reshape(original.shape)
        records[name]["symbols_crc32"] = container.crc32(np.ascontiguousarray(decoded).tobytes())
        snr, largest = error_stats(original, reconstructed)
        records[name]["snr_db"], records[name]["max_abs_error"] = _json_float(snr), _json_float(largest)

    corrected = correction.corrected(loaded.state_dict, reconstructed_weights) if correction else {}
    uncoded_blob, offset = bytearray(), 0
    for name, tensor in loaded.state_dict.items():
        if name in plans:
            continue
        stored = corrected.get(name, tensor).detach().cpu().contiguous()
        encoding = "exact"
        if uncoded == "float16" and stored.dtype == torch.float32:
            stored, encoding = stored.to(torch.float16), "float16"
        raw = stored.reshape(-1).view(torch.uint8).numpy().tobytes() if stored.numel() else b""
        records[name] = {"uncoded": {"offset": offset, "length": len(raw), "encoding": encoding}}
        uncoded_blob += raw
        offset += len(raw)
    if offset:
        blob_index = len(blobs)
        blobs.append(Blob("uncoded", zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compress(bytes(uncoded_blob)),
                          compression="zstd"))
        for record in records.values():
            if "uncoded" in record:
                record["uncoded"]["blob"] = blob_index

    tensors = []
    for name, tensor in loaded.state_dict.items():
        entry = {"name": name, "dtype": _dtype_name(name, tensor), "shape": list(tensor.shape),
                 "storage": "video" if name in plans else "uncoded", **records[name]}
        tensors.append(entry)
    metadata = {
        "format": "vcwc", "vcwc_version": __version__, "ffmpeg_version": ffmpeg.version(binary) if plans else None,
        "source": {"prefix": loaded.prefix, "container_key": loaded.container_key, "extras": loaded.extras,
                   "dropped": loaded.dropped},
        "tensors": tensors, "frames": frames_table,
    }
    if correction:
        metadata["bias_correction"] = {"method": "batchnorm_driven_noise", "corrected": sorted(corrected),
                                       "uncorrectable": correction.uncorrectable}
    return CompressedModel(container.write(metadata, blobs))


def _encode_groups(plans, quantized, records, blobs, binary, workers, progress):
    """Pack, encode and decode back every group of tensors that share settings."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, plan in plans.items():
        groups[plan.frame_key].append(name)
    frames_table, tasks = [], []
    matrices = {name: layout.as_matrix(quantized[name].symbols, plan.arrangement) for name, plan in plans.items()}
    for names in groups.values():
        plan = plans[names[0]]
        codec = plan.codec
        limits = layout.FrameLimits(codec.block_size, codec.min_size, codec.max_width, codec.max_height)
        packing = layout.pack([matrices[name].shape for name in names], limits)
        first_frame = len(frames_table)
        for name, regions in zip(names, packing.regions):
            records[name]["regions"] = [
                {**region.to_dict(), "frame": first_frame + region.frame} for region in regions]
        for luma, (width, height) in zip(layout.render(packing, [matrices[name] for name in names]),
                                         packing.frame_sizes):
            frames_table.append({"codec": codec.name, "container": codec.container, "width": width,
                                 "height": height, "lossless": plan.settings.lossless, "qp": plan.settings.qp,
                                 "options": dict(codec.job(width, height, plan.settings).output_options)})
            tasks.append((codec, plan.settings, luma))

    def encode_and_decode(task):
        codec, settings, luma = task
        height, width = luma.shape
        data = ffmpeg.encode(codec.job(width, height, settings), luma[None], binary)
        decoded = ffmpeg.decode(data, codec.container, width, height, binary, codec.decoder)
        return data, decoded[0]

    results = _map_parallel(encode_and_decode, tasks, workers, progress, "encoding frames")
    decoded_frames = {}
    for index, (data, decoded) in enumerate(results):
        frames_table[index]["blob"] = len(blobs)
        blobs.append(Blob("video", data))
        decoded_frames[index] = decoded
    symbols_by_name = {}
    for name in plans:
        entry = {**records[name], "shape": list(quantized[name].symbols.shape)}
        symbols_by_name[name] = decoded_symbols(entry, decoded_frames)
    return frames_table, symbols_by_name


def _map_parallel(function, items, workers, progress, description):
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(function, items), total=len(items), desc=description, unit="frame",
                         disable=None if progress else True, leave=False))


def _dtype_name(name: str, tensor: torch.Tensor) -> str:
    try:
        return DTYPE_NAMES[tensor.dtype]
    except KeyError:
        raise InputError(f"tensor {name!r} has dtype {tensor.dtype}, which vcwc does not store") from None


def _json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")


class CompressedModel:
    """The bytes of a .vcwc file, with its parsed metadata."""

    def __init__(self, data: bytes, source: str = "<bytes>"):
        self.data = data
        self.container = Container(data, source)

    @classmethod
    def open(cls, path: str | os.PathLike) -> CompressedModel:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{str(path)!r} does not exist") from None
        except OSError as exc:
            raise InputError(f"{str(path)!r} cannot be read ({exc.strerror})") from None
        return cls(data, str(path))

    @property
    def metadata(self) -> dict:
        return self.container.metadata

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        return atomic_write(path, self.data, force)

    def decompress(self, names: list[str] | None = None, *, ffmpeg_path: str | None = None,
                   workers: int | None = None, progress: bool = False,
                   hwaccel: str | None = None) -> dict[str, torch.Tensor]:
        return _decompress(self.container, names, ffmpeg_path, workers, progress, hwaccel)

    def size_report(self):
        from .report import size_report

        return size_report(self)

    def __len__(self) -> int:
        return len(self.data)


def open_compressed(source) -> CompressedModel:
    if isinstance(source, CompressedModel):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return CompressedModel(bytes(source))
    return CompressedModel.open(source)


def decompress(source, names: list[str] | None = None, *, ffmpeg_path: str | None = None,
               workers: int | None = None, progress: bool = False,
               hwaccel: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict (original names, shapes, dtypes) from .vcwc bytes or a path.

    `names` decodes only those tensors: only the frames that hold them are decoded. Frames are decoded
    in software unless `hwaccel` names an ffmpeg hwaccel (cuda, vaapi, qsv, ...); either way the symbols
    are checked against their stored checksums.
    """
    return open_compressed(source).decompress(names, ffmpeg_path=ffmpeg_path, workers=workers, progress=progress,
                                              hwaccel=hwaccel)


def _decompress(archive: Container, names, ffmpeg_path, workers, progress, hwaccel=None) -> dict[str, torch.Tensor]:
    entries = archive.metadata["tensors"]
    if names is not None:
        known = {entry["name"] for entry in entries}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise InputError(f"{archive.source}: no tensor named {', '.join(map(repr, unknown))}")
        entries = [entry for entry in entries if entry["name"] in set(names)]
    needed_frames = sorted({r["frame"] for e in entries if e["storage"] == "video" for r in e["regions"]})
    decoded_frames = {}
    if needed_frames:
        binary = ffmpeg.find_ffmpeg(ffmpeg_path)
        frames = archive.metadata["frames"]

        def decode_frame(index):
            frame = frames[index]
            # The decoder follows the stream format, not the encoder: no encoder needs to exist here.
            planes = ffmpeg.decode(archive.blob(frame["blob"]), frame["container"], frame["width"],
                                   frame["height"], binary, stream_decoder(frame["container"], hwaccel),
                                   hwaccel=hwaccel)
            return planes[0]

        decoded_frames = dict(zip(needed_frames, _map_parallel(decode_frame, needed_frames, workers, progress,
                                                               "decoding frames")))
    blob_cache: dict[int, bytes] = {}

    def blob(index: int) -> bytes:
        if index not in blob_cache:
            blob_cache[index] = archive.blob(index)
        return blob_cache[index]

    state_dict = {}
    for entry in entries:
        dtype = DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        if entry["storage"] == "video":
            symbols = decoded_symbols(entry, decoded_frames)
            if container.crc32(np.ascontiguousarray(symbols).tobytes()) != entry["symbols_crc32"]:
                raise IntegrityError(f"{archive.source}: tensor {entry['name']!r} decoded to symbols that do not "
                                     f"match the stored checksum (corrupted file or non-conforming decoder)")
            scales_ref = entry["quantizer"]["scales"]
            scales = np.frombuffer(blob(scales_ref["blob"]), dtype="<f4", count=scales_ref["count"],
                                   offset=scales_ref["offset"])
            state_dict[entry["name"]] = torch.from_numpy(dequantize(symbols, scales)).to(dtype)
        else:
            ref = entry["uncoded"]
            raw = blob(ref["blob"])[ref["offset"]:ref["offset"] + ref["length"]]
            stored_dtype = torch.float16 if ref["encoding"] == "float16" else dtype
            tensor = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(stored_dtype) if raw else \
                torch.empty(0, dtype=stored_dtype)
            state_dict[entry["name"]] = tensor.reshape(shape).to(dtype)
    return state_dict


def decoded_symbols(entry: dict, decoded_frames: dict[int, np.ndarray]) -> np.ndarray:
    rows, cols = entry["layout"]["matrix"]
    regions = [layout.Region.from_dict(r) for r in entry["regions"]]
    matrix = layout.extract(decoded_frames, regions, rows, cols)
    return layout.from_matrix(matrix, tuple(entry["shape"]), entry["layout"]["arrangement"])
