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
BLOCK = 1 << 22  # symbols packed or unpacked at once: a few bytes of scratch each, whatever the tensor
# The high part's RMS is kept at 2 to 4 levels: the split then measured best at every step tried.
HIGH_RMS_OCTAVES = 1


def low_bits_for(symbols: np.ndarray) -> int:
    """How many low bits of these symbols to store raw: 0 where they are narrow enough for the codec."""
    if symbols.size == 0:
        return 0
    flat = symbols.reshape(-1)
    # Exact integer sums a block at a time: no float64 copy of the tensor.
    squares = sum(
        int(np.square(flat[start : start + BLOCK], dtype=np.int64).sum()) for start in range(0, flat.size, BLOCK)
    )
    rms = math.sqrt(squares / flat.size)
    if rms < 1:
        return 0
    return int(min(MAX_LOW_BITS, max(0, math.floor(math.log2(rms)) - HIGH_RMS_OCTAVES)))


def packed_length(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def split(symbols: np.ndarray, bits: int) -> tuple[np.ndarray, bytes]:
    """(the high part, the packed low bits). The high part is `symbols` itself, shifted in place, where they
    are contiguous (no second copy of a tensor's symbols); a shifted copy where not."""
    flat = symbols.reshape(-1)  # a view of contiguous symbols, else a copy
    packed = b"".join(_pack(flat[start : start + BLOCK], bits) for start in range(0, flat.size, BLOCK))
    flat >>= bits
    return flat.reshape(symbols.shape), packed


def join(high: np.ndarray, data: bytes, bits: int, dtype) -> np.ndarray:
    """The symbols, as `dtype`, from their high part and packed low bits; `high` is used up (joined in place
    where it already has that dtype).

    Computed in `dtype` itself: high * 2**bits is the multiple of 2**bits at or below a symbol of at least
    -max_level, so it never passes the dtype's minimum (-128 or -32768), and adding the low bits is an or.
    """
    symbols = high.astype(dtype, copy=False).reshape(-1)
    symbols <<= bits
    step = BLOCK * bits // 8  # BLOCK is a multiple of 8: its packed bits end on a byte
    for index, start in enumerate(range(0, symbols.size, BLOCK)):
        block = symbols[start : start + BLOCK]
        low = _unpack(data[index * step : (index + 1) * step], bits, block.size)
        np.bitwise_or(block, low, out=block, casting="unsafe")
    return symbols.reshape(high.shape)


def _pack(symbols: np.ndarray, bits: int) -> bytes:
    """The low `bits` bits of each symbol; eight of them make `bits` bytes, one big-endian integer."""
    count = symbols.size
    groups = np.zeros(8 * -(-count // 8), dtype=np.uint8)
    groups[:count] = symbols & ((1 << bits) - 1)
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
