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
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import zstandard
from tqdm import tqdm

from ..codecs import ffmpeg
from ..errors import CodecError, InputError
from ..format import layout, low_bits
from ..format.container import ContainerWriter, crc32
from ..format.records import FrameRecord, LowBitsRef, QuantizerRecord, ScalesRef, TensorRecord
from ..io import ModelSource
from ..metrics import decibels, error_sums
from ..quant.quantize import Quantized, as_rows, dequantize, quantize
from .decode import tensor_symbols
from .plan import Plan, TensorPlan
from .uncoded import UNCODED_ZSTD_LEVEL as SCALES_ZSTD_LEVEL

BLOCK_ELEMENTS = 1 << 22  # weights dequantized at once when measuring a tensor's error


@dataclass
class Encoded:
    """What the encoder produced besides the blobs: the tensor and frame records, and the scales."""

    records: dict[str, TensorRecord] = field(default_factory=dict)
    frames: list[FrameRecord] = field(default_factory=list)
    scale_bytes: bytearray = field(default_factory=bytearray)
    reconstructed_error: dict[str, float] = field(default_factory=dict)  # name -> weight SNR in dB

    def add_scales(self, values: np.ndarray) -> ScalesRef:
        """Append float32 values to the quantizer blob; where they lie (the blob's index is set on writing)."""
        ref = ScalesRef(-1, len(self.scale_bytes), len(values))
        self.scale_bytes += values.astype("<f4").tobytes()
        return ref

    def scales_blob(self) -> tuple[bytes, str]:
        """The quantizer blob's bytes and compression: zstd where it holds column scales, which repeat a few
        values (vcwc.quant.sensitivity.COLUMN_GRID) and compress to a few bits each; else as they are."""
        if not any(record.quantizer.columns for record in self.records.values()):
            return bytes(self.scale_bytes), "none"
        return zstandard.ZstdCompressor(level=SCALES_ZSTD_LEVEL).compress(bytes(self.scale_bytes)), "zstd"


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
    model's order; returning None spares building the reconstruction. `moments` (gptq's, per tensor) are used
    up: each tensor's leave the dict as its levels are chosen, so memory does not hold every layer's to the end.

    With `plan.raw_fallback`, a tensor whose share of the video streams would cost more than its symbols as
    raw int8 bytes is stored raw instead (symbols wider than int8 are first requantized to int8), and the
    rest of its chunk is encoded again without it: no coded tensor costs more than raw int8 plus its scales.
    """
    result = Encoded()
    total = sum(math.prod(source.shape(n)) for n in plan.coded)
    bar = tqdm(
        total=total, desc="encoding", unit="weight", unit_scale=True, disable=None if progress else True, leave=False
    )

    moments = moments if moments is not None else {}

    def quantized_of(name: str) -> Quantized:
        return quantize(
            source.array(name), plan.coded[name].quant, name, moments.pop(name, None), plan.column_steps.get(name)
        )

    # Records waiting for their tensor's error, measured in the pool while the next tensor is gathered: one
    # at a time, so memory holds at most one more tensor's weights.
    finishing: deque = deque()
    with ThreadPoolExecutor(max_workers=workers(jobs)) as pool:

        def finish(tensor_plan: TensorPlan, q: Quantized, payload, regions, decoded: np.ndarray) -> None:
            finishing.append(
                _finish_tensor(source, tensor_plan, q, payload, regions, decoded, result, on_decoded, pool)
            )
            _complete(finishing, result, 1)

        for names in plan.chunks:
            # The bar moves by half of a tensor's weights as its levels are chosen (gptq and the trellis take
            # a while) and by the rest when its chunk's frames are written.
            quantized, moved = {}, 0
            for name, levels in zip(names, pool.map(quantized_of, names)):
                quantized[name] = levels
                half = math.prod(source.shape(name)) // 2
                bar.update(half)
                moved += half
            # What the frames hold: the symbols, or their high part where the low bits go apart.
            framed = {name: _split_low_bits(plan.coded[name], quantized[name]) for name in names}
            in_frames = {name: f.symbols for name, f in framed.items()}
            chunk = _encode_frames(plan, names, in_frames, binary, pool, len(result.frames))
            raw = [
                n
                for n in names
                if plan.raw_fallback and chunk.share(n) + len(framed[n].low) > math.prod(quantized[n].symbols.shape)
            ]
            if raw:
                for name in raw:
                    if quantized[name].symbols.dtype != np.int8:
                        quantized[name] = quantize(
                            source.array(name),
                            replace(plan.coded[name].quant, bits=8),
                            name,
                            columns=plan.column_steps.get(name),
                        )
                    elif framed[name].bits:  # the whole symbols again
                        whole = low_bits.join(framed[name].symbols, framed[name].low, framed[name].bits, np.int8)
                        quantized[name] = replace(quantized[name], symbols=whole)
                chunk = _encode_frames(
                    plan, [n for n in names if n not in raw], in_frames, binary, pool, len(result.frames)
                )
            decoded_frames = _write_frames(chunk, writer, result)
            for name in names:
                if name in raw:
                    symbols = quantized[name].symbols
                    blob = writer.add("symbols", np.ascontiguousarray(symbols).tobytes())
                    payload = replace(plan.coded[name].payload, type="raw", blob=blob, offset=0)
                    finish(plan.coded[name], quantized[name], payload, (), symbols)
                    continue
                tensor_plan, q, frame_symbols = plan.coded[name], quantized[name], framed[name].symbols
                matrix = layout.matrix_shape(q.symbols.shape, tensor_plan.arrangement)
                # As the decoder will hold them: int8 from 8-bit frames, int16 from 10-bit ones (the checksum's bytes).
                decoded = tensor_symbols(
                    decoded_frames,
                    chunk.regions[name],
                    matrix,
                    q.symbols.shape,
                    tensor_plan.arrangement,
                    bit_depth(frame_symbols),
                )
                if tensor_plan.settings.lossless and not np.array_equal(decoded, frame_symbols):
                    codec = tensor_plan.codec
                    hint = f" ({codec.lossless_failure_hint})" if codec.lossless_failure_hint else ""
                    raise CodecError(
                        f"{codec.name} did not return tensor {name!r} bit-exactly in lossless mode; "
                        f"this encoder or ffmpeg build cannot be trusted for lossless coding{hint}"
                    )
                payload = tensor_plan.payload
                if framed[name].bits:
                    bits, low = framed[name].bits, framed[name].low
                    decoded = low_bits.join(decoded, low, bits, q.config.symbol_dtype)
                    payload = replace(payload, low_bits=LowBitsRef(bits, writer.add("symbols", low), 0))
                finish(tensor_plan, q, payload, chunk.regions[name], decoded)
            _complete(finishing, result, 0)
            bar.update(sum(math.prod(source.shape(n)) for n in names) - moved)
    bar.close()
    return result


@dataclass(frozen=True)
class Framed:
    """What a tensor's frames hold: its symbols, or their high part with `bits` low bits packed apart."""

    symbols: np.ndarray
    bits: int = 0
    low: bytes = b""


