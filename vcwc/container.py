"""The .vcwc file: a 16-byte header, JSON metadata, then the payload blobs.

    offset  size  field
    0       4     magic b"VCWC"
    4       2     format version, uint16 little-endian
    6       2     flags, uint16 LE (bit 0: metadata is zstd-compressed)
    8       4     metadata length in bytes, uint32 LE
    12      4     CRC-32 of the metadata bytes as stored, uint32 LE
    16      n     metadata: UTF-8 JSON (zstd-compressed when flag bit 0 is set)
    16+n    ...   payload area: blobs back to back

The metadata lists every blob with its offset (from the start of the payload area), length and
CRC-32, so a reader can fetch and check one blob without touching the others. Nothing in the file
is executable: no pickle.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import zstandard

from .errors import FormatError

MAGIC = b"VCWC"
FORMAT_VERSION = 1
FLAG_METADATA_ZSTD = 1
HEADER = struct.Struct("<4sHHII")
METADATA_ZSTD_LEVEL = 19


@dataclass(frozen=True)
class Blob:
    kind: str  # "video", "quantizer", "uncoded", ...
    data: bytes
    compression: str = "none"  # how `data` was made from its content: "none" or "zstd"


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def write(metadata: dict, blobs: list[Blob], compress_metadata: bool = True) -> bytes:
    """The file's bytes. `metadata` must not hold a "blobs" key: the blob table is added here."""
    table, offset = [], 0
    for blob in blobs:
        table.append({"kind": blob.kind, "offset": offset, "length": len(blob.data),
                      "crc32": crc32(blob.data), "compression": blob.compression})
        offset += len(blob.data)
    document = json.dumps({**metadata, "blobs": table}, separators=(",", ":"), sort_keys=True,
                          allow_nan=False).encode("utf-8")
    flags = 0
    if compress_metadata:
        document = zstandard.ZstdCompressor(level=METADATA_ZSTD_LEVEL).compress(document)
        flags |= FLAG_METADATA_ZSTD
    header = HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(document), crc32(document))
    return b"".join([header, document, *(blob.data for blob in blobs)])


class Container:
    """A parsed file: metadata now, blobs checked one by one when asked for."""

    def __init__(self, data: bytes, source: str = "<bytes>"):
        self.source = source
        if len(data) < HEADER.size:
            raise FormatError(f"{source}: {len(data)} bytes is too short to be a .vcwc file")
        magic, version, flags, length, checksum = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FormatError(f"{source}: not a .vcwc file (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise FormatError(f"{source}: format version {version} is not supported (this vcwc reads {FORMAT_VERSION})")
        document = data[HEADER.size:HEADER.size + length]
        if len(document) != length or crc32(document) != checksum:
            raise FormatError(f"{source}: metadata is truncated or corrupted (checksum mismatch)")
        try:
            if flags & FLAG_METADATA_ZSTD:
                document = zstandard.ZstdDecompressor().decompress(document)
            self.metadata = json.loads(document)
        except (zstandard.ZstdError, ValueError) as exc:
            raise FormatError(f"{source}: metadata cannot be read ({exc})") from None
        self.version = version
        self.header_bytes = HEADER.size + length
        self._payload = memoryview(data)[self.header_bytes:]
        table = self.metadata.get("blobs", [])
        end = max((entry["offset"] + entry["length"] for entry in table), default=0)
        if end > len(self._payload):
            raise FormatError(f"{source}: file is truncated ({len(self._payload)} payload bytes, expected {end})")

    @property
    def blob_table(self) -> list[dict]:
        return self.metadata["blobs"]

    def blob(self, index: int) -> bytes:
        entry = self.blob_table[index]
        data = bytes(self._payload[entry["offset"]:entry["offset"] + entry["length"]])
        if crc32(data) != entry["crc32"]:
            raise FormatError(f"{self.source}: blob {index} ({entry['kind']}) is corrupted (checksum mismatch)")
        if entry["compression"] == "zstd":
            return zstandard.ZstdDecompressor().decompress(data)
        return data
