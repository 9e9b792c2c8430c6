"""Error-compensating rounding (GPTQ) steered by noise, not data.

Rounding each weight to its nearest level is best for the weights' own squared error, but a layer's
output error is ΔWᵀ E[x xᵀ] ΔW: errors on correlated inputs can cancel. GPTQ (Frantar et al., "GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023; Optimal Brain
Quantization) rounds the columns of a layer's weight matrix one at a time and spreads each rounding
error over the columns not yet rounded, in proportion to the inverse of E[x xᵀ]. The levels stay on the
same grid, so the file format and the decoder do not change; only which level each weight takes does.

E[x xᵀ] comes from a pass of noise through the model (vcwc.quant.noise): no data. For a convolution,
x is an input patch (in_channels/groups × kernel) as the weight matrix's columns are ordered, one matrix
per group. Tensors without moments (not the weight of a layer gptq serves) keep nearest rounding.
"""

from __future__ import annotations

import numpy as np
import torch

DAMPING = 0.01  # added to E[x xᵀ]'s diagonal, as a fraction of its mean: keeps the inverse well-conditioned
BLOCK = 128  # columns rounded together before their errors reach the rest (the result is the same)
# Up to this many columns U comes from three factorizations, as the committed CIFAR results were made; the
# one-factorization form agrees to float32 precision (a few levels in 10^5 round differently).
SMALL_LAYER = 1024


def gptq_levels(values: np.ndarray, scales: np.ndarray, max_level: int, moments: torch.Tensor) -> np.ndarray:
    """Integer levels (int8, or int16 beyond ±127) of `values` (the weight tensor, output channels first) on
    the grid `scales` (one, or one per output channel), chosen by GPTQ against the input moments (groups, d, d)."""
    # Columns as rows (d, out): each step of the loop below then reads and updates contiguous memory.
    columns = np.array(values, dtype=np.float64).reshape(values.shape[0], -1).T.copy()
    steps = np.broadcast_to(scales.astype(np.float64), (values.shape[0],))
    steps = np.where(steps > 0, steps, 1.0)
    groups = moments.shape[0]
    rows = columns.shape[1] // groups
    levels = np.empty_like(columns)
    for group in range(groups):
        part = slice(group * rows, (group + 1) * rows)
        factor = _inverse_upper_factor(moments[group])
        levels[:, part] = _round_columns(columns[:, part], steps[part], max_level, factor)
    return levels.T.reshape(values.shape).astype(np.int8 if max_level <= 127 else np.int16)


def _inverse_upper_factor(moments: torch.Tensor) -> np.ndarray:
    """Upper-triangular U with Uᵀ U = (moments + damping)⁻¹: row i holds how column i's rounding error
    moves the later columns. In float32, as GPTQ computes it: the factorizations dominate its time."""
    moments = moments.float().clone()
    diagonal = torch.diagonal(moments)
    diagonal[diagonal <= 0] = 1.0  # an input the noise never reached: its weights are rounded alone
    diagonal += DAMPING * diagonal.mean()
    if len(moments) <= SMALL_LAYER:
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(moments))
        return torch.linalg.cholesky(inverse, upper=True).double().numpy()
    # With J the reversal, J H J = L Lᵀ gives H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), and J L⁻¹ J is upper triangular:
    # one factorization and one triangular solve instead of three factorizations, about 4x faster.
    lower = torch.linalg.cholesky(moments.flip(0).flip(1))
    inverse = torch.linalg.solve_triangular(lower, torch.eye(len(moments)), upper=False)
    return inverse.flip(0).flip(1).double().numpy()


def _round_columns(columns: np.ndarray, steps: np.ndarray, max_level: int, factor: np.ndarray) -> np.ndarray:
    """Levels of the weight columns (one per row of `columns`), each rounding error passed on to the rest."""
    columns = columns.copy()
    count = columns.shape[0]
    levels = np.zeros_like(columns)
    for start in range(0, count, BLOCK):
        end = min(start + BLOCK, count)
        block = columns[start:end].copy()
        errors = np.zeros_like(block)
        local = factor[start:end, start:end]
        for i in range(end - start):
            level = np.clip(np.rint(block[i] / steps), -max_level, max_level)
            levels[start + i] = level
            error = (block[i] - level * steps) / local[i, i]
            block[i:] -= local[i, i:, None] * error
            errors[i] = error
        columns[end:] -= factor[start:end, end:].T @ errors
    return levels
