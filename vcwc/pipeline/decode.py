"""Decoding: read the container, decode the frames a tensor needs, rebuild it, check it, hand it on.

Tensors come out one at a time in the file's order. Frames are decoded in parallel (`jobs` at a time)
a little ahead of the tensor that needs them and dropped after their last use; a tensor is rebuilt while
the next one's frames are gathered. Memory holds a few frames and two tensors, whatever the model's size.
Every coded tensor's symbols are checked against the CRC-32 stored at compression time; decoders are
bit-exact by the standards, so a mismatch means a corrupted file or a non-conforming decoder, and it is
an error.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..codecs import ffmpeg
from ..codecs.base import stream_decoder
from ..errors import InputError, IntegrityError
from ..format import layout
from ..format.container import Container, crc32
from ..format.low_bits import join, packed_length
from ..format.records import TensorRecord
from ..format.safetensors import from_array, to_array
from ..quant.quantize import dequantize


@dataclass(frozen=True)
class DecodedTensor:
    record: TensorRecord
    data: bytes  # the tensor's bytes at its original dtype, little-endian

    @property
    def values(self) -> np.ndarray:
        return to_array(self.data, self.record.dtype, self.record.shape)


def tensor_symbols(
    frames: dict[int, np.ndarray],
    regions,
    matrix: tuple[int, int],
    shape: tuple[int, ...],
    arrangement: str,
    bit_depth: int = 8,
) -> np.ndarray:
    """The symbols of one tensor, gathered from its regions of the decoded frames."""
    rows, cols = matrix
    return layout.from_matrix(layout.extract(frames, regions, rows, cols, bit_depth), shape, arrangement)


def decode_tensors(
    archive: Container,
    names: list[str] | None = None,
    *,
    binary: str | None = None,
    jobs: int | None = None,
    progress: bool = False,
    hwaccel: str | None = None,
) -> Iterator[DecodedTensor]:
    """Every tensor of the file (or those named), in the file's order."""
    meta = archive.meta
    records = list(meta.tensors)
    if names is not None:
        known = {record.name for record in records}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise InputError(f"{archive.source}: no tensor named {', '.join(map(repr, unknown))}")
        wanted = set(names)
        # An alias is rebuilt from the tensor it repeats, which is decoded then too.
        wanted |= {meta.tensor(n).alias_of for n in names if meta.tensor(n).storage == "alias"}
        records = [record for record in records if record.name in wanted]
    last_use: dict[int, int] = {}
    order: list[int] = []
    for position, record in enumerate(records):
        for region in record.regions:
            if region.frame not in last_use:
                order.append(region.frame)
            last_use[region.frame] = position
    if order and binary is None:
        binary = ffmpeg.find_ffmpeg()
    sizes = meta.uncoded_sizes()
    scale_sizes = meta.scale_sizes()
    uncoded_blobs: dict[int, bytes] = {}
    scale_blobs: dict[int, bytes] = {}
    kept: dict[str, bytes] = {}
    aliased = {record.alias_of for record in records if record.storage == "alias"}
    count = max(1, jobs or os.cpu_count() or 1)

    def decode_frame(index: int) -> np.ndarray:
        frame = meta.frames[index]
        # The decoder follows the stream format, not the encoder: no encoder needs to exist here.
        return ffmpeg.decode(
            archive.raw_blob(frame.blob),
            frame.container,
            frame.width,
            frame.height,
            binary,
            stream_decoder(frame.container, hwaccel),
            hwaccel=hwaccel,
            bit_depth=frame.bit_depth,
        )[0]

    bar = tqdm(total=len(order), desc="decoding frames", unit="frame", disable=None if progress else True, leave=False)
    with ThreadPoolExecutor(max_workers=count) as pool, ThreadPoolExecutor(max_workers=1) as assembly:
        pending = {}
        submitted: set[int] = set()
        decoded: dict[int, np.ndarray] = {}
        upcoming = iter(order)

        def submit(index: int) -> None:
            if index not in submitted:
                submitted.add(index)
                pending[index] = pool.submit(decode_frame, index)

        def top_up(needed: set[int]) -> None:
            for index in sorted(needed):
                submit(index)
            while len(pending) < 2 * count:
                index = next(upcoming, None)
                if index is None:
                    break
                submit(index)

        # Each coded tensor is rebuilt in `assembly` while the main thread gathers the next one's frames;
        # tensors come out in order, at most one waiting (memory holds one tensor more).
        waiting: deque[tuple[TensorRecord, Future | bytes]] = deque()

        def emit(keep: int) -> Iterator[DecodedTensor]:
            while len(waiting) > keep:
                record, data = waiting.popleft()
                data = data.result() if isinstance(data, Future) else data
                if record.name in aliased:
                    kept[record.name] = data
                yield DecodedTensor(record, data)

        for position, record in enumerate(records):
            if record.storage == "alias":
                yield from emit(0)  # the tensor it repeats may still be on its way
                waiting.append((record, kept[record.alias_of]))
            elif record.coded:
                needed = {region.frame for region in record.regions}
                top_up(needed)
                for index in needed:
                    if index not in decoded:
                        decoded[index] = pending.pop(index).result()
                        bar.update()
                frames = {index: decoded[index] for index in needed}
                waiting.append(
                    (record, assembly.submit(_coded_tensor, archive, record, frames, scale_blobs, scale_sizes))
                )
                for index in needed:
                    if last_use[index] <= position:
                        decoded.pop(index, None)
            else:
                if record.blob not in uncoded_blobs:
                    uncoded_blobs[record.blob] = archive.blob(record.blob, sizes[record.blob])
                raw = uncoded_blobs[record.blob][record.offset : record.offset + record.length]
                data = (
                    raw
                    if record.encoding == "exact"
                    else from_array(to_array(raw, "float16", record.shape).astype(np.float32), record.dtype)
                )
                waiting.append((record, data))
            yield from emit(1)
        yield from emit(0)
    bar.close()


