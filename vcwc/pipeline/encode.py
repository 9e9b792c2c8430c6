"""Encoding: quantize -> lay out as frames -> encode -> decode back and check -> write blobs.

Chunk by chunk (vcwc.pipeline.plan), the coded tensors are quantized, packed into frames with the
tensors that share their codec settings, and the frames are encoded and decoded again in parallel
(`jobs` at a time). Every frame is checked as it comes back: a lossless stream that does not return
its symbols bit-exactly is an error, never a file. Blobs are written in frame order, so the same input
and settings give the same bytes whatever `jobs` is. Memory holds about one chunk.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import zstandard
from tqdm import tqdm

from ..codecs import ffmpeg
from ..errors import CodecError, InputError
from ..format import layout
from ..format.container import ContainerWriter, crc32
from ..format.records import FrameRecord, QuantizerRecord, ScalesRef, TensorRecord
from ..io import ModelSource
from ..metrics import decibels, error_sums
from ..quant.quantize import Quantized, dequantize, quantize
from .decode import tensor_symbols
from .plan import Plan, TensorPlan

UNCODED_ZSTD_LEVEL = 19
BLOCK_ELEMENTS = 1 << 22  # weights dequantized at once when measuring a tensor's error
ONE_SHOT_UNCODED_BYTES = 256 << 20  # above this the uncoded blob is compressed as a stream


@dataclass
class Encoded:
    """What the encoder produced besides the blobs: the tensor and frame records, and the scales."""

    records: dict[str, TensorRecord] = field(default_factory=dict)
    frames: list[FrameRecord] = field(default_factory=list)
    scale_bytes: bytearray = field(default_factory=bytearray)
    reconstructed_error: dict[str, float] = field(default_factory=dict)  # name -> weight SNR in dB


def workers(jobs: int | None) -> int:
    return max(1, jobs or os.cpu_count() or 1)


def encode_tensors(
    source: ModelSource,
    plan: Plan,
    writer: ContainerWriter,
    binary: str,
    *,
    jobs: int | None = None,
    progress: bool = False,
    moments: dict | None = None,
    on_decoded=None,
) -> Encoded:
    """Encode every coded tensor of `plan`. `on_decoded(name)` may return a function that is then given
    (original, reconstructed) of that tensor as the decoder will return it (for the bias correction), in the
    model's order; returning None spares building the reconstruction."""
    result = Encoded()
    bar = tqdm(
        total=sum(math.prod(source.shape(n)) for n in plan.coded),
        desc="encoding",
        unit="weight",
        unit_scale=True,
        disable=None if progress else True,
        leave=False,
    )
    with ThreadPoolExecutor(max_workers=workers(jobs)) as pool:
        for names in plan.chunks:
            quantized = dict(
                zip(
                    names,
                    pool.map(
                        lambda name: quantize(
                            source.array(name), plan.coded[name].quant, name, (moments or {}).get(name)
                        ),
                        names,
                    ),
                )
            )
            _encode_chunk(source, plan, names, quantized, result, writer, binary, pool, on_decoded)
            bar.update(sum(math.prod(source.shape(n)) for n in names))
            del quantized
    bar.close()
    return result


