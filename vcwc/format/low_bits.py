"""Low bits stored raw: a tensor's symbols split into a high part, coded as video, and b low bits per
symbol, packed as they are.

Wide symbols (the fine fixed steps transformers need spread them over +-200 and more) cost the video
codecs 5-12% above their entropy: H.264 codes levels above 14 with Exp-Golomb bins that do not adapt.
Their lowest bits are close to uniform, so storing them raw costs b bits per weight and nothing more,
and the high part, a few levels wide, is what the codecs' adaptive contexts code well
(scripts/explore_bitplanes.py measured 2.4-3.9% above entropy this way on SmolLM2).

symbol = high * 2**b + low, with high = symbol >> b (floor) and 0 <= low < 2**b. The low bits are packed
most significant first, element after element in C order, the last byte padded with zero bits.
"""

from __future__ import annotations

import math

import numpy as np

MAX_LOW_BITS = 7
# The high part's RMS is kept at 2 to 4 levels: the split then measured best at every step tried.
HIGH_RMS_OCTAVES = 1


def low_bits_for(symbols: np.ndarray) -> int:
    """How many low bits of these symbols to store raw: 0 where they are narrow enough for the codec."""
    if symbols.size == 0:
        return 0
    rms = math.sqrt(float(np.mean(np.square(symbols, dtype=np.float64))))
    if rms < 1:
        return 0
    return int(min(MAX_LOW_BITS, max(0, math.floor(math.log2(rms)) - HIGH_RMS_OCTAVES)))


def packed_length(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def split(symbols: np.ndarray, bits: int) -> tuple[np.ndarray, bytes]:
    """(high symbols, same dtype and shape; the packed low bits)."""
    flat = symbols.reshape(-1)
    high = (flat >> bits).reshape(symbols.shape)
    low = (flat & ((1 << bits) - 1)).astype(np.uint8)
    return high, _pack(low, bits)


def join(high: np.ndarray, data: bytes, bits: int, dtype) -> np.ndarray:
    """The symbols, as `dtype`, from their high part and packed low bits."""
    low = _unpack(data, bits, high.size).reshape(high.shape)
    return ((high.astype(np.int32) << bits) | low.astype(np.int32)).astype(dtype)


def _pack(low: np.ndarray, bits: int) -> bytes:
    """Eight values of `bits` bits make `bits` bytes: each group is one big-endian integer."""
    count = low.size
    groups = np.zeros(8 * -(-count // 8), dtype=np.uint8)
    groups[:count] = low
    groups = groups.reshape(-1, 8)
    word = np.zeros(len(groups), dtype=np.uint64)
    for position in range(8):
        word |= groups[:, position].astype(np.uint64) << np.uint64(bits * (7 - position))
    # The word's low 8*bits bits, most significant byte first.
    data = word.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - bits :]
    return data.tobytes()[: packed_length(count, bits)]


def _unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    groups = -(-count // 8)
    stored = np.zeros(groups * bits, dtype=np.uint8)
    stored[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    padded = np.zeros((groups, 8), dtype=np.uint8)
    padded[:, 8 - bits :] = stored.reshape(groups, bits)
    word = padded.view(">u8").reshape(-1).astype(np.uint64)
    mask = np.uint64((1 << bits) - 1)
    values = np.empty((groups, 8), dtype=np.uint8)
    for position in range(8):
        values[:, position] = (word >> np.uint64(bits * (7 - position))) & mask
    return values.reshape(-1)[:count]
