"""The video streams inside a .vcwc file: what each one is (profile, level, hardware fit), and export.

`describe_streams` parses each frame's stream headers (vcwc.codecs.bitstream, no ffmpeg). `extract`
writes everything an on-device decoder needs to rebuild the model without vcwc: the raw .h264 / .hevc /
.obu streams, the scales, the tensors stored uncoded (biases, BatchNorm, corrected means) as a
safetensors file, and a JSON description: frame sizes, pixel format, codec, profile and level, and which
region of which tensor each frame holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import FormatError
from ..files import atomic_directory
from ..format.container import Container
from ..format.layout import pixel_offset
from ..format.low_bits import packed_length
from ..format.safetensors import SafetensorsWriter
from . import bitstream, levels

EXTENSIONS = {"h264": "h264", "hevc": "hevc", "obu": "obu"}
DESCRIPTION_FILE = "streams.json"
SCALES_FILE = "scales.f32"
UNCODED_FILE = "uncoded.safetensors"
RAW_FILE = "raw_symbols.i8"  # tensors whose video stream would have cost more than their raw int8 symbols
LOW_BITS_FILE = "low_bits.bin"  # the low bits of wide symbols, stored raw beside the streams


def describe_streams(archive: Container) -> list[dict]:
    """One entry per frame: its codec settings, parsed header fields and whether hardware decoders fit."""
    meta = archive.meta
    regions_by_frame: dict[int, list[dict]] = {index: [] for index in range(len(meta.frames))}
    for record in meta.tensors:
        for region in record.regions:
            regions_by_frame[region.frame].append(
                {"tensor": record.name, **{key: value for key, value in region.to_dict().items() if key != "frame"}}
            )
    streams = []
    for index, frame in enumerate(meta.frames):
        data = archive.raw_blob(frame.blob)
        entry = {
            "frame": index,
            "codec": frame.codec,
            "container": frame.container,
            "width": frame.width,
            "height": frame.height,
            "pixel_format": frame.pixel_format,
            "bytes": len(data),
            "lossless": frame.lossless,
            "qp": frame.qp,
        }
        try:
            info = bitstream.parse_stream(data, frame.container)
        except FormatError as exc:
            entry.update(header_error=str(exc), hardware_decoders={"fits": False, "note": f"unreadable: {exc}"})
        else:
            fits, note = levels.hardware_fit(info)
            entry.update(
                standard=info.standard,
                profile=info.profile,
                profile_idc=info.profile_idc,
                level=info.level,
                level_idc=info.level_idc,
                tier=info.tier,
                chroma_format=info.chroma_format,
                bit_depth=info.bit_depth,
                coded_width=info.width,
                coded_height=info.height,
                hardware_decoders={"fits": fits, "note": note},
            )
        entry["regions"] = regions_by_frame[index]
        streams.append(entry)
    return streams


def extract(archive: Container, directory: str | os.PathLike, force: bool = False) -> Path:
    """Write the streams, scales, uncoded tensors and streams.json into `directory`; return the JSON's path.

    The folder appears complete or not at all: it is filled beside its final name, then renamed.
    """
    directory = Path(directory)

    def fill(folder: Path) -> None:
        _write_contents(archive, folder)

    atomic_directory(directory, fill, force)
    return directory / DESCRIPTION_FILE


def _write_contents(archive: Container, folder: Path) -> None:
    meta = archive.meta
    streams = describe_streams(archive)
    width = max(4, len(str(len(streams))))
    for stream, frame in zip(streams, meta.frames):
        name = f"frame_{stream['frame']:0{width}d}.{EXTENSIONS[frame.container]}"
        (folder / name).write_bytes(archive.raw_blob(frame.blob))
        stream["file"] = name
    tensors, scale_blobs, raw_symbols, low_bits = [], set(), bytearray(), bytearray()
    for record in meta.tensors:
        if record.coded and record.payload.type == "raw":
            scales = record.quantizer.scales
            scale_blobs.add(scales.blob)
            data = archive.raw_blob(record.payload.blob)[
                record.payload.offset : record.payload.offset + record.elements
            ]
            tensors.append(
                {
                    "name": record.name,
                    "storage": "raw",
                    "shape": list(record.shape),
                    "dtype": record.dtype,
                    "granularity": record.quantizer.granularity,
                    "quantizer": record.quantizer.kind,
                    "symbols": {
                        "file": RAW_FILE,
                        "offset_bytes": len(raw_symbols),
                        "count": record.elements,
                        "dtype": "int8",
                    },
                    "scales": _scales_entry(scales),
                    "symbols_crc32": record.symbols_crc32,
                }
            )
            _add_column_scales(tensors[-1], record)
            raw_symbols += data
        elif record.coded:
            scales = record.quantizer.scales
            scale_blobs.add(scales.blob)
            bits = max(meta.frames[r.frame].bit_depth for r in record.regions)
            tensors.append(
                {
                    "name": record.name,
                    "storage": "video",
                    "shape": list(record.shape),
                    "dtype": record.dtype,
                    "arrangement": record.arrangement,
                    "matrix": list(record.matrix),
                    "granularity": record.quantizer.granularity,
                    "quantizer": record.quantizer.kind,
                    "symbol_offset": pixel_offset(bits),
                    "scales": _scales_entry(scales),
                    "symbols_crc32": record.symbols_crc32,
                }
            )
            _add_column_scales(tensors[-1], record)
            apart = record.payload.low_bits
            if apart is not None:
                length = packed_length(record.elements, apart.bits)
                tensors[-1]["low_bits"] = {
                    "file": LOW_BITS_FILE,
                    "offset_bytes": len(low_bits),
                    "bytes": length,
                    "bits": apart.bits,
                }
                low_bits += archive.raw_blob(apart.blob)[apart.offset : apart.offset + length]
        elif record.storage == "alias":
            tensors.append(
                {
                    "name": record.name,
                    "storage": "alias",
                    "alias_of": record.alias_of,
                    "shape": list(record.shape),
                    "dtype": record.dtype,
                }
            )
        else:
            stored = "float16" if record.encoding == "float16" else record.dtype
            tensors.append(
                {
                    "name": record.name,
                    "storage": "uncoded",
                    "shape": list(record.shape),
                    "dtype": record.dtype,
                    "file": UNCODED_FILE,
                    "stored_dtype": stored,
                }
            )
    if raw_symbols:
        (folder / RAW_FILE).write_bytes(bytes(raw_symbols))
    if low_bits:
        (folder / LOW_BITS_FILE).write_bytes(bytes(low_bits))
    if len(scale_blobs) > 1:
        raise FormatError(f"{archive.source}: scales are spread over several blobs; extract expects one")
    if scale_blobs:
        blob = scale_blobs.pop()
        (folder / SCALES_FILE).write_bytes(archive.blob(blob, meta.scale_sizes().get(blob)))
    uncoded = [record for record in meta.tensors if record.storage == "uncoded"]
    if uncoded:
        sizes = meta.uncoded_sizes()
        contents = {blob: archive.blob(blob, sizes[blob]) for blob in sizes}
        entries = [(r.name, "float16" if r.encoding == "float16" else r.dtype, r.shape) for r in uncoded]
        with SafetensorsWriter(folder / UNCODED_FILE, entries) as writer:
            for record in uncoded:
                writer.write(record.name, contents[record.blob][record.offset : record.offset + record.length])
    description = {
        "format": "vcwc-streams",
        "version": 3,
        "source": archive.source,
        "pixels": {
            "formats": {
                "yuv420p": "8-bit, symbol s stored as luma s + 128",
                "yuv420p10le": "10-bit little-endian, symbol s stored as luma s + 512",
            },
            "note": "the luma plane holds the weight symbols, the chroma planes a constant mid value. "
            "Decode without pixel-format conversion (a range conversion changes the values).",
        },
        "regions_note": "matrix[row:row+height, col:col+width] of the tensor sits at (x, y) of the frame",
        "weights_note": "weight = symbol * scale; scales are little-endian float32 in the scales file at "
        "offset_bytes: one per tensor (per_tensor) or one per index of the tensor's first dimension "
        "(per_channel). The matrix is the tensor reshaped to (shape[0], -1) for 'rows'; for "
        "'kernel_blocks' a (out, in, k, k) kernel is laid out as (out*k, in*k) blocks. Tensors with "
        "storage 'uncoded' are in the safetensors file as stored (stored_dtype; cast to dtype); a tensor with "
        "storage 'alias' is the tensor alias_of again (tied weights); one with storage 'raw' has its int8 symbols in "
        "the raw symbols file (row-major in the tensor's shape) instead of a video stream. A video tensor with "
        "'low_bits' has its symbols shifted right by bits in the frames: symbol = frame symbol * 2**bits + low, "
        "where low takes `bits` bits of the low bits file, element after element in row-major order of the "
        "tensor's shape, most significant bit first. A tensor whose quantizer is 'dependent' has weight = level * "
        "scale instead: along each row of the tensor reshaped to (shape[0], -1), a state starts at 0 and moves after "
        "each symbol k to ((0, 2), (2, 0), (1, 3), (3, 1))[state][k & 1]; in states 0 and 1 the level is 2k, in "
        "states 2 and 3 it is 2k - sign(k).",
        "streams": streams,
        "tensors": tensors,
    }
    (folder / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2))


def _scales_entry(scales) -> dict:
    return {"file": SCALES_FILE, "offset_bytes": scales.offset, "count": scales.count}


def _add_column_scales(entry: dict, record) -> None:
    columns = record.quantizer.columns
    if columns is not None:
        entry["column_scales"] = _scales_entry(columns)