def _encode_chunk(
    source,
    plan: Plan,
    names: list[str],
    quantized: dict[str, Quantized],
    result: Encoded,
    writer: ContainerWriter,
    binary: str,
    pool,
    on_decoded,
) -> None:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name in names:
        groups[(*plan.coded[name].frame_key, bit_depth(quantized[name].symbols))].append(name)
    matrices = {name: layout.as_matrix(quantized[name].symbols, plan.coded[name].arrangement) for name in names}
    tasks, regions_of = [], {}
    for key, members in groups.items():
        depth = key[-1]
        tensor_plan = plan.coded[members[0]]
        codec = tensor_plan.codec
        limits = layout.FrameLimits(codec.block_size, codec.min_size, codec.max_width, codec.max_height)
        packing = layout.pack([matrices[name].shape for name in members], limits)
        first_frame = len(result.frames) + len(tasks)
        placed: list[list] = [[] for _ in packing.frame_sizes]
        for name, regions in zip(members, packing.regions):
            regions_of[name] = [
                layout.Region(first_frame + r.frame, r.x, r.y, r.row, r.col, r.width, r.height) for r in regions
            ]
            for r in regions:
                placed[r.frame].append((matrices[name], r))
        for size, items in zip(packing.frame_sizes, placed):
            tasks.append((tensor_plan, size, items, depth))

    def encode_and_decode(task):
        tensor_plan, (width, height), items, depth = task
        luma = layout.render_frame((width, height), items, depth)
        codec, settings = tensor_plan.codec, tensor_plan.settings
        job = codec.job(width, height, settings, depth)
        data = ffmpeg.encode(job, luma[None], binary)
        decoded = ffmpeg.decode(data, codec.container, width, height, binary, codec.decoder, bit_depth=depth)
        return job, data, decoded[0]

    decoded_frames, base = {}, len(result.frames)
    for offset, (job, data, decoded) in enumerate(pool.map(encode_and_decode, tasks)):
        tensor_plan, (width, height), _, depth = tasks[offset]
        blob = writer.add("video", data)
        result.frames.append(
            FrameRecord(
                blob,
                tensor_plan.codec.name,
                tensor_plan.codec.container,
                width,
                height,
                tensor_plan.settings.lossless,
                tensor_plan.settings.qp,
                dict(job.output_options),
                job.pixel_format,
            )
        )
        decoded_frames[base + offset] = decoded
    for name in names:
        _finish_tensor(source, plan.coded[name], quantized[name], regions_of[name], decoded_frames, result, on_decoded)


def _finish_tensor(
    source: ModelSource,
    tensor_plan: TensorPlan,
    q: Quantized,
    regions: list,
    decoded_frames,
    result: Encoded,
    on_decoded,
) -> None:
    name = tensor_plan.name
    shape = tuple(q.symbols.shape)
    matrix = layout.matrix_shape(shape, tensor_plan.arrangement)
    # As the decoder will hold them: int8 from 8-bit frames, int16 from 10-bit ones (the checksum's bytes).
    decoded = tensor_symbols(decoded_frames, regions, matrix, shape, tensor_plan.arrangement, bit_depth(q.symbols))
    if tensor_plan.settings.lossless and not np.array_equal(decoded, q.symbols):
        hint = f" ({tensor_plan.codec.lossless_failure_hint})" if tensor_plan.codec.lossless_failure_hint else ""
        raise CodecError(
            f"{tensor_plan.codec.name} did not return tensor {name!r} bit-exactly in lossless mode; "
            f"this encoder or ffmpeg build cannot be trusted for lossless coding{hint}"
        )
    original = source.array(name)
    if on_decoded is not None and on_decoded(name) is not None:
        on_decoded(name)(original, dequantize(decoded, q.scales))
    snr, largest = reconstruction_error(original, decoded, q.scales)
    scales = ScalesRef(-1, len(result.scale_bytes), len(q.scales))
    result.scale_bytes += q.scales.astype("<f4").tobytes()
    rounding = "gptq" if tensor_plan.quant.rounding == "gptq" else None
    result.records[name] = TensorRecord(
        name,
        source.dtype(name),
        shape,
        "video",
        quantizer=QuantizerRecord(
            tensor_plan.quant.granularity, tensor_plan.quant.bits, tensor_plan.quant.max_level, scales, rounding
        ),
        arrangement=tensor_plan.arrangement,
        matrix=matrix,
        payload=tensor_plan.payload,
        regions=tuple(regions),
        symbols_crc32=crc32(np.ascontiguousarray(decoded).tobytes()),
        snr_db=json_float(snr),
        max_abs_error=json_float(largest),
    )
    result.reconstructed_error[name] = snr


