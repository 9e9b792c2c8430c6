"""Error of reconstructed weights against the originals, and the ideal coded size of symbols.

Pure numpy. Large tensors are reduced in blocks of float64 values, so no full float64 copy is made.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 1 << 22  # float64 values converted at once: 32 MiB per operand


def _blocks(original, reconstructed):
    reference = np.asarray(original).reshape(-1)
    values = np.asarray(reconstructed).reshape(-1)
    if reference.shape != values.shape:
        raise ValueError(f"shapes differ: {np.shape(original)} and {np.shape(reconstructed)}")
    for start in range(0, reference.size, BLOCK_ELEMENTS):
        end = start + BLOCK_ELEMENTS
        yield reference[start:end].astype(np.float64), values[start:end].astype(np.float64)  # copies, always


def error_sums(original, reconstructed) -> tuple[float, float, float]:
    """(signal energy, error energy, max_abs_error) in one pass over the two arrays; sums of parts add up."""
    signal = error = largest = 0.0
    for reference, difference in _blocks(original, reconstructed):
        # In place on the blocks' float64 copies. numpy's own pairwise sums, not BLAS dot products: the
        # result must not depend on how many threads BLAS runs, since it is written into the file.
        np.subtract(difference, reference, out=difference)
        if difference.size:
            largest = max(largest, float(np.abs(difference, out=difference).max()))
        error += float(np.square(difference, out=difference).sum())
        signal += float(np.square(reference, out=reference).sum())
    return signal, error, largest


def error_stats(original, reconstructed) -> tuple[float, float]:
    """(snr_db, max_abs_error) in one pass over the two arrays."""
    signal, error, largest = error_sums(original, reconstructed)
    return decibels(signal, error), largest


def snr_db(original, reconstructed) -> float:
    """10 log10(signal energy / error energy); inf when identical, -inf for noise on an all-zero tensor."""
    return error_stats(original, reconstructed)[0]


def decibels(signal: float, error: float) -> float:
    if error == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / error))


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 entropy of integer symbols, in bits for the whole array: the ideal coded size."""
    values = np.asarray(symbols).astype(np.int64).ravel()
    if values.size == 0:
        return 0.0
    counts = np.bincount(values - values.min())
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / counts.sum())).sum())
