"""Where the bytes of a .vcwc file go: totals, bits per coded weight, and a per-tensor breakdown."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
                 "int16": 2, "int8": 1, "uint8": 1, "bool": 1}


@dataclass
class TensorSize:
    name: str
    shape: list[int]
    dtype: str
    storage: str  # "video" or "uncoded"
    codec: str | None
    qp: int | None
    granularity: str | None
    bytes: float  # a frame shared by several tensors is split in proportion to their areas
    bits_per_weight: float
    snr_db: float | str | None


@dataclass
class SizeReport:
    file_bytes: int
    header_bytes: int  # 16-byte header + metadata (names, shapes, settings, regions, checksums)
    video_bytes: int  # coded weights: the video streams
    quantizer_bytes: int  # coded weights' side information: scales
    uncoded_bytes: int  # tensors stored as they came (biases, BatchNorm, buffers), zstd-compressed
    coded_weights: int
    uncoded_elements: int
    original_bytes: int  # the tensors at their original dtypes
    float32_bytes: int  # every tensor at 4 bytes per element
    tensors: list[TensorSize] = field(default_factory=list)

    @property
    def coded_bytes(self) -> int:
        return self.video_bytes + self.quantizer_bytes

    @property
    def bits_per_weight(self) -> float:
        """Video streams plus scales, per coded weight (metadata reported separately)."""
        return 8.0 * self.coded_bytes / self.coded_weights if self.coded_weights else float("nan")

    @property
    def compression_ratio(self) -> float:
        """Original size over file size."""
        return self.original_bytes / self.file_bytes

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(coded_bytes=self.coded_bytes, bits_per_weight=self.bits_per_weight,
                    compression_ratio=self.compression_ratio)
        return data


def size_report(compressed) -> SizeReport:
    archive = compressed.container
    meta = archive.metadata
    blob_bytes = defaultdict(int)
    for entry in archive.blob_table:
        blob_bytes[entry["kind"]] += entry["length"]
    # A frame's bytes are shared among its tensors in proportion to the pixels each covers.
    frame_area = defaultdict(int)
    for entry in meta["tensors"]:
        for region in entry.get("regions", []):
            frame_area[region["frame"]] += region["width"] * region["height"]
    tensors, coded_weights, uncoded_elements, original_bytes, float32_bytes = [], 0, 0, 0, 0
    for entry in meta["tensors"]:
        elements = int(np.prod(entry["shape"], dtype=np.int64))
        original_bytes += elements * ELEMENT_BYTES[entry["dtype"]]
        float32_bytes += elements * 4
        if entry["storage"] == "video":
            coded_weights += elements
            share = sum(archive.blob_table[meta["frames"][r["frame"]]["blob"]]["length"] * r["width"] * r["height"]
                        / frame_area[r["frame"]] for r in entry["regions"])
            share += 4 * entry["quantizer"]["scales"]["count"]
            payload = entry["payload"]
            tensors.append(TensorSize(entry["name"], entry["shape"], entry["dtype"], "video", payload["codec"],
                                      payload["qp"], entry["quantizer"]["granularity"], share,
                                      8 * share / max(elements, 1), entry["snr_db"]))
        else:
            uncoded_elements += elements
            length = entry["uncoded"]["length"]
            tensors.append(TensorSize(entry["name"], entry["shape"], entry["dtype"], "uncoded", None, None, None,
                                      length, 8 * length / max(elements, 1),
                                      "inf" if entry["uncoded"]["encoding"] == "exact" else None))
    return SizeReport(
        file_bytes=len(compressed.data), header_bytes=archive.header_bytes, video_bytes=blob_bytes["video"],
        quantizer_bytes=blob_bytes["quantizer"], uncoded_bytes=blob_bytes["uncoded"], coded_weights=coded_weights,
        uncoded_elements=uncoded_elements, original_bytes=original_bytes, float32_bytes=float32_bytes,
        tensors=tensors)
