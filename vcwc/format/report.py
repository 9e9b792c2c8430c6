"""Where the bytes of a .vcwc file go: totals, bits per coded weight, and a per-tensor breakdown."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from .low_bits import packed_length
from .records import DTYPE_BYTES, Metadata


@dataclass
class TensorSize:
    name: str
    shape: list[int]
    dtype: str
    storage: str  # "video", "uncoded", or "alias" (a tied tensor, stored once under another name)
    codec: str | None
    qp: int | None
    granularity: str | None
    bytes: float  # a frame shared by several tensors is split in proportion to their areas
    bits_per_weight: float
    snr_db: float | str | None
    rounding: str | None = None


@dataclass
class SizeReport:
    file_bytes: int
    header_bytes: int  # 16-byte header + metadata (names, shapes, settings, regions, checksums)
    video_bytes: int  # coded weights: the video streams
    quantizer_bytes: int  # coded weights' side information: scales
    # coded weights' symbols stored raw: whole (where video would have cost more) or their low bits
    raw_symbol_bytes: int
    uncoded_bytes: int  # tensors stored as they came (biases, BatchNorm, buffers), zstd-compressed
    coded_weights: int
    uncoded_elements: int
    original_bytes: int  # the tensors at their original dtypes
    float32_bytes: int  # every tensor at 4 bytes per element
    tensors: list[TensorSize] = field(default_factory=list)

    @property
    def coded_bytes(self) -> int:
        return self.video_bytes + self.quantizer_bytes + self.raw_symbol_bytes

    @property
    def bits_per_weight(self) -> float:
        """Video streams (and raw symbols or low bits) plus scales, per coded weight (metadata reported separately)."""
        return 8.0 * self.coded_bytes / self.coded_weights if self.coded_weights else float("nan")

    @property
    def compression_ratio(self) -> float:
        """Original size over file size."""
        return self.original_bytes / self.file_bytes

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(
            coded_bytes=self.coded_bytes, bits_per_weight=self.bits_per_weight, compression_ratio=self.compression_ratio
        )
        return data


def size_report(meta: Metadata, file_bytes: int, header_bytes: int) -> SizeReport:
    blob_bytes: dict[str, int] = defaultdict(int)
    for entry in meta.blobs:
        blob_bytes[entry.kind] += entry.length
    # A frame's bytes are shared among its tensors in proportion to the pixels each covers.
    frame_area: dict[int, int] = defaultdict(int)
    for record in meta.tensors:
        for region in record.regions:
            frame_area[region.frame] += region.width * region.height
    tensors, coded_weights, uncoded_elements, original_bytes, float32_bytes = [], 0, 0, 0, 0
    for record in meta.tensors:
        elements = record.elements
        original_bytes += elements * DTYPE_BYTES[record.dtype]
        float32_bytes += elements * 4
        if record.coded:
            coded_weights += elements
            share = sum(
                meta.blobs[meta.frames[r.frame].blob].length * r.width * r.height / frame_area[r.frame]
                for r in record.regions
            )
            codec = record.payload.codec if record.payload.type == "video" else "raw int8"
            if record.payload.type == "raw":
                share += elements
            if record.payload.low_bits is not None:
                share += packed_length(elements, record.payload.low_bits.bits)
                codec += f" + {record.payload.low_bits.bits} raw low bits"
            share += sum(4 * scales.count for scales in record.quantizer.scale_refs)
            tensors.append(
                TensorSize(
                    record.name,
                    list(record.shape),
                    record.dtype,
                    "video",
                    codec,
                    record.payload.qp,
                    record.quantizer.granularity,
                    share,
                    8 * share / max(elements, 1),
                    record.snr_db,
                    record.quantizer.rounding or ("dependent" if record.quantizer.dependent else "nearest"),
                )
            )
        elif record.storage == "alias":
            tensors.append(
                TensorSize(record.name, list(record.shape), record.dtype, "alias", None, None, None, 0, 0.0, None)
            )
        else:
            uncoded_elements += elements
            tensors.append(
                TensorSize(
                    record.name,
                    list(record.shape),
                    record.dtype,
                    "uncoded",
                    None,
                    None,
                    None,
                    record.length,
                    8 * record.length / max(elements, 1),
                    "inf" if record.encoding == "exact" else None,
                )
            )
    return SizeReport(
        file_bytes=file_bytes,
        header_bytes=header_bytes,
        video_bytes=blob_bytes["video"],
        quantizer_bytes=blob_bytes["quantizer"],
        raw_symbol_bytes=blob_bytes["symbols"],
        uncoded_bytes=blob_bytes["uncoded"],
        coded_weights=coded_weights,
        uncoded_elements=uncoded_elements,
        original_bytes=original_bytes,
        float32_bytes=float32_bytes,
        tensors=tensors,
    )
