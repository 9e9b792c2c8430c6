"""The tensors a recipe does not code (biases, norms, integer buffers, excluded layers): stored as they came,
or as the corrected bytes the bias correction gives them, in one zstd blob."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import zstandard

from ..errors import VcwcWarning
from ..format.container import ContainerWriter
from ..format.records import TensorRecord
from ..format.safetensors import to_array
from ..io import ModelSource

UNCODED_ZSTD_LEVEL = 19
ONE_SHOT_UNCODED_BYTES = 256 << 20  # above this the uncoded blob is compressed as a stream


def write_uncoded(
    source: ModelSource, names: list[str], replaced: dict[str, bytes], encoding: str, writer: ContainerWriter
) -> dict[str, TensorRecord]:
    """Store the uncoded tensors, as they came or as `replaced` (corrected) bytes, in one zstd blob."""
    if not names:
        return {}
    records, offset, pieces = {}, 0, []
    for name in names:
        dtype = source.dtype(name)
        data = replaced[name] if name in replaced else source.raw(name)
        stored = "exact"
        if encoding == "float16" and dtype == "float32":
            data = np.frombuffer(data, dtype="<f4").astype("<f2").tobytes()
            stored = "float16"
        if source.is_float(name):
            _warn_non_finite(name, data, "float16" if stored == "float16" else dtype)
        records[name] = TensorRecord(
            name, dtype, tuple(source.shape(name)), "uncoded", blob=-1, offset=offset, length=len(data), encoding=stored
        )
        pieces.append(data)
        offset += len(data)
    if offset == 0:
        blob = writer.add("uncoded", zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compress(b""), "zstd")
    elif offset <= ONE_SHOT_UNCODED_BYTES:
        blob = writer.add(
            "uncoded", zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compress(b"".join(pieces)), "zstd"
        )
    else:
        compressor = zstandard.ZstdCompressor(level=UNCODED_ZSTD_LEVEL).compressobj(size=offset)
        blob = writer.add("uncoded", b"".join([*(compressor.compress(p) for p in pieces), compressor.flush()]), "zstd")
    return {name: _with_blob(record, blob) for name, record in records.items()}


def _with_blob(record: TensorRecord, blob: int) -> TensorRecord:
    return replace(record, blob=blob)


def _warn_non_finite(name: str, data: bytes, dtype: str) -> None:
    values = to_array(data, dtype, (len(data) // {"float64": 8, "float32": 4}.get(dtype, 2),))
    bad = int((~np.isfinite(values)).sum())
    if bad:
        warnings.warn(
            f"tensor {name!r} (stored uncoded) holds {bad} NaN or infinite values; they are kept as they are",
            VcwcWarning,
            stacklevel=2,
        )
