"""The metadata of a .vcwc file as typed records, checked field by field before anything is decoded.

`parse(document, payload_bytes, source)` turns the JSON object into a `Metadata` record or raises a
`FormatError` that names the field at fault. Every offset and length is checked against the file, every
shape against its regions and element count, every name against the known dtypes, stream formats and
encodings, and no two regions overlap; nothing is allocated from a declared size on the way. Codec names
are free-form (`--encoder` writes `custom:NAME`). Writers build the same records and call `to_dict`, so
each field is spelled here once. docs/format.md describes the fields for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError
from .layout import ARRANGEMENTS, Region, matrix_shape

# Element sizes of the dtypes a file may hold, by their names in the metadata.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
               "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
STREAM_FORMATS = ("h264", "hevc", "obu")
# Luma sample formats of coded frames: 8-bit symbols are stored as s + 128, 10-bit ones as s + 512.
PIXEL_FORMATS = {"yuv420p": 8, "yuv420p10le": 10}
BLOB_KINDS = ("video", "quantizer", "uncoded")
COMPRESSIONS = ("none", "zstd")
UNCODED_ENCODINGS = ("exact", "float16")
GRANULARITIES = ("per_tensor", "per_channel")
# Decoders' limits: no encoder vcwc drives writes larger frames (vcwc itself stays at 4096).
MAX_FRAME_SIDE = 16384
MAX_DIMENSIONS = 16
MAX_SYMBOL_BITS = 16


@dataclass(frozen=True)
class BlobRecord:
    kind: str
    offset: int
    length: int
    crc32: int
    compression: str = "none"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "offset": self.offset, "length": self.length, "crc32": self.crc32,
                "compression": self.compression}


@dataclass(frozen=True)
class FrameRecord:
    blob: int
    codec: str
    container: str
    width: int
    height: int
    lossless: bool
    qp: int | None
    options: dict[str, str]
    pixel_format: str = "yuv420p"

    @property
    def bit_depth(self) -> int:
        return PIXEL_FORMATS[self.pixel_format]

    def to_dict(self) -> dict:
        record = {"blob": self.blob, "codec": self.codec, "container": self.container, "width": self.width,
                  "height": self.height, "lossless": self.lossless, "qp": self.qp, "options": dict(self.options)}
        if self.pixel_format != "yuv420p":
            record["pixel_format"] = self.pixel_format
        return record


@dataclass(frozen=True)
class ScalesRef:
    blob: int
    offset: int
    count: int
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"blob": self.blob, "offset": self.offset, "count": self.count, "dtype": self.dtype}


@dataclass(frozen=True)
class QuantizerRecord:
    granularity: str
    bits: int
    max_level: int
    scales: ScalesRef
    rounding: str | None = None  # "gptq" where the encoder chose levels by gptq; informative only
    kind: str = "linear_symmetric"
    axis: int = 0

    def to_dict(self) -> dict:
        record = {"kind": self.kind, "granularity": self.granularity, "axis": self.axis, "bits": self.bits,
                  "max_level": self.max_level, "scales": self.scales.to_dict()}
        if self.rounding is not None:
            record["rounding"] = self.rounding
        return record


@dataclass(frozen=True)
class PayloadRecord:
    codec: str
    standard: str
    lossless: bool
    qp: int | None
    preset: str | None
    type: str = "video"

    def to_dict(self) -> dict:
        return {"type": self.type, "codec": self.codec, "standard": self.standard, "lossless": self.lossless,
                "qp": self.qp, "preset": self.preset}


@dataclass(frozen=True)
class TensorRecord:
    """One tensor, coded (`storage == "video"`) or stored as it came (`"uncoded"`)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    storage: str
    # video tensors
    quantizer: QuantizerRecord | None = None
    arrangement: str = "rows"
    matrix: tuple[int, int] | None = None
    payload: PayloadRecord | None = None
    regions: tuple[Region, ...] = ()
    symbols_crc32: int | None = None
    snr_db: float | str | None = None
    max_abs_error: float | str | None = None
    # uncoded tensors
    blob: int | None = None
    offset: int = 0
    length: int = 0
    encoding: str = "exact"
    # alias tensors: tied weights, stored once
    alias_of: str | None = None

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def coded(self) -> bool:
        return self.storage == "video"

    def to_dict(self) -> dict:
        record: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                                  "storage": self.storage}
        if self.coded:
            record.update(quantizer=self.quantizer.to_dict(),
                          layout={"arrangement": self.arrangement, "matrix": list(self.matrix), "permutation": None},
                          payload=self.payload.to_dict(), regions=[r.to_dict() for r in self.regions],
                          symbols_crc32=self.symbols_crc32, snr_db=self.snr_db, max_abs_error=self.max_abs_error)
        elif self.storage == "alias":
            record["alias_of"] = self.alias_of
        else:
            record["uncoded"] = {"blob": self.blob, "offset": self.offset, "length": self.length,
                                 "encoding": self.encoding}
        return record


