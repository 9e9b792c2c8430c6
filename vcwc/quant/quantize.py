"""Linear symmetric quantization: pure functions from float weights to integer symbols and back.

Large tensors are processed in blocks of rows in float64, so memory holds the tensor, its symbols and
one block, never a float64 copy of the whole tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from .dependent import reach, reconstruction_levels, trellis_symbols

BLOCK_ELEMENTS = 1 << 22
MAX_BITS = 10  # the widest symbols a 10-bit frame holds: -511..511
ROUNDINGS = ("nearest", "gptq", "dependent")
# A row's own scale is a float32: it pays only where the row holds more weights than its 4 bytes would hold
# as int8 symbols. Rows of fewer (a (N, 1) tensor) share one scale, or the scales would cost more than the
# weights they serve (40 bits a weight).
MIN_ROW_WEIGHTS_FOR_A_SCALE = 5


@dataclass(frozen=True)
class QuantConfig:
    """How one tensor is quantized: symbol = round(w / scale), scale = max|w| / max_level.

    `per_channel` gives each output channel (dimension 0) its own scale. `bits=8` is int8 (max_level
    127); fewer bits give fewer levels, more (up to 10: max_level 511) wider symbols, held as int16.
    `step` fixes the scale in weight units (as NNC's QP does), so that symbols are few and small; an output
    channel (row) whose range would need more than `max_level` steps gets its own coarser scale
    max|w| / max_level instead of being clipped, and the tensor then has a scale per row (the step for
    every row but those). `rounding="gptq"` picks each weight's level on the same grid by
    error-compensating rounding (vcwc.quant.gptq); the decoder is the same either way.
    `rounding="dependent"` is dependent quantization (vcwc.quant.dependent): symbols about half as wide,
    reconstructed by a state machine along each row, which the decoder must know of (`dependent`).
    """

    granularity: str = "per_tensor"
    bits: int = 8
    step: float | None = None
    rounding: str = "nearest"

    def __post_init__(self):
        if self.granularity not in ("per_tensor", "per_channel"):
            raise InputError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        if not 2 <= self.bits <= MAX_BITS:
            raise InputError(f"bits must be between 2 and {MAX_BITS}, got {self.bits}")
        if self.step is not None and not (self.step > 0 and np.isfinite(self.step)):
            raise InputError(f"step must be a positive number, got {self.step}")
        if self.rounding not in ROUNDINGS:
            raise InputError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")

    @property
    def max_level(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def dependent(self) -> bool:
        return self.rounding == "dependent"

    @property
    def reach(self) -> int:
        """How many steps from zero the symbols reach: max_level, or about twice that for dependent
        quantization, whose quantizers step two grid steps at a time."""
        return reach(self.max_level) if self.dependent else self.max_level

    @property
    def symbol_dtype(self):
        return np.int8 if self.bits <= 8 else np.int16


@dataclass(frozen=True)
class Quantized:
    symbols: np.ndarray  # int8 (int16 above 8 bits), the tensor's shape
    scales: np.ndarray  # float32: one per tensor, or one per output channel
    config: QuantConfig
    columns: np.ndarray | None = None  # float32 step factor per column of the weight matrix, or None

    @property
    def granularity(self) -> str:
        """What the scales are: one per row (outlier rows under a step, or asked for), or one for the
        tensor (also where per-channel rows are too short to pay for a scale each)."""
        if len(self.scales) > 1 or (self.config.granularity == "per_channel" and as_rows(self.symbols).shape[0] == 1):
            return "per_channel"
        return "per_tensor"


def as_rows(array: np.ndarray) -> np.ndarray:
    """A tensor as the matrix its rows (output channels) make: (shape[0], -1), a scalar as (1, 1)."""
    return array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)


def _row_blocks(rows: int, columns: int):
    step = max(1, BLOCK_ELEMENTS // max(columns, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def check_finite(values: np.ndarray, name: str) -> None:
    matrix = as_rows(values)
    bad = sum(int((~np.isfinite(matrix[rows])).sum()) for rows in _row_blocks(*matrix.shape))
    if bad:
        raise InputError(f"tensor {name!r} holds {bad} NaN or infinite values; vcwc cannot quantize it")


def scales_of(values: np.ndarray, config: QuantConfig) -> np.ndarray:
    """float32 scales: the stored value is the one used to quantize, so dequantization reproduces it."""
    matrix = as_rows(values)
    if matrix.size == 0:
        return np.zeros(matrix.shape[0] if config.granularity == "per_channel" else 1, dtype=np.float32)
    rows = np.concatenate(
        [np.abs(matrix[block].astype(np.float64)).max(axis=1) for block in _row_blocks(*matrix.shape)]
    )
    row_scales_pay = matrix.shape[1] >= MIN_ROW_WEIGHTS_FOR_A_SCALE
    if config.granularity == "per_channel" and values.ndim and row_scales_pay:
        peaks = rows
    elif config.step is not None and values.ndim >= 2 and row_scales_pay and rows.max() > config.step * config.reach:
        # Outliers: only the rows (output channels) that hold them get a coarser scale; the others keep the
        # step. A scale per row costs 4 bytes a row; one coarser scale would coarsen every weight.
        peaks = rows
    else:
        peaks = np.array([rows.max()])
    scales = peaks / config.reach
    if config.step is not None:
        scales = np.maximum(scales, config.step)
    return scales.astype(np.float32)


def quantize(
    values: np.ndarray, config: QuantConfig, name: str = "tensor", input_moments=None, columns: np.ndarray | None = None
) -> Quantized:
    """Symbols and scales of one tensor (any float dtype). `input_moments` (vcwc.quant.noise) serve gptq
    rounding; without them (a layer gptq does not serve) the tensor is rounded to nearest. `columns` (positive,
    one per column of the weight matrix (shape[0], -1)) multiply the steps of their columns: the tensor
    divided by them is quantized as any other, and `dequantize` multiplies them back."""
    values = np.asarray(values)
    check_finite(values, name)
    if columns is not None and values.ndim >= 2:
        columns = np.asarray(columns, dtype=np.float32)
        scaled = as_rows(values).astype(np.float32)  # a copy, divided in place: one float32 copy, not two
        scaled /= columns[None, :]
        scaled = scaled.reshape(values.shape)
        if input_moments is not None:
            # W x = (W / c) (c x): the scaled weights see inputs scaled by c, whose moments are c_i c_j E[x_i x_j].
            import torch

            factor = torch.from_numpy(columns.astype(np.float64)).to(input_moments.dtype)
            input_moments = input_moments * factor[:, None] * factor[None, :]
        return replace(quantize(scaled, config, name, input_moments), columns=columns)
    scales = scales_of(values, config)
    if config.rounding == "gptq" and input_moments is not None and values.ndim >= 2:
        from .gptq import gptq_levels

        levels = gptq_levels(values.astype(np.float64), scales, config.max_level, input_moments)
        return Quantized(levels.astype(config.symbol_dtype), scales, config)
    divisors = np.where(scales > 0, scales, 1.0).astype(np.float64)
    matrix = as_rows(values)
    if config.dependent:
        per_row = np.broadcast_to(divisors, (matrix.shape[0],))
        symbols = trellis_symbols(matrix, per_row, config.max_level, config.symbol_dtype)
        return Quantized(symbols.reshape(values.shape), scales, config)
    symbols = np.empty(matrix.shape, dtype=config.symbol_dtype)
    for rows in _row_blocks(*matrix.shape):
        divisor = divisors[rows, None] if len(divisors) > 1 else divisors[0]
        block = np.rint(matrix[rows].astype(np.float64) / divisor)
        symbols[rows] = np.clip(block, -config.max_level, config.max_level)
    return Quantized(symbols.reshape(values.shape), scales, config)


def dequantize(
    symbols: np.ndarray, scales: np.ndarray, dependent: bool = False, columns: np.ndarray | None = None
) -> np.ndarray:
    """float32 weights from integer symbols and their scales (one, or one per output channel); `dependent`:
    symbols of dependent quantization, whose levels follow each row's state machine; `columns`: each column's
    step factor (quantize's), multiplied in last."""
    weights = _dequantize(symbols, scales, dependent)
    if columns is not None and weights.ndim >= 2:
        matrix, factors = as_rows(weights), columns.astype(weights.dtype, copy=False)[None, :]
        for block in _row_blocks(*matrix.shape):
            matrix[block] *= factors
    return weights


def _dequantize(symbols: np.ndarray, scales: np.ndarray, dependent: bool) -> np.ndarray:
    if dependent:
        rows = as_rows(symbols)
        weights = np.empty(rows.shape, dtype=np.result_type(np.float32, scales.dtype))
        for block in _row_blocks(*rows.shape):
            scale = scales[block, None] if len(scales) > 1 else scales[0]
            np.multiply(reconstruction_levels(rows[block], weights.dtype), scale, out=weights[block])
        return weights.reshape(symbols.shape)
    # One pass: numpy casts the symbols a buffer at a time (the same values as a float32 copy first); float64
    # scales give float64 weights, as float32 symbols times a float64 scale would.
    scale = scales.reshape(-1, *([1] * (symbols.ndim - 1))) if len(scales) > 1 else scales[0]
    return np.multiply(symbols, scale, dtype=np.result_type(np.float32, scales.dtype))