def _split_low_bits(tensor_plan: TensorPlan, q: Quantized) -> Framed:
    """Where the low bits go apart, `q.symbols` may be left holding the high part (split in place, so that
    memory holds one copy of the symbols, not two): only their shape is read from `q` afterwards."""
    bits = low_bits.low_bits_for(q.symbols) if tensor_plan.low_bits_apart else 0
    if not bits:
        return Framed(q.symbols)
    high, low = low_bits.split(q.symbols, bits)
    return Framed(high, bits, low)


@dataclass
class ChunkFrames:
    """A chunk's frames, encoded and decoded again, and where each tensor sits in them."""

    frames: list[tuple]  # (plan, (width, height), bit depth, encode job, stream bytes, decoded luma)
    regions: dict[str, list[layout.Region]]
    first_frame: int

    def share(self, name: str) -> float:
        """A tensor's bytes: each frame's stream shared among its tensors by the pixels they cover."""
        if name not in self.regions:
            return 0.0
        covered: dict[int, int] = defaultdict(int)
        for regions in self.regions.values():
            for r in regions:
                covered[r.frame] += r.width * r.height
        return sum(
            len(self.frames[r.frame - self.first_frame][4]) * r.width * r.height / covered[r.frame]
            for r in self.regions[name]
        )


def _encode_frames(
    plan: Plan, names: list[str], symbols: dict[str, np.ndarray], binary: str, pool, first_frame: int
) -> ChunkFrames:
    """Pack the tensors into frames with those that share their settings and bit depth; encode and decode
    every frame, `jobs` at a time."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name in names:
        groups[(*plan.coded[name].frame_key, bit_depth(symbols[name]))].append(name)
    matrices = {name: layout.as_matrix(symbols[name], plan.coded[name].arrangement) for name in names}
    tasks, regions_of = [], {}
    for key, members in groups.items():
        tensor_plan, depth = plan.coded[members[0]], key[-1]
        codec = tensor_plan.codec
        limits = layout.FrameLimits(codec.block_size, codec.min_size, codec.max_width, codec.max_height)
        packing = layout.pack([matrices[name].shape for name in members], limits)
        start = first_frame + len(tasks)
        placed: list[list] = [[] for _ in packing.frame_sizes]
        for name, regions in zip(members, packing.regions):
            regions_of[name] = [
                layout.Region(start + r.frame, r.x, r.y, r.row, r.col, r.width, r.height) for r in regions
            ]
            for r in regions:
                placed[r.frame].append((matrices[name], r))
        tasks += [(tensor_plan, size, items, depth) for size, items in zip(packing.frame_sizes, placed)]

    def encode_and_decode(task):
        tensor_plan, (width, height), items, depth = task
        luma = layout.render_frame((width, height), items, depth)
        codec, settings = tensor_plan.codec, tensor_plan.settings
        job = codec.job(width, height, settings, depth)
        data = ffmpeg.encode(job, luma[None], binary)
        decoded = ffmpeg.decode(data, codec.container, width, height, binary, codec.decoder, bit_depth=depth)
        return tensor_plan, (width, height), depth, job, data, decoded[0]

    return ChunkFrames(list(pool.map(encode_and_decode, tasks)), regions_of, first_frame)


def _write_frames(chunk: ChunkFrames, writer: ContainerWriter, result: Encoded) -> dict[int, np.ndarray]:
    """Write the chunk's streams in frame order; their decoded luma planes by frame index."""
    decoded = {}
    for offset, (tensor_plan, (width, height), _, job, data, luma) in enumerate(chunk.frames):
        settings = tensor_plan.settings
        result.frames.append(
            FrameRecord(
                writer.add("video", data),
                tensor_plan.codec.name,
                tensor_plan.codec.container,
                width,
                height,
                settings.lossless,
                settings.qp,
                dict(job.output_options),
                job.pixel_format,
            )
        )
        decoded[chunk.first_frame + offset] = luma
    return decoded