def reconstruction_error(original: np.ndarray, symbols: np.ndarray, scales: np.ndarray) -> tuple[float, float]:
    """(snr_db, max_abs_error) of the dequantized symbols, a block of rows at a time: no full float copy."""
    rows = symbols.reshape(symbols.shape[0], -1) if symbols.ndim else symbols.reshape(1, 1)
    reference = original.reshape(rows.shape)
    step = max(1, BLOCK_ELEMENTS // max(1, rows.shape[1]))
    signal = error = largest = 0.0
    for start in range(0, rows.shape[0], step):
        block = slice(start, start + step)
        parts = error_sums(reference[block], dequantize(rows[block], scales[block] if len(scales) > 1 else scales))
        signal, error, largest = signal + parts[0], error + parts[1], max(largest, parts[2])
    return decibels(signal, error), largest


def bit_depth(symbols: np.ndarray) -> int:
    """8-bit frames hold symbols of -127..127 (stored + 128); wider ones need 10-bit frames (+ 512)."""
    peak = int(np.abs(symbols).max()) if symbols.size else 0
    return 8 if peak <= 127 else 10


def json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")


def write_uncoded(
    source: ModelSource, names: list[str], replaced: dict[str, bytes], encoding: str, writer: ContainerWriter
) -> dict[str, TensorRecord]:
    """Store the uncoded tensors, as they came or as `replaced` (corrected) bytes, in one zstd blob."""
    if not names:
        return {}
    records, offset, pieces = {}, 0, []
    for name in names:
        dtype = source.dtype(name)
        data = replaced[name] if name in replaced else source.raw(name)
        stored = "exact"
        if encoding == "float16" and dtype == "float32":
            data = np.frombuffer(data, dtype="<f4").astype("<f2").tobytes()
            stored = "float16"
        if source.is_float(name):
            _warn_non_finite(name, data, "float16" if stored == "float16" else dtype)
        records[name] = TensorRecord(
            name, dtype, tuple(source.shape(name)), "uncoded", blob=-1, offset=offset, length=len(data), encoding=stored
        )
        pieces.append(data)
        offset += len(data)
    if offset == 0:
        blob = writer.add("uncoded", zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compress(b""), "zstd")
    elif offset <= ONE_SHOT_UNCODED_BYTES:
        blob = writer.add(
            "uncoded", zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compress(b"".join(pieces)), "zstd"
        )
    else:
        compressor = zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compressobj(size=offset)
        blob = writer.add("uncoded", b"".join([*(compressor.compress(p) for p in pieces), compressor.flush()]), "zstd")
    return {name: _with_blob(record, blob) for name, record in records.items()}


def _with_blob(record: TensorRecord, blob: int) -> TensorRecord:
    from dataclasses import replace

    return replace(record, blob=blob)


def _warn_non_finite(name: str, data: bytes, dtype: str) -> None:
    import warnings

    from ..errors import VcwcWarning
    from ..format.safetensors import to_array

    values = to_array(data, dtype, (len(data) // {"float64": 8, "float32": 4}.get(dtype, 2),))
    bad = int((~np.isfinite(values)).sum())
    if bad:
        warnings.warn(
            f"tensor {name!r} (stored uncoded) holds {bad} NaN or infinite values; they are kept as they are",
            VcwcWarning,
            stacklevel=2,
        )


def check_min_snr(encoded: Encoded, min_snr_db: float | None) -> None:
    if min_snr_db is None:
        return
    low = {name: snr for name, snr in encoded.reconstructed_error.items() if snr < min_snr_db}
    if low:
        worst = min(low, key=low.get)
        raise InputError(
            f"{len(low)} coded tensors fall below the minimum weight SNR of {min_snr_db:g} dB "
            f"(lowest: {worst!r} at {low[worst]:.1f} dB); nothing was written"
        )