def _coded_tensor(
    archive: Container,
    record: TensorRecord,
    frames: dict[int, np.ndarray],
    scale_blobs: dict[int, bytes],
    scale_sizes: dict[int, int],
) -> bytes:
    if record.payload.type == "raw":
        symbols = raw_symbols(archive, record)
    else:
        bit_depth = archive.meta.frames[record.regions[0].frame].bit_depth
        symbols = tensor_symbols(frames, record.regions, record.matrix, record.shape, record.arrangement, bit_depth)
        apart = record.payload.low_bits
        if apart is not None:
            low = archive.raw_blob(apart.blob)[apart.offset : apart.offset + packed_length(record.elements, apart.bits)]
            symbols = join(symbols, low, apart.bits, layout.symbol_dtype(record.quantizer.bits))
    if crc32(np.ascontiguousarray(symbols).tobytes()) != record.symbols_crc32:
        raise IntegrityError(
            f"{archive.source}: tensor {record.name!r} decoded to symbols that do not match the "
            f"stored checksum (corrupted file or non-conforming decoder)"
        )
    quantizer = record.quantizer
    scales = _scales(archive, record, quantizer.scales, scale_blobs, scale_sizes)
    columns = (
        None if quantizer.columns is None else _scales(archive, record, quantizer.columns, scale_blobs, scale_sizes)
    )
    return from_array(dequantize(symbols, scales, quantizer.dependent, columns), record.dtype)


def _scales(archive: Container, record: TensorRecord, ref, scale_blobs: dict[int, bytes], scale_sizes) -> np.ndarray:
    if ref.blob not in scale_blobs:
        # The size the metadata implies bounds a compressed blob: without it, one that inflates to gigabytes
        # would be read whole for a few scales.
        scale_blobs[ref.blob] = archive.blob(ref.blob, scale_sizes[ref.blob])
    raw = scale_blobs[ref.blob][ref.offset : ref.end]
    if len(raw) != ref.end - ref.offset:
        raise IntegrityError(f"{archive.source}: the scales of tensor {record.name!r} lie outside their blob")
    return np.frombuffer(raw, dtype="<f4")


def raw_symbols(archive: Container, record: TensorRecord) -> np.ndarray:
    """The int8 symbols of a tensor stored raw (where video would have cost more)."""
    count = math.prod(record.shape)
    data = archive.raw_blob(record.payload.blob)[record.payload.offset : record.payload.offset + count]
    return np.frombuffer(data, dtype=np.int8).reshape(record.shape)