def _finish_tensor(
    source: ModelSource,
    tensor_plan: TensorPlan,
    q: Quantized,
    payload,
    regions,
    decoded: np.ndarray,
    result: Encoded,
    on_decoded,
    pool,
) -> tuple[str, Future, Callable]:
    """The record of one coded tensor, from the symbols the decoder will return: (name, its error being
    measured in `pool`, the function that makes the record from that error)."""
    name = tensor_plan.name
    original = source.array(name)
    if on_decoded is not None and on_decoded(name) is not None:
        on_decoded(name)(original, dequantize(decoded, q.scales, q.config.dependent, q.columns))
    error = pool.submit(reconstruction_error, original, decoded, q.scales, q.config.dependent, q.columns)
    scales = result.add_scales(q.scales)
    columns = None if q.columns is None else result.add_scales(q.columns)
    rounding = "gptq" if q.config.rounding == "gptq" else None
    symbols_crc32 = crc32(np.ascontiguousarray(decoded).tobytes())

    def record(snr: float, largest: float) -> TensorRecord:
        return TensorRecord(
            name,
            source.dtype(name),
            tuple(q.symbols.shape),
            "video",
            quantizer=QuantizerRecord(
                q.granularity,
                q.config.bits,
                q.config.max_level,
                scales,
                rounding,
                QuantizerRecord.kind_of(q.config.dependent),
                columns=columns,
            ),
            arrangement=tensor_plan.arrangement,
            matrix=layout.matrix_shape(q.symbols.shape, tensor_plan.arrangement),
            payload=payload,
            regions=tuple(regions),
            symbols_crc32=symbols_crc32,
            snr_db=json_float(snr),
            max_abs_error=json_float(largest),
        )

    return name, error, record


def _complete(finishing: deque, result: Encoded, keep: int) -> None:
    """Make the records of the oldest tensors in `finishing` until at most `keep` wait (in order, so the
    records keep the model's order); each waiting tensor holds its weights and symbols in memory."""
    while len(finishing) > keep:
        name, error, record = finishing.popleft()
        snr, largest = error.result()
        result.records[name] = record(snr, largest)
        result.reconstructed_error[name] = snr


def reconstruction_error(
    original: np.ndarray,
    symbols: np.ndarray,
    scales: np.ndarray,
    dependent: bool = False,
    columns: np.ndarray | None = None,
) -> tuple[float, float]:
    """(snr_db, max_abs_error) of the dequantized symbols, a block of rows at a time: no full float copy."""
    rows = as_rows(symbols)
    reference = original.reshape(rows.shape)
    step = max(1, BLOCK_ELEMENTS // max(1, rows.shape[1]))
    signal = error = largest = 0.0
    for start in range(0, rows.shape[0], step):
        block = slice(start, start + step)
        parts = error_sums(
            reference[block], dequantize(rows[block], scales[block] if len(scales) > 1 else scales, dependent, columns)
        )
        signal, error, largest = signal + parts[0], error + parts[1], max(largest, parts[2])
    return decibels(signal, error), largest


def bit_depth(symbols: np.ndarray) -> int:
    """8-bit frames hold symbols of -127..127 (stored + 128); wider ones need 10-bit frames (+ 512)."""
    peak = int(np.abs(symbols).max()) if symbols.size else 0
    return 8 if peak <= 127 else 10


def json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")


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