@dataclass(frozen=True)
class SourceRecord:
    """What surrounded the state dict in the input file, so nothing is silently dropped."""

    prefix: str = ""
    container_key: str | None = None
    extras: dict = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    shards: dict[str, str] | None = None  # tensor name -> shard file of a sharded checkpoint
    shard_metadata: dict | None = None  # the "metadata" object of its model.safetensors.index.json

    def to_dict(self) -> dict:
        record = {"prefix": self.prefix, "container_key": self.container_key, "extras": self.extras,
                  "dropped": list(self.dropped)}
        if self.shards is not None:
            record["shards"] = dict(self.shards)
            record["shard_metadata"] = self.shard_metadata or {}
        return record


@dataclass(frozen=True)
class Metadata:
    tensors: tuple[TensorRecord, ...]
    frames: tuple[FrameRecord, ...]
    blobs: tuple[BlobRecord, ...]
    source: SourceRecord
    vcwc_version: str | None = None
    ffmpeg_version: str | None = None
    recipe: dict | None = None  # the resolved recipe the file was written with
    methods: dict | None = None  # which data-free methods served which tensors
    bias_correction: dict | None = None

    def tensor(self, name: str) -> TensorRecord:
        for record in self.tensors:
            if record.name == name:
                return record
        raise KeyError(name)

    def uncoded_sizes(self) -> dict[int, int]:
        """Bytes each uncoded blob must decompress to: the end of the last tensor in it."""
        sizes: dict[int, int] = {}
        for record in self.tensors:
            if not record.coded:
                sizes[record.blob] = max(sizes.get(record.blob, 0), record.offset + record.length)
        return sizes


# Reading -------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, naming `path.key` in every error."""

    def __init__(self, value: Any, path: str, source: str):
        if not isinstance(value, dict):
            raise _error(source, path, f"expected an object, got {_kind(value)}")
        self.value, self.path, self.source = value, path, source

    def error(self, key: str, problem: str) -> FormatError:
        return _error(self.source, f"{self.path}.{key}" if self.path else key, problem)

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, optional: bool = False, default: Any = None) -> Any:
        if key not in self.value:
            if optional:
                return default
            raise self.error(key, "missing")
        return self.value[key]

    def integer(self, key: str, minimum: int = 0, maximum: int | None = None, optional: bool = False,
                nullable: bool = False, default: int | None = None) -> int | None:
        value = self.raw(key, optional, default)
        if value is None and (nullable or optional):
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected a whole number, got {_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(key, f"{value} is outside {bounds}")
        return value

    def text(self, key: str, choices: tuple[str, ...] | None = None, optional: bool = False,
             nullable: bool = False, default: str | None = None) -> str | None:
        value = self.raw(key, optional, default)
        if value is None and (nullable or optional):
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value[:40]!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def number(self, key: str) -> float | str | None:
        """A float, or "inf"/"-inf"/"nan" (JSON has no such numbers), or null; absent means null."""
        value = self.raw(key, optional=True)
        if value is None or value in ("inf", "-inf", "nan"):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        return float(value)

    def items(self, key: str, optional: bool = False) -> list:
        value = self.raw(key, optional, [])
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_kind(value)}")
        return value

    def mapping(self, key: str, optional: bool = False, nullable: bool = False) -> dict | None:
        value = self.raw(key, optional)
        if value is None and (optional or nullable):
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"expected an object, got {_kind(value)}")
        return value

    def child(self, key: str) -> _Fields:
        return _Fields(self.raw(key), f"{self.path}.{key}" if self.path else key, self.source)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "list")


