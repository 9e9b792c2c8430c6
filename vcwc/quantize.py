"""Linear symmetric quantization: pure functions from float weights to integer symbols and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .errors import InputError
from .gptq import gptq_levels

Granularity = Literal["per_tensor", "per_channel"]
Rounding = Literal["nearest", "gptq"]


@dataclass(frozen=True)
class QuantConfig:
    """Symmetric, zero point 0: symbol = round(w / scale), scale = max|w| / max_level.

    `per_channel` gives each output channel (dimension 0) its own scale.
    `bits=8` is int8 (max_level 127); fewer bits give fewer levels in the same int8 container.
    `step` fixes the scale in weight units for every tensor (or channel), as NNC's QP does, so that
    symbols are few and small; a tensor whose range would need more than `max_level` steps gets the
    coarser scale max|w| / max_level instead of being clipped.
    `rounding="gptq"` picks each weight's level on the same grid by error-compensating rounding
    (vcwc.gptq), which needs the layer's input moments; the decoder is the same either way.
    """

    granularity: Granularity = "per_tensor"
    bits: int = 8
    step: float | None = None
    rounding: Rounding = "nearest"

    def __post_init__(self):
        if self.granularity not in ("per_tensor", "per_channel"):
            raise InputError(f"granularity must be 'per_tensor' or 'per_channel', got {self.granularity!r}")
        if not 2 <= self.bits <= 8:
            raise InputError(f"bits must be between 2 and 8, got {self.bits}")
        if self.step is not None and not (self.step > 0 and np.isfinite(self.step)):
            raise InputError(f"step must be a positive number, got {self.step}")
        if self.rounding not in ("nearest", "gptq"):
            raise InputError(f"rounding must be 'nearest' or 'gptq', got {self.rounding!r}")

    @property
    def max_level(self) -> int:
        return 2 ** (self.bits - 1) - 1


STEPS_PER_OCTAVE = 4  # NNCodec's QP scale: qp -20 is a step of 2 ** (-20 / 4) in weight units


def step_from_qp(qp: float) -> float:
    """The fixed quantization step of a step QP, on NNCodec's scale so that the two ladders line up."""
    return 2.0 ** (qp / STEPS_PER_OCTAVE)


@dataclass(frozen=True)
class Quantized:
    symbols: np.ndarray  # int8, the tensor's shape
    scales: np.ndarray  # float32: one per tensor, or one per output channel
    config: QuantConfig


def quantize(weights: torch.Tensor, config: QuantConfig, name: str = "tensor",
             input_moments: torch.Tensor | None = None) -> Quantized:
    """Symbols and scales of one tensor. `input_moments` (vcwc.gptq.input_moments) serve gptq rounding;
    a tensor without them (a layer type gptq does not handle) is rounded to nearest."""
    values = weights.detach().to(torch.float64).cpu().numpy()
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InputError(f"tensor {name!r} holds {bad} NaN or infinite values; vcwc cannot quantize it")
    if config.granularity == "per_channel" and values.ndim >= 1:
        rows = values.reshape(values.shape[0], -1)
        peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(values.shape[0])
    else:
        peak = np.array([np.abs(values).max() if values.size else 0.0])
    # The stored float32 scale is the one used to quantize, so dequantization reproduces it exactly.
    scales = peak / config.max_level
    if config.step is not None:
        scales = np.maximum(scales, config.step)
    scales = scales.astype(np.float32)
    divisor = np.where(scales > 0, scales, 1.0).astype(np.float64)
    shaped = divisor.reshape(-1, *([1] * (values.ndim - 1))) if len(scales) > 1 else divisor[0]
    if config.rounding == "gptq" and input_moments is not None and values.ndim >= 2:
        symbols = gptq_levels(values, scales, config.max_level, input_moments)
    else:
        symbols = np.clip(np.rint(values / shaped), -config.max_level, config.max_level).astype(np.int8)
    return Quantized(symbols, scales, config)


def dequantize(symbols: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 weights from int8 symbols and their scales (one, or one per output channel)."""
    values = symbols.astype(np.float32)
    if len(scales) > 1:
        return values * scales.reshape(-1, *([1] * (symbols.ndim - 1)))
    return values * scales[0]
