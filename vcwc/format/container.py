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
CRC-32, so a reader fetches and checks one blob without touching the others; a file on disk is read
blob by blob, never whole. Nothing in the file is executable: no pickle. The metadata's fields are
checked by `vcwc.format.schema` before anything is decoded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..errors import FormatError, InputError
from ..files import atomic_write
from . import schema

MAGIC = b"VCWC"
# Version 2 added payloads with low bits apart, 3 dependent quantization, 4 column scales; a file is written
# with the oldest version that reads it.
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
FLAG_METADATA_ZSTD = 1
KNOWN_FLAGS = FLAG_METADATA_ZSTD
HEADER = struct.Struct("<4sHHII")
METADATA_ZSTD_LEVEL = 19
# Metadata larger than this once decompressed is refused: a billion-weight model needs a few MB, and
# checking a crafted 64 MB document stays within seconds.
MAX_METADATA_BYTES = 64 << 20
COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class Blob:
    kind: str  # "video", "quantizer", "uncoded", ...
    data: bytes
    compression: str = "none"  # how `data` was made from its content: "none" or "zstd"


def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _document(metadata: dict, table: list[dict], compress_metadata: bool) -> tuple[bytes, int]:
    document = json.dumps({**metadata, "blobs": table}, separators=(",", ":"), sort_keys=True, allow_nan=False).encode(
        "utf-8"
    )
    flags = 0
    if compress_metadata:
        document = zstandard.ZstdCompressor(level=METADATA_ZSTD_LEVEL).compress(document)
        flags |= FLAG_METADATA_ZSTD
    return document, flags


def _header(document: bytes, flags: int, version: int) -> bytes:
    return HEADER.pack(MAGIC, version, flags, len(document), crc32(document))


def version_for(metadata: dict) -> int:
    """The oldest format version that reads `metadata`: 4 once a tensor has column scales, 3 once a tensor
    is dependently quantized, 2 once a payload keeps its low bits apart (a version 1 reader would ignore
    them and fail the symbols' checksum), else 1."""
    tensors = metadata.get("tensors") if isinstance(metadata, dict) else None
    tensors = [t for t in tensors if isinstance(t, dict)] if isinstance(tensors, list) else []

    def has(part: str, key: str, value=None) -> bool:
        return any(
            isinstance(t.get(part), dict) and key in t[part] and (value is None or t[part][key] == value)
            for t in tensors
        )

    if has("quantizer", "column_scales"):
        return 4
    return 3 if has("quantizer", "kind", "dependent") else 2 if has("payload", "low_bits") else 1


def write(metadata: dict, blobs: list[Blob], compress_metadata: bool = True) -> bytes:
    """The file's bytes. `metadata` must not hold a "blobs" key: the blob table is added here."""
    writer = ContainerWriter()
    for blob in blobs:
        writer.add(blob.kind, blob.data, blob.compression)
    return writer.finish(metadata, compress_metadata=compress_metadata)


def with_metadata(data: bytes, metadata: dict, compress_metadata: bool = True) -> bytes:
    """The file `data` with its metadata replaced (blob table included) and its payload kept byte for byte,
    with a valid header checksum: for tests that craft files. The metadata is not checked."""
    _, _, _, length, _ = HEADER.unpack_from(data)
    document = json.dumps(metadata, separators=(",", ":"), sort_keys=True).encode("utf-8")
    flags = 0
    if compress_metadata:
        document = zstandard.ZstdCompressor(level=3).compress(document)
        flags |= FLAG_METADATA_ZSTD
    return _header(document, flags, version_for(metadata)) + document + data[HEADER.size + length :]


