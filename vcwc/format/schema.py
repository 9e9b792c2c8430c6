"""The metadata of a .vcwc file as typed records, checked field by field before anything is decoded.

`parse(document, payload_bytes, source)` turns the JSON object into a `Metadata` record or raises a
`FormatError` that names the field at fault. Every offset and length is checked against the file, every
shape against its regions and element count, every name against the known dtypes, stream formats and
encodings, and no two regions overlap; nothing is allocated from a declared size on the way. Codec names
are free-form (`--encoder` writes `custom:NAME`). The records themselves, which writers build too, are in
vcwc.format.records; docs/format.md describes the fields for people.
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Any

from .fields import Fields, error
from .layout import ARRANGEMENTS, Region, matrix_shape
from .low_bits import MAX_LOW_BITS, packed_length
from .records import (
    BLOB_KINDS,
    COMPRESSIONS,
    DTYPE_BYTES,
    FLOAT_DTYPES,
    GRANULARITIES,
    MAX_DIMENSIONS,
    MAX_ELEMENTS,
    MAX_FRAME_SIDE,
    MAX_SYMBOL_BITS,
    PIXEL_FORMATS,
    QUANTIZER_KINDS,
    STREAM_FORMATS,
    UNCODED_ENCODINGS,
    BlobRecord,
    FrameRecord,
    LowBitsRef,
    Metadata,
    PayloadRecord,
    QuantizerRecord,
    ScalesRef,
    SourceRecord,
    TensorRecord,
)
from .sections import bias_correction_section, methods_section, source_record


def parse(document: Any, payload_bytes: int, source: str = "<bytes>") -> Metadata:
    """Typed, checked metadata of a file whose payload area holds `payload_bytes` bytes."""
    top = Fields(document, "", source)
    if top.text("format") != "vcwc":
        raise top.error("format", "expected 'vcwc'")
    blobs = tuple(
        _blob(Fields(entry, f"blobs[{i}]", source), payload_bytes) for i, entry in enumerate(top.items("blobs"))
    )
    _check_blob_overlaps(blobs, source)
    frames = tuple(
        _frame(Fields(entry, f"frames[{i}]", source), blobs)
        for i, entry in enumerate(top.items("frames", optional=True))
    )
    used = [frame.blob for frame in frames]
    if len(set(used)) != len(used):
        raise error(source, "frames", "two frames share one blob")
    tensors = tuple(
        _tensor(Fields(entry, f"tensors[{i}]", source), blobs, frames) for i, entry in enumerate(top.items("tensors"))
    )
    names = [record.name for record in tensors]
    seen: set[str] = set()
    for name in names:  # one pass: names.count for each name took 10 s over a crafted file's 60000 tensors
        if name in seen:
            raise error(source, "tensors", f"the name {name[:80]!r} appears twice")
        seen.add(name)
    _check_aliases(tensors, source)
    _check_regions(tensors, frames, source)
    _check_uncoded(tensors, source)
    return Metadata(
        tensors=tensors,
        frames=frames,
        blobs=blobs,
        source=source_record(top.child("source"), names) if top.has("source") else SourceRecord(),
        vcwc_version=top.text("vcwc_version", optional=True, nullable=True),
        ffmpeg_version=top.text("ffmpeg_version", optional=True, nullable=True),
        recipe=top.mapping("recipe", optional=True, nullable=True),
        methods=methods_section(top),
        bias_correction=bias_correction_section(top, names),
    )


def _blob(fields: Fields, payload_bytes: int) -> BlobRecord:
    offset = fields.integer("offset", maximum=payload_bytes)
    length = fields.integer("length", maximum=payload_bytes - offset)
    return BlobRecord(
        fields.text("kind", BLOB_KINDS),
        offset,
        length,
        fields.integer("crc32", maximum=0xFFFFFFFF),
        fields.text("compression", COMPRESSIONS),
    )


def _check_blob_overlaps(blobs: tuple[BlobRecord, ...], source: str) -> None:
    order = sorted(range(len(blobs)), key=lambda i: blobs[i].offset)
    for before, after in zip(order, order[1:]):
        if blobs[before].offset + blobs[before].length > blobs[after].offset:
            raise error(source, f"blobs[{after}].offset", f"blob {after} overlaps blob {before}")


def _blob_index(fields: Fields, key: str, blobs: tuple[BlobRecord, ...], kind: str) -> int:
    index = fields.integer(key, maximum=len(blobs) - 1) if blobs else None
    if index is None:
        raise fields.error(key, "the file has no blobs")
    if blobs[index].kind != kind:
        raise fields.error(key, f"blob {index} is a {blobs[index].kind} blob, not {kind}")
    return index


def _frame(fields: Fields, blobs: tuple[BlobRecord, ...]) -> FrameRecord:
    blob = _blob_index(fields, "blob", blobs, "video")
    if blobs[blob].length == 0:
        raise fields.error("blob", "the frame's stream is empty")
    width, height = (fields.integer(key, minimum=2, maximum=MAX_FRAME_SIDE) for key in ("width", "height"))
    for key, value in (("width", width), ("height", height)):
        if value % 2:
            raise fields.error(key, f"{value} is odd; 4:2:0 frames have even sides")
    options = fields.mapping("options")
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in options.items()):
        raise fields.error("options", "expected an object of strings")
    return FrameRecord(
        blob,
        fields.text("codec"),
        fields.text("container", STREAM_FORMATS),
        width,
        height,
        fields.flag("lossless"),
        fields.integer("qp", minimum=-(1 << 20), nullable=True),
        options,
        fields.text("pixel_format", tuple(PIXEL_FORMATS), optional=True, default="yuv420p"),
    )


def _shape(fields: Fields) -> tuple[int, ...]:
    values = fields.items("shape")
    if len(values) > MAX_DIMENSIONS:
        raise fields.error("shape", f"{len(values)} dimensions, at most {MAX_DIMENSIONS}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fields.error("shape", "expected non-negative whole numbers")
    if math.prod(max(value, 1) for value in values) > MAX_ELEMENTS:
        raise fields.error("shape", f"{str(values)[:80]} has more than 2**48 elements (zero dimensions aside)")
    return tuple(values)


def _tensor(fields: Fields, blobs, frames) -> TensorRecord:
    name = fields.text("name")
    fields.path = f"{fields.path} ({name[:60]!r})"
    dtype = fields.text("dtype", tuple(DTYPE_BYTES))
    shape = _shape(fields)
    storage = fields.text("storage", ("video", "uncoded", "alias"))
    if storage == "alias":
        return TensorRecord(name, dtype, shape, storage, alias_of=fields.text("alias_of"))
    if storage == "uncoded":
        ref = fields.child("uncoded")
        blob = _blob_index(ref, "blob", blobs, "uncoded")
        encoding = ref.text("encoding", UNCODED_ENCODINGS)
        if encoding == "float16" and dtype not in FLOAT_DTYPES:
            raise ref.error("encoding", f"float16 storage of a {dtype} tensor")
        length = ref.integer("length")
        expected = math.prod(shape) * DTYPE_BYTES["float16" if encoding == "float16" else dtype]
        if length != expected:
            raise ref.error("length", f"{length} bytes, but {dtype} {list(shape)} takes {expected}")
        offset = ref.integer("offset")
        # A stored blob must hold the tensor (a compressed one is checked against its content when read).
        if blobs[blob].compression == "none" and offset + length > blobs[blob].length:
            raise ref.error("offset", f"the tensor ends at byte {offset + length} of a {blobs[blob].length}-byte blob")
        return TensorRecord(name, dtype, shape, storage, blob=blob, offset=offset, length=length, encoding=encoding)
    if dtype not in FLOAT_DTYPES:
        raise fields.error("dtype", f"a coded tensor must be floating point, got {dtype}")
    if not shape or math.prod(shape) == 0:
        raise fields.error("shape", "a coded tensor has at least one dimension and one element")
    quantizer = _quantizer(fields.child("quantizer"), shape, blobs)
    layout = fields.child("layout")
    arrangement = layout.text("arrangement", ARRANGEMENTS)
    if layout.raw("permutation", optional=True) is not None:
        raise layout.error("permutation", "channel permutations are not part of format version 1")
    matrix = tuple(layout.items("matrix"))
    # Whole numbers only: 27.0 and true compare equal to 27 and 1 but cannot size an array.
    if any(not isinstance(value, int) or isinstance(value, bool) for value in matrix) or list(matrix) != list(
        matrix_shape(shape, arrangement)
    ):
        raise layout.error(
            "matrix",
            f"{list(matrix)[:4]} does not fit shape {list(shape)} laid out as "
            f"{arrangement} ({list(matrix_shape(shape, arrangement))})",
        )
    payload_record = _payload(fields.child("payload"), shape, quantizer, blobs)
    kind = payload_record.type
    regions = []
    for index, entry in enumerate(fields.items("regions")):
        region = Fields(entry, f"{fields.path}.regions[{index}]", fields.source)
        regions.append(
            Region(
                *(
                    region.integer(
                        key,
                        minimum=1 if key in ("width", "height") else 0,
                        maximum=len(frames) - 1 if key == "frame" else None,
                    )
                    for key in ("frame", "x", "y", "row", "col", "width", "height")
                )
            )
        )
    if (kind == "video") != bool(regions):
        raise fields.error("regions", "a video payload needs regions, a raw one none")
    return TensorRecord(
        name,
        dtype,
        shape,
        storage,
        quantizer=quantizer,
        arrangement=arrangement,
        matrix=matrix,
        payload=payload_record,
        regions=tuple(regions),
        symbols_crc32=fields.integer("symbols_crc32", maximum=0xFFFFFFFF),
        snr_db=fields.number("snr_db"),
        max_abs_error=fields.number("max_abs_error"),
    )


def _payload(payload: Fields, shape: tuple[int, ...], quantizer: QuantizerRecord, blobs) -> PayloadRecord:
    kind = payload.text("type", ("video", "raw"))
    if kind == "raw" and payload.has("low_bits"):
        raise payload.error("low_bits", "raw symbols have no low bits apart")
    raw_blob = raw_offset = None
    if kind == "raw":
        raw_blob, raw_offset = _symbols_span(
            payload, blobs, math.prod(shape) * (1 if quantizer.bits <= 8 else 2), "symbols"
        )
    low_bits = None
    if payload.has("low_bits"):
        ref = payload.child("low_bits")
        bits = ref.integer("bits", minimum=1, maximum=min(MAX_LOW_BITS, quantizer.bits - 1))
        low_bits = LowBitsRef(bits, *_symbols_span(ref, blobs, packed_length(math.prod(shape), bits), "low bits"))
    return PayloadRecord(
        payload.text("codec"),
        payload.text("standard"),
        payload.flag("lossless"),
        payload.integer("qp", minimum=-(1 << 20), nullable=True),
        payload.text("preset", nullable=True, optional=True),
        kind,
        raw_blob,
        raw_offset or 0,
        low_bits,
    )


def _symbols_span(fields: Fields, blobs, needed: int, what: str) -> tuple[int, int]:
    """(blob, offset) of `needed` bytes in an uncompressed symbols blob."""
    blob = _blob_index(fields, "blob", blobs, "symbols")
    offset = fields.integer("offset")
    if blobs[blob].compression != "none" or offset + needed > blobs[blob].length:
        raise fields.error("offset", f"{needed} bytes of {what} do not fit in blob {blob}")
    return blob, offset


def _quantizer(fields: Fields, shape: tuple[int, ...], blobs) -> QuantizerRecord:
    kind = fields.text("kind", QUANTIZER_KINDS)
    granularity = fields.text("granularity", GRANULARITIES)
    fields.integer("axis", maximum=0)
    bits = fields.integer("bits", minimum=2, maximum=MAX_SYMBOL_BITS)
    max_level = fields.integer("max_level", minimum=1, maximum=(1 << (bits - 1)) - 1)
    expected = shape[0] if granularity == "per_channel" else 1
    scales = _scales(fields.child("scales"), blobs, expected, f"{granularity} over shape {list(shape)}")
    columns = None
    if fields.has("column_scales"):
        if len(shape) < 2:
            raise fields.error("column_scales", f"a tensor of shape {list(shape)} has no columns to scale")
        columns = _scales(fields.child("column_scales"), blobs, math.prod(shape[1:]), f"columns of shape {list(shape)}")
    return QuantizerRecord(
        granularity,
        bits,
        max_level,
        scales,
        fields.text("rounding", optional=True, nullable=True),
        kind,
        columns=columns,
    )


def _scales(fields: Fields, blobs, expected: int, what: str) -> ScalesRef:
    """float32 values in a quantizer blob, as many as `what` needs."""
    blob = _blob_index(fields, "blob", blobs, "quantizer")
    fields.text("dtype", ("float32",))
    count = fields.integer("count")
    if count != expected:
        raise fields.error("count", f"{count} scales, but {what} needs {expected}")
    scales = ScalesRef(blob, fields.integer("offset"), count)
    if blobs[blob].compression == "none" and scales.end > blobs[blob].length:
        raise fields.error("offset", f"scales end at byte {scales.end} of a {blobs[blob].length}-byte blob")
    return scales


def _check_regions(tensors: tuple[TensorRecord, ...], frames: tuple[FrameRecord, ...], source: str) -> None:
    """Regions lie inside their frame and matrix, tile the matrix exactly, and never overlap in a frame."""
    by_frame: dict[int, list[tuple[int, int, int, int, str]]] = {}
    for record in tensors:
        if not record.coded or record.payload.type == "raw":
            continue
        rows, cols = record.matrix
        area = 0
        for index, r in enumerate(record.regions):
            frame = frames[r.frame]
            where = f"tensors ({record.name[:60]!r}).regions[{index}]"
            if r.x + r.width > frame.width or r.y + r.height > frame.height:
                raise error(source, where, f"lies outside its {frame.width}x{frame.height} frame")
            if r.row + r.height > rows or r.col + r.width > cols:
                raise error(source, where, f"lies outside the {rows}x{cols} matrix")
            if frames[r.frame].codec != record.payload.codec:
                raise error(
                    source, where, f"frame {r.frame} is {frame.codec[:40]}, the tensor {record.payload.codec[:40]}"
                )
            area += r.width * r.height
            by_frame.setdefault(r.frame, []).append((r.x, r.y, r.width, r.height, record.name))
        if area != rows * cols:
            raise error(
                source,
                f"tensors ({record.name[:60]!r}).regions",
                f"cover {area} of the matrix's {rows * cols} elements",
            )
        _no_overlap(
            [(r.col, r.row, r.width, r.height, record.name) for r in record.regions],
            f"tensors ({record.name[:60]!r}).regions",
            source,
        )
    for frame, rectangles in by_frame.items():
        _no_overlap(rectangles, f"frames[{frame}]", source)


def _no_overlap(rectangles: list[tuple[int, int, int, int, str]], where: str, source: str) -> None:
    """Sweep over x, keeping the y-spans of the rectangles the sweep line crosses in order of y. Until an
    overlap is found those spans are disjoint, so a new rectangle need only be compared with its two
    neighbours; comparing it with every crossed rectangle took 14 s for a crafted file of 16384 one-pixel
    regions stacked in a column."""
    ending: list[tuple[int, int]] = []  # heap of (x where a crossed rectangle ends, its y)
    starts: list[int] = []  # y of the crossed rectangles, sorted
    spans: list[tuple[int, str]] = []  # (y end, name) of each, in the same order
    for x, y, width, height, name in sorted(rectangles):
        while ending and ending[0][0] <= x:
            index = bisect.bisect_left(starts, heapq.heappop(ending)[1])
            del starts[index], spans[index]
        index = bisect.bisect_right(starts, y)
        if index > 0 and spans[index - 1][0] > y:
            other = spans[index - 1][1]
        elif index < len(starts) and starts[index] < y + height:
            other = spans[index][1]
        else:
            starts.insert(index, y)
            spans.insert(index, (y + height, name))
            heapq.heappush(ending, (x + width, y))
            continue
        raise error(source, where, f"regions of {other[:60]!r} and {name[:60]!r} overlap")


def _check_aliases(tensors: tuple[TensorRecord, ...], source: str) -> None:
    """An alias repeats an earlier tensor of the same dtype and shape that is not an alias itself."""
    earlier: dict[str, TensorRecord] = {}
    for record in tensors:
        if record.storage == "alias":
            original = earlier.get(record.alias_of)
            if original is None or original.storage == "alias":
                raise error(
                    source,
                    f"tensors ({record.name[:60]!r}).alias_of",
                    f"{str(record.alias_of)[:60]!r} is not an earlier stored tensor",
                )
            if (original.dtype, original.shape) != (record.dtype, record.shape):
                raise error(
                    source,
                    f"tensors ({record.name[:60]!r}).alias_of",
                    f"{original.name[:60]!r} has another dtype or shape",
                )
        earlier[record.name] = record


def _check_uncoded(tensors: tuple[TensorRecord, ...], source: str) -> None:
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for record in tensors:
        if not record.coded and record.length:
            spans.setdefault(record.blob, []).append((record.offset, record.length, record.name))
    for blob, entries in spans.items():
        entries.sort()
        for (offset, length, name), (next_offset, _, other) in zip(entries, entries[1:]):
            if offset + length > next_offset:
                raise error(
                    source, f"tensors ({other[:60]!r}).uncoded.offset", f"overlaps {name[:60]!r} in blob {blob}"
                )
