"""safetensors files read and written a tensor at a time, without torch and without mapping whole files.

The format (huggingface/safetensors): an 8-byte little-endian header length n, n bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}), then the data.
Reading one tensor reads its bytes with pread, so memory holds one tensor and no mapping of the
file stays resident; writing streams each tensor's bytes in the header's order.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .records import DTYPE_BYTES

# vcwc's dtype names and safetensors' codes.
CODES = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
DTYPES = {code: name for name, code in CODES.items()}
ITEM_BYTES = DTYPE_BYTES
MAX_HEADER_BYTES = 100 << 20  # the limit the safetensors library sets
ALIGNMENT = 8  # the header is padded with spaces so that data starts on an 8-byte boundary
BLOCK_ELEMENTS = 1 << 22  # values converted at once: bounds the temporaries of a large tensor


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: str  # vcwc's name: "float32", "bfloat16", ...
    shape: tuple[int, ...]
    begin: int  # byte offsets within the data area
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


class SafetensorsFile:
    """The header of one safetensors file; `read(name)` returns one tensor's bytes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as handle:
                prefix = handle.read(8)
                if len(prefix) < 8:
                    raise InputError(f"{self.path}: not a safetensors file (too short)")
                (length,) = struct.unpack("<Q", prefix)
                if length > MAX_HEADER_BYTES or 8 + length > size:
                    raise InputError(f"{self.path}: not a safetensors file (header length {length})")
                header = json.loads(handle.read(length))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{self.path}: not a readable safetensors file ({exc})") from None
        if not isinstance(header, dict):
            raise InputError(f"{self.path}: not a safetensors file (header is not an object)")
        self.data_start = 8 + length
        metadata = header.pop("__metadata__", None) or {}
        self.metadata = {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
        self.entries: dict[str, Entry] = {}
        for name, info in header.items():
            try:
                dtype = DTYPES[info["dtype"]]
                shape = tuple(int(v) for v in info["shape"])
                begin, end = (int(v) for v in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    f"{self.path}: tensor {name!r} has an unreadable or unsupported entry ({str(info)[:80]})"
                ) from None
            if end - begin != math.prod(shape) * ITEM_BYTES[dtype] or begin < 0 or self.data_start + end > size:
                raise InputError(f"{self.path}: tensor {name!r} has inconsistent offsets")
            self.entries[name] = Entry(name, dtype, shape, begin, end)

    def read(self, name: str) -> bytes:
        entry = self.entries[name]
        with open(self.path, "rb") as handle:
            data = os.pread(handle.fileno(), entry.nbytes, self.data_start + entry.begin)
        if len(data) != entry.nbytes:
            raise InputError(f"{self.path}: tensor {name!r} is truncated")
        return data

    def array(self, name: str) -> np.ndarray:
        """The tensor as a numpy array; bfloat16 comes back as float32 (exactly), since numpy has no bf16."""
        return to_array(self.read(name), self.entries[name].dtype, self.entries[name].shape)


def to_array(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        raw = np.frombuffer(data, dtype="<u2")
        values = np.empty(raw.size, dtype=np.uint32)
        for start in range(0, raw.size, BLOCK_ELEMENTS):  # a bf16 is the top half of a float32
            np.left_shift(
                raw[start : start + BLOCK_ELEMENTS], 16, out=values[start : start + BLOCK_ELEMENTS], dtype=np.uint32
            )
        return values.view(np.float32).reshape(shape)
    numpy_dtype = {"bool": np.bool_}.get(dtype, np.dtype(dtype).newbyteorder("<"))
    return np.frombuffer(data, dtype=numpy_dtype).reshape(shape)


def from_array(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of `values` as `dtype`; float32 values become bfloat16 by round to nearest even."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.size > BLOCK_ELEMENTS:
        return b"".join(
            from_array(flat[start : start + BLOCK_ELEMENTS], dtype) for start in range(0, flat.size, BLOCK_ELEMENTS)
        )
    if dtype == "bfloat16":
        bits = flat.astype(np.float32, copy=False).view(np.uint32)
        rounded = bits >> 16  # in place from here: round to nearest even is bits + 0x7FFF + that bit
        rounded &= 1
        rounded += 0x7FFF
        rounded += bits
        nan = np.isnan(flat)
        if nan.any():
            rounded[nan] = bits[nan] | 0x00400000  # keep NaNs NaN
        rounded >>= 16
        return rounded.astype("<u2").tobytes()
    numpy_dtype = {"bool": np.bool_}.get(dtype, np.dtype(dtype).newbyteorder("<"))
    return flat.astype(numpy_dtype, copy=False).tobytes()


class SafetensorsWriter:
    """Writes a safetensors file whose tensors are announced up front and then streamed in that order."""

    def __init__(
        self,
        path: str | os.PathLike,
        tensors: list[tuple[str, str, tuple[int, ...]]],
        metadata: dict[str, str] | None = None,
    ):
        self.path = Path(path)
        header: dict = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._expected: list[tuple[str, int]] = []
        for name, dtype, shape in tensors:
            nbytes = math.prod(shape) * ITEM_BYTES[dtype]
            header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._expected.append((name, nbytes))
            offset += nbytes
        document = json.dumps(header, separators=(",", ":")).encode()
        document += b" " * (-(8 + len(document)) % ALIGNMENT)
        self._handle = open(self.path, "wb")
        self._handle.write(struct.pack("<Q", len(document)) + document)
        self._next = 0

    def write(self, name: str, data: bytes) -> None:
        expected_name, nbytes = self._expected[self._next]
        if name != expected_name or len(data) != nbytes:
            raise ValueError(f"expected {expected_name!r} ({nbytes} bytes), got {name!r} ({len(data)} bytes)")
        self._handle.write(data)
        self._next += 1

    def close(self) -> None:
        self._handle.close()
        if self._next != len(self._expected):
            raise ValueError(f"{self.path}: {len(self._expected) - self._next} tensors were never written")

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is None:
            self.close()
        else:
            self._handle.close()
