"""The metadata of a .vcwc file as typed records: what each field is, and how a writer spells it (`to_dict`).

`vcwc.format.schema` reads and checks them; docs/format.md describes them for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .layout import Region

# Element sizes of the dtypes a file may hold, by their names in the metadata.
DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
STREAM_FORMATS = ("h264", "hevc", "obu")
# Luma sample formats of coded frames: 8-bit symbols are stored as s + 128, 10-bit ones as s + 512.
PIXEL_FORMATS = {"yuv420p": 8, "yuv420p10le": 10}
BLOB_KINDS = ("video", "quantizer", "uncoded", "symbols")
COMPRESSIONS = ("none", "zstd")
UNCODED_ENCODINGS = ("exact", "float16")
GRANULARITIES = ("per_tensor", "per_channel")
# linear_symmetric: weight = symbol * scale; dependent: weight = level * scale, the level following each row's
# state machine (vcwc.quant.dependent)
LINEAR_SYMMETRIC, DEPENDENT = "linear_symmetric", "dependent"
QUANTIZER_KINDS = (LINEAR_SYMMETRIC, DEPENDENT)
# Decoders' limits: no encoder vcwc drives writes larger frames (vcwc itself stays at 4096).
MAX_FRAME_SIDE = 16384
MAX_DIMENSIONS = 16
MAX_SYMBOL_BITS = 16
# Largest product of a shape's dimensions (zeros counted as ones): numpy and torch compute sizes and strides
# in int64, which a larger shape overflows even when a zero dimension leaves the tensor empty. No real
# tensor comes near (2**48 float32 weights are a petabyte).
MAX_ELEMENTS = 1 << 48


@dataclass(frozen=True)
class BlobRecord:
    kind: str
    offset: int
    length: int
    crc32: int
    compression: str = "none"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "offset": self.offset,
            "length": self.length,
            "crc32": self.crc32,
            "compression": self.compression,
        }


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
        record = {
            "blob": self.blob,
            "codec": self.codec,
            "container": self.container,
            "width": self.width,
            "height": self.height,
            "lossless": self.lossless,
            "qp": self.qp,
            "options": dict(self.options),
        }
        if self.pixel_format != "yuv420p":
            record["pixel_format"] = self.pixel_format
        return record


@dataclass(frozen=True)
class ScalesRef:
    blob: int
    offset: int
    count: int
    dtype: str = "float32"

    @property
    def end(self) -> int:
        """The byte of the blob after the last scale (float32: 4 bytes each)."""
        return self.offset + 4 * self.count

    def to_dict(self) -> dict:
        return {"blob": self.blob, "offset": self.offset, "count": self.count, "dtype": self.dtype}


@dataclass(frozen=True)
class QuantizerRecord:
    granularity: str
    bits: int
    max_level: int
    scales: ScalesRef
    rounding: str | None = None  # "gptq" where the encoder chose levels by gptq; informative only
    kind: str = LINEAR_SYMMETRIC
    axis: int = 0
    # One factor per column of the weight matrix (shape[0], -1), multiplied into the weights last: steps
    # that differ by input feature. None: every column's factor is 1.
    columns: ScalesRef | None = None

    @property
    def scale_refs(self) -> tuple[ScalesRef, ...]:
        """Where this tensor's float32 values lie in the quantizer blob: its scales, then its column scales."""
        return (self.scales,) if self.columns is None else (self.scales, self.columns)

    def in_blob(self, blob: int) -> QuantizerRecord:
        """The record with its scales (and column scales) in quantizer blob `blob`."""
        columns = self.columns and replace(self.columns, blob=blob)
        return replace(self, scales=replace(self.scales, blob=blob), columns=columns)

    @property
    def dependent(self) -> bool:
        """The symbols are dependent quantization's: their levels follow each row's state machine."""
        return self.kind == DEPENDENT

    @staticmethod
    def kind_of(dependent: bool) -> str:
        return DEPENDENT if dependent else LINEAR_SYMMETRIC

    def to_dict(self) -> dict:
        record = {
            "kind": self.kind,
            "granularity": self.granularity,
            "axis": self.axis,
            "bits": self.bits,
            "max_level": self.max_level,
            "scales": self.scales.to_dict(),
        }
        if self.rounding is not None:
            record["rounding"] = self.rounding
        if self.columns is not None:
            record["column_scales"] = self.columns.to_dict()
        return record


@dataclass(frozen=True)
class LowBitsRef:
    """The low `bits` bits of every symbol of a video payload, packed (vcwc.format.low_bits) in a `symbols`
    blob from byte `offset`; the frames hold the symbols shifted right by `bits`."""

    bits: int
    blob: int
    offset: int

    def to_dict(self) -> dict:
        return {"bits": self.bits, "blob": self.blob, "offset": self.offset}


@dataclass(frozen=True)
class PayloadRecord:
    """How a coded tensor's symbols are stored: `video` (in frames, at its regions, with their low bits
    raw where `low_bits` says so) or `raw` (int8 bytes in a `symbols` blob, where the video stream would
    cost more than the raw symbols)."""

    codec: str
    standard: str
    lossless: bool
    qp: int | None
    preset: str | None
    type: str = "video"
    blob: int | None = None  # raw payloads: the symbols blob and the byte offset in it
    offset: int = 0
    low_bits: LowBitsRef | None = None

    def to_dict(self) -> dict:
        record = {
            "type": self.type,
            "codec": self.codec,
            "standard": self.standard,
            "lossless": self.lossless,
            "qp": self.qp,
            "preset": self.preset,
        }
        if self.type == "raw":
            record.update(blob=self.blob, offset=self.offset)
        if self.low_bits is not None:
            record["low_bits"] = self.low_bits.to_dict()
        return record


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
        record: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "storage": self.storage,
        }
        if self.coded:
            record.update(
                quantizer=self.quantizer.to_dict(),
                layout={"arrangement": self.arrangement, "matrix": list(self.matrix), "permutation": None},
                payload=self.payload.to_dict(),
                regions=[r.to_dict() for r in self.regions],
                symbols_crc32=self.symbols_crc32,
                snr_db=self.snr_db,
                max_abs_error=self.max_abs_error,
            )
        elif self.storage == "alias":
            record["alias_of"] = self.alias_of
        else:
            record["uncoded"] = {
                "blob": self.blob,
                "offset": self.offset,
                "length": self.length,
                "encoding": self.encoding,
            }
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
        record = {
            "prefix": self.prefix,
            "container_key": self.container_key,
            "extras": self.extras,
            "dropped": list(self.dropped),
        }
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
            if record.storage == "uncoded":  # an alias has no blob of its own
                sizes[record.blob] = max(sizes.get(record.blob, 0), record.offset + record.length)
        return sizes

    def scale_sizes(self) -> dict[int, int]:
        """Bytes each quantizer blob must decompress to: the end of the last scales in it."""
        sizes: dict[int, int] = {}
        for record in self.tensors:
            if record.coded:
                for scales in record.quantizer.scale_refs:
                    sizes[scales.blob] = max(sizes.get(scales.blob, 0), scales.end)
        return sizes