def _error(source: str, path: str, problem: str) -> FormatError:
    return FormatError(f"{source}: metadata field {path}: {problem}")


def parse(document: Any, payload_bytes: int, source: str = "<bytes>") -> Metadata:
    """Typed, checked metadata of a file whose payload area holds `payload_bytes` bytes."""
    top = _Fields(document, "", source)
    if top.text("format") != "vcwc":
        raise top.error("format", "expected 'vcwc'")
    blobs = tuple(_blob(_Fields(entry, f"blobs[{i}]", source), payload_bytes)
                  for i, entry in enumerate(top.items("blobs")))
    _check_blob_overlaps(blobs, source)
    frames = tuple(_frame(_Fields(entry, f"frames[{i}]", source), blobs)
                   for i, entry in enumerate(top.items("frames", optional=True)))
    used = [frame.blob for frame in frames]
    if len(set(used)) != len(used):
        raise _error(source, "frames", "two frames share one blob")
    tensors = tuple(_tensor(_Fields(entry, f"tensors[{i}]", source), blobs, frames)
                    for i, entry in enumerate(top.items("tensors")))
    names = [record.name for record in tensors]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise _error(source, "tensors", f"the name {duplicate[:80]!r} appears twice")
    _check_regions(tensors, frames, source)
    _check_uncoded(tensors, source)
    return Metadata(
        tensors=tensors, frames=frames, blobs=blobs,
        source=_source(top.child("source"), names) if top.has("source") else SourceRecord(),
        vcwc_version=top.text("vcwc_version", optional=True, nullable=True),
        ffmpeg_version=top.text("ffmpeg_version", optional=True, nullable=True),
        recipe=top.mapping("recipe", optional=True, nullable=True),
        methods=top.mapping("methods", optional=True, nullable=True),
        bias_correction=_bias_correction(top, names))


def _blob(fields: _Fields, payload_bytes: int) -> BlobRecord:
    offset = fields.integer("offset", maximum=payload_bytes)
    length = fields.integer("length", maximum=payload_bytes - offset)
    return BlobRecord(fields.text("kind", BLOB_KINDS), offset, length, fields.integer("crc32", maximum=0xFFFFFFFF),
                      fields.text("compression", COMPRESSIONS))


def _check_blob_overlaps(blobs: tuple[BlobRecord, ...], source: str) -> None:
    order = sorted(range(len(blobs)), key=lambda i: blobs[i].offset)
    for before, after in zip(order, order[1:]):
        if blobs[before].offset + blobs[before].length > blobs[after].offset:
            raise _error(source, f"blobs[{after}].offset", f"blob {after} overlaps blob {before}")


def _blob_index(fields: _Fields, key: str, blobs: tuple[BlobRecord, ...], kind: str) -> int:
    index = fields.integer(key, maximum=len(blobs) - 1) if blobs else None
    if index is None:
        raise fields.error(key, "the file has no blobs")
    if blobs[index].kind != kind:
        raise fields.error(key, f"blob {index} is a {blobs[index].kind} blob, not {kind}")
    return index


def _frame(fields: _Fields, blobs: tuple[BlobRecord, ...]) -> FrameRecord:
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
    return FrameRecord(blob, fields.text("codec"), fields.text("container", STREAM_FORMATS), width, height,
                       fields.flag("lossless"), fields.integer("qp", minimum=-(1 << 20), nullable=True),
                       options, fields.text("pixel_format", tuple(PIXEL_FORMATS), optional=True, default="yuv420p"))


