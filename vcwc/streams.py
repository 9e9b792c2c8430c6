"""The video streams inside a .vcwc file: what each one is (profile, level, hardware fit), and export.

`describe_streams` parses each frame's stream headers (vcwc.bitstream, no ffmpeg). `extract` writes the
raw .h264 / .hevc / .obu streams and a JSON description an on-device decoder can work from: frame size,
pixel format, codec, profile and level, and which region of which tensor each frame holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import bitstream
from .errors import FormatError, InputError
from .layout import PIXEL_OFFSET

EXTENSIONS = {"h264": "h264", "hevc": "hevc", "obu": "obu"}
DESCRIPTION_FILE = "streams.json"
SCALES_FILE = "scales.f32"


def describe_streams(compressed) -> list[dict]:
    """One entry per frame: its codec settings, parsed header fields and whether hardware decoders fit."""
    archive = compressed.container
    meta = archive.metadata
    regions_by_frame: dict[int, list[dict]] = {index: [] for index in range(len(meta["frames"]))}
    for entry in meta["tensors"]:
        for region in entry.get("regions", []):
            regions_by_frame[region["frame"]].append({"tensor": entry["name"], **{
                key: region[key] for key in ("x", "y", "width", "height", "row", "col")}})
    streams = []
    for index, frame in enumerate(meta["frames"]):
        data = archive.blob(frame["blob"])
        record = {"frame": index, "codec": frame["codec"], "container": frame["container"],
                  "width": frame["width"], "height": frame["height"], "bytes": len(data),
                  "lossless": frame["lossless"], "qp": frame["qp"]}
        try:
            info = bitstream.parse_stream(data, frame["container"])
        except FormatError as exc:
            record.update(header_error=str(exc), hardware_decoders={"fits": False, "note": f"unreadable: {exc}"})
        else:
            fits, note = bitstream.hardware_fit(info)
            record.update(standard=info.standard, profile=info.profile, profile_idc=info.profile_idc,
                          level=info.level, level_idc=info.level_idc, tier=info.tier,
                          chroma_format=info.chroma_format, bit_depth=info.bit_depth,
                          coded_width=info.width, coded_height=info.height,
                          hardware_decoders={"fits": fits, "note": note})
        record["regions"] = regions_by_frame[index]
        streams.append(record)
    return streams


def extract(compressed, directory: str | os.PathLike, force: bool = False) -> Path:
    """Write every frame's raw stream, the scales, and streams.json into `directory`; return the JSON's path."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not force:
        raise InputError(f"{str(directory)!r} exists and is not empty; pass --force to write into it")
    directory.mkdir(parents=True, exist_ok=True)
    archive = compressed.container
    meta = archive.metadata
    streams = describe_streams(compressed)
    width = max(4, len(str(len(streams))))
    for stream, frame in zip(streams, meta["frames"]):
        name = f"frame_{stream['frame']:0{width}d}.{EXTENSIONS[frame['container']]}"
        (directory / name).write_bytes(archive.blob(frame["blob"]))
        stream["file"] = name
    tensors = []
    scales_blob = None
    for entry in meta["tensors"]:
        if entry["storage"] != "video":
            continue
        scales = entry["quantizer"]["scales"]
        scales_blob = scales["blob"]
        tensors.append({"name": entry["name"], "shape": entry["shape"], "dtype": entry["dtype"],
                        "arrangement": entry["layout"]["arrangement"], "matrix": entry["layout"]["matrix"],
                        "granularity": entry["quantizer"]["granularity"],
                        "scales": {"file": SCALES_FILE, "offset_bytes": scales["offset"], "count": scales["count"]},
                        "symbols_crc32": entry["symbols_crc32"]})
    if scales_blob is not None:
        (directory / SCALES_FILE).write_bytes(archive.blob(scales_blob))
    description = {
        "format": "vcwc-streams", "version": 1, "source": archive.source,
        "pixels": {"format": "yuv420p", "symbol_offset": PIXEL_OFFSET,
                   "note": "each frame is 8-bit 4:2:0; the luma plane holds int8 weight symbols as symbol + 128, "
                           "the chroma planes are a constant 128. Decode without pixel-format conversion (a range "
                           "conversion changes the values)."},
        "regions_note": "matrix[row:row+height, col:col+width] of the tensor sits at (x, y) of the frame",
        "weights_note": "weight = symbol * scale; scales are little-endian float32 in the scales file at "
                        "offset_bytes: one per tensor (per_tensor) or one per index of the tensor's first dimension "
                        "(per_channel). The matrix is the tensor reshaped to (shape[0], -1) for 'rows'; for "
                        "'kernel_blocks' a (out, in, k, k) kernel is laid out as (out*k, in*k) blocks",
        "streams": streams, "tensors": tensors,
    }
    path = directory / DESCRIPTION_FILE
    path.write_text(json.dumps(description, indent=2))
    return path
