"""Error of reconstructed weights against the float originals."""

from __future__ import annotations

import numpy as np
import torch


def _as_float64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to(torch.float64).cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def snr_db(original, reconstructed) -> float:
    """10 log10(signal energy / error energy); inf when identical, -inf for noise on an all-zero tensor."""
    reference = _as_float64(original)
    error = float(np.sum((_as_float64(reconstructed) - reference) ** 2))
    return _decibels(float(np.sum(reference ** 2)), error)


def error_stats(original, reconstructed) -> tuple[float, float]:
    """(snr_db, max_abs_error) from one pass: each tensor is converted once, which counts on large models."""
    reference = _as_float64(original)
    difference = _as_float64(reconstructed) - reference
    error = float(np.dot(difference.ravel(), difference.ravel()))
    signal = float(np.dot(reference.ravel(), reference.ravel()))
    largest = float(np.abs(difference).max()) if difference.size else 0.0
    return _decibels(signal, error), largest


def _decibels(signal: float, error: float) -> float:
    if error == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / error))


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 entropy of integer symbols in -128..127, in bits for the whole array: the ideal coded size."""
    counts = np.bincount(np.asarray(symbols).astype(np.int64).ravel() + 128)
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / counts.sum())).sum())