def _shape(fields: _Fields) -> tuple[int, ...]:
    values = fields.items("shape")
    if len(values) > MAX_DIMENSIONS:
        raise fields.error("shape", f"{len(values)} dimensions, at most {MAX_DIMENSIONS}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fields.error("shape", "expected non-negative whole numbers")
    return tuple(values)


def _tensor(fields: _Fields, blobs, frames) -> TensorRecord:
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
        return TensorRecord(name, dtype, shape, storage, blob=blob, offset=ref.integer("offset"),
                            length=length, encoding=encoding)
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
    if list(matrix) != list(matrix_shape(shape, arrangement)):
        raise layout.error("matrix", f"{list(matrix)[:4]} does not fit shape {list(shape)} laid out as "
                                     f"{arrangement} ({list(matrix_shape(shape, arrangement))})")
    payload = fields.child("payload")
    payload_record = PayloadRecord(payload.text("codec"), payload.text("standard"), payload.flag("lossless"),
                                   payload.integer("qp", minimum=-(1 << 20), nullable=True),
                                   payload.text("preset", nullable=True, optional=True),
                                   payload.text("type", ("video",)))
    regions = []
    for index, entry in enumerate(fields.items("regions")):
        region = _Fields(entry, f"{fields.path}.regions[{index}]", fields.source)
        regions.append(Region(*(region.integer(key, minimum=1 if key in ("width", "height") else 0,
                                               maximum=len(frames) - 1 if key == "frame" else None)
                                for key in ("frame", "x", "y", "row", "col", "width", "height"))))
    if not regions:
        raise fields.error("regions", "a coded tensor needs at least one region")
    return TensorRecord(name, dtype, shape, storage, quantizer=quantizer, arrangement=arrangement,
                        matrix=matrix, payload=payload_record, regions=tuple(regions),
                        symbols_crc32=fields.integer("symbols_crc32", maximum=0xFFFFFFFF),
                        snr_db=fields.number("snr_db"), max_abs_error=fields.number("max_abs_error"))


def _quantizer(fields: _Fields, shape: tuple[int, ...], blobs) -> QuantizerRecord:
    fields.text("kind", ("linear_symmetric",))
    granularity = fields.text("granularity", GRANULARITIES)
    fields.integer("axis", maximum=0)
    bits = fields.integer("bits", minimum=2, maximum=MAX_SYMBOL_BITS)
    max_level = fields.integer("max_level", minimum=1, maximum=(1 << (bits - 1)) - 1)
    scales = fields.child("scales")
    blob = _blob_index(scales, "blob", blobs, "quantizer")
    scales.text("dtype", ("float32",))
    expected = shape[0] if granularity == "per_channel" else 1
    count = scales.integer("count")
    if count != expected:
        raise scales.error("count", f"{count} scales, but {granularity} over shape {list(shape)} needs {expected}")
    offset = scales.integer("offset")
    if blobs[blob].compression == "none" and offset + 4 * count > blobs[blob].length:
        raise scales.error("offset", f"scales end at byte {offset + 4 * count} of a {blobs[blob].length}-byte blob")
    return QuantizerRecord(granularity, bits, max_level, ScalesRef(blob, offset, count),
                           fields.text("rounding", optional=True, nullable=True))


def _check_regions(tensors: tuple[TensorRecord, ...], frames: tuple[FrameRecord, ...], source: str) -> None:
    """Regions lie inside their frame and matrix, tile the matrix exactly, and never overlap in a frame."""
    by_frame: dict[int, list[tuple[int, int, int, int, str]]] = {}
    for record in tensors:
        if not record.coded:
            continue
        rows, cols = record.matrix
        area = 0
        for index, r in enumerate(record.regions):
            frame = frames[r.frame]
            where = f"tensors ({record.name[:60]!r}).regions[{index}]"
            if r.x + r.width > frame.width or r.y + r.height > frame.height:
                raise _error(source, where, f"lies outside its {frame.width}x{frame.height} frame")
            if r.row + r.height > rows or r.col + r.width > cols:
                raise _error(source, where, f"lies outside the {rows}x{cols} matrix")
            if frames[r.frame].codec != record.payload.codec:
                raise _error(source, where, f"frame {r.frame} is {frame.codec[:40]}, the tensor {record.payload.codec[:40]}")
            area += r.width * r.height
            by_frame.setdefault(r.frame, []).append((r.x, r.y, r.width, r.height, record.name))
        if area != rows * cols:
            raise _error(source, f"tensors ({record.name[:60]!r}).regions",
                         f"cover {area} of the matrix's {rows * cols} elements")
        _no_overlap([(r.col, r.row, r.width, r.height, record.name) for r in record.regions],
                    f"tensors ({record.name[:60]!r}).regions", source)
    for frame, rectangles in by_frame.items():
        _no_overlap(rectangles, f"frames[{frame}]", source)


def _no_overlap(rectangles: list[tuple[int, int, int, int, str]], where: str, source: str) -> None:
    """Sweep over x: each rectangle is compared only with those whose x-span it reaches."""
    rectangles = sorted(rectangles)
    active: list[tuple[int, int, int, int, str]] = []
    for rectangle in rectangles:
        x, y, width, height, name = rectangle
        active = [other for other in active if other[0] + other[2] > x]
        for other in active:
            if other[1] < y + height and y < other[1] + other[3]:
                raise _error(source, where, f"regions of {other[4][:60]!r} and {name[:60]!r} overlap")
        active.append(rectangle)


def _check_aliases(tensors: tuple[TensorRecord, ...], source: str) -> None:
    """An alias repeats an earlier tensor of the same dtype and shape that is not an alias itself."""
    earlier: dict[str, TensorRecord] = {}
    for record in tensors:
        if record.storage == "alias":
            original = earlier.get(record.alias_of)
            if original is None or original.storage == "alias":
                raise _error(source, f"tensors ({record.name[:60]!r}).alias_of",
                             f"{str(record.alias_of)[:60]!r} is not an earlier stored tensor")
            if (original.dtype, original.shape) != (record.dtype, record.shape):
                raise _error(source, f"tensors ({record.name[:60]!r}).alias_of",
                             f"{original.name[:60]!r} has another dtype or shape")
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
                raise _error(source, f"tensors ({other[:60]!r}).uncoded.offset",
                             f"overlaps {name[:60]!r} in blob {blob}")


def _source(fields: _Fields, names: list[str]) -> SourceRecord:
    dropped = fields.items("dropped")
    if not all(isinstance(item, str) for item in dropped):
        raise fields.error("dropped", "expected a list of strings")
    shards = fields.mapping("shards", optional=True, nullable=True)
    if shards is not None:
        known = set(names)
        for name, shard in shards.items():
            if name not in known or not isinstance(shard, str) or not _plain_file_name(shard):
                raise fields.error("shards", f"entry {name[:60]!r}: {str(shard)[:60]!r} is not a shard file name "
                                             "of a tensor in the file")
    return SourceRecord(fields.text("prefix"), fields.text("container_key", nullable=True),
                        fields.mapping("extras"), tuple(dropped), shards,
                        fields.mapping("shard_metadata", optional=True, nullable=True))


def _plain_file_name(name: str) -> bool:
    """A file name that stays inside the output folder: no separators, not . or .., no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") and len(name) < 256


def _bias_correction(top: _Fields, names: list[str]) -> dict | None:
    section = top.mapping("bias_correction", optional=True, nullable=True)
    if section is None:
        return None
    fields = top.child("bias_correction")
    for key in ("corrected", "uncorrectable"):
        if not all(isinstance(item, str) for item in fields.items(key, optional=True)):
            raise fields.error(key, "expected a list of tensor names")
    return section