class ContainerWriter:
    """Collects blobs as they are made, then writes header, metadata and payload.

    With `path`, blobs go to a temporary file beside it as they arrive, so memory holds no more than
    one blob; `finish` then writes the file atomically. Without, the file is built in memory.
    """

    def __init__(self, path: str | os.PathLike | None = None, force: bool = False):
        self.path = Path(path) if path is not None else None
        self.force = force
        self.table: list[dict] = []
        self._offset = 0
        if self.path is None:
            self._payload = io.BytesIO()
            self._spool = None
        else:
            if not self.path.parent.exists():
                raise InputError(f"output folder {str(self.path.parent)!r} does not exist")
            handle, self._spool = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".payload.tmp", dir=self.path.parent
            )
            self._payload = os.fdopen(handle, "w+b")

    def add(self, kind: str, data: bytes, compression: str = "none") -> int:
        self._payload.write(data)
        self.table.append(
            {
                "kind": kind,
                "offset": self._offset,
                "length": len(data),
                "crc32": crc32(data),
                "compression": compression,
            }
        )
        self._offset += len(data)
        return len(self.table) - 1

    def finish(self, metadata: dict, compress_metadata: bool = True) -> bytes | Path:
        """The file's bytes (in memory), or the path written."""
        document, flags = _document(metadata, self.table, compress_metadata)
        header = _header(document, flags, version_for(metadata))
        if self.path is None:
            return header + document + self._payload.getvalue()

        def write_file(temporary: str) -> None:
            with open(temporary, "wb") as output:
                output.write(header)
                output.write(document)
                self._payload.seek(0)
                shutil.copyfileobj(self._payload, output, COPY_CHUNK)

        try:
            return atomic_write(self.path, write_file, self.force)
        finally:
            self.close()

    def close(self) -> None:
        if self._spool is not None:
            self._payload.close()
            Path(self._spool).unlink(missing_ok=True)
            self._spool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Container:
    """A parsed file: typed metadata now, blobs read and checked one by one when asked for.

    `source` is the file's bytes or a path; a path is read blob by blob and kept open until `close`.
    """

    def __init__(self, source, name: str | None = None):
        self._file = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.source = name or "<bytes>"
            self._data = memoryview(bytes(source))
            self.file_bytes = len(self._data)
        else:
            self.source = name or str(source)
            try:
                self._file = open(source, "rb")
                self.file_bytes = os.fstat(self._file.fileno()).st_size
            except FileNotFoundError:
                raise InputError(f"{str(source)!r} does not exist") from None
            except IsADirectoryError:
                raise InputError(f"{str(source)!r} is a folder, not a .vcwc file") from None
            except OSError as exc:
                raise InputError(f"{str(source)!r} cannot be read ({exc.strerror})") from None
            self._data = None
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _read(self, offset: int, length: int) -> bytes:
        if self._data is not None:
            return bytes(self._data[offset : offset + length])
        return os.pread(self._file.fileno(), length, offset)

    def _parse(self) -> None:
        source = self.source
        if self.file_bytes < HEADER.size:
            raise FormatError(f"{source}: {self.file_bytes} bytes is too short to be a .vcwc file")
        magic, version, flags, length, checksum = HEADER.unpack(self._read(0, HEADER.size))
        if magic != MAGIC:
            raise FormatError(f"{source}: not a .vcwc file (magic {magic!r})")
        if version not in READABLE_VERSIONS:
            raise FormatError(
                f"{source}: format version {version} is not supported (this vcwc reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))})"
            )
        if flags & ~KNOWN_FLAGS:
            raise FormatError(f"{source}: unknown header flags {flags:#06x}")
        if HEADER.size + length > self.file_bytes:
            raise FormatError(
                f"{source}: metadata is truncated ({self.file_bytes - HEADER.size} bytes after the "
                f"header, {length} declared)"
            )
        document = self._read(HEADER.size, length)
        if crc32(document) != checksum:
            raise FormatError(f"{source}: metadata is corrupted (checksum mismatch)")
        if flags & FLAG_METADATA_ZSTD:
            document = _bounded_zstd(document, MAX_METADATA_BYTES, f"{source}: metadata")
        elif length > MAX_METADATA_BYTES:
            raise FormatError(f"{source}: metadata of {length:,} bytes is larger than vcwc reads")
        try:
            self.metadata = json.loads(document, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise FormatError(f"{source}: metadata is not valid JSON ({str(exc)[:120]})") from None
        self.version = version
        self.header_bytes = HEADER.size + length
        self.payload_bytes = self.file_bytes - self.header_bytes
        self.meta = schema.parse(self.metadata, self.payload_bytes, source)

    def raw_blob(self, index: int) -> bytes:
        """The blob's bytes as stored, checked against its CRC-32."""
        entry = self.meta.blobs[index]
        data = self._read(self.header_bytes + entry.offset, entry.length)
        if len(data) != entry.length or crc32(data) != entry.crc32:
            raise FormatError(f"{self.source}: blob {index} ({entry.kind}) is corrupted (checksum mismatch)")
        return data

    def blob(self, index: int, expected_size: int | None = None) -> bytes:
        """The blob's content: checked, and decompressed if it was stored compressed.

        A compressed blob must decompress to exactly `expected_size` bytes where given (the size the
        metadata implies), and to no more than MAX_METADATA_BYTES times 64 otherwise.
        """
        entry = self.meta.blobs[index]
        data = self.raw_blob(index)
        if entry.compression != "zstd":
            return data
        limit = expected_size if expected_size is not None else MAX_METADATA_BYTES * 64
        content = _bounded_zstd(data, limit, f"{self.source}: blob {index} ({entry.kind})")
        if expected_size is not None and len(content) != expected_size:
            raise FormatError(
                f"{self.source}: blob {index} ({entry.kind}) holds {len(content):,} bytes, the "
                f"metadata describes {expected_size:,}"
            )
        return content

    @property
    def blob_table(self) -> list[dict]:
        return self.metadata["blobs"]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _bounded_zstd(data: bytes, limit: int, what: str) -> bytes:
    """zstd content of at most `limit` bytes; never allocates more than the content actually holds."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            chunks, total = [], 0
            while True:
                chunk = reader.read(min(COPY_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise FormatError(f"{what} decompresses to more than the {limit:,} bytes expected")
    except zstandard.ZstdError as exc:
        raise FormatError(f"{what} cannot be decompressed ({exc})") from None
    return b"".join(chunks)
