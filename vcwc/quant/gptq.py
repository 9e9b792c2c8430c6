"""Error-compensating rounding (GPTQ) steered by noise, not data.

Rounding each weight to its nearest level is best for the weights' own squared error, but a layer's
output error is ΔWᵀ E[x xᵀ] ΔW: errors on correlated inputs can cancel. GPTQ (Frantar et al., "GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023; Optimal Brain
Quantization) rounds the columns of a layer's weight matrix one at a time and spreads each rounding
error over the columns not yet rounded, in proportion to the inverse of E[x xᵀ]. Here each column gathers
the residuals of the columns before it through the Cholesky factor of E[x xᵀ] itself, which gives the same
levels without inverting anything (the factorization is most of the time). The levels stay on the
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
# Up to this many columns (the widest layer of the CIFAR ResNets: 64 channels x 3 x 3) the factor comes from
# three factorizations and an inverse, as the committed CIFAR results were made; the one-factorization form
# agrees to float32 precision (a few levels in 10^5 round differently) at a sixth of the time.
SMALL_LAYER = 576


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
        factor = _moment_factor(moments[group])
        levels[:, part] = _round_columns(columns[:, part], steps[part], max_level, factor)
    return levels.T.reshape(values.shape).astype(np.int8 if max_level <= 127 else np.int16)


def _moment_factor(moments: torch.Tensor) -> np.ndarray:
    """Upper-triangular V with V Vᵀ = moments + damping (a Cholesky factor taken from the last column
    back): rounding column i moves the later columns j by its residual times V[i, j] / V[j, j]. In
    float32, as GPTQ computes it: the factorization dominates its time."""
    diagonal = torch.diagonal(moments).float().clone()
    diagonal[diagonal <= 0] = 1.0  # an input the noise never reached: its weights are rounded alone
    diagonal += DAMPING * diagonal.mean()
    if len(moments) <= SMALL_LAYER:
        damped = moments.float().clone()
        torch.diagonal(damped).copy_(diagonal)
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(damped))
        upper = torch.linalg.cholesky(inverse, upper=True).double()
        return torch.linalg.solve_triangular(upper, torch.eye(len(upper), dtype=torch.float64), upper=True).numpy()
    # With J the reversal, J H J = L Lᵀ gives H = (J L J)(J L J)ᵀ, and J L J is upper triangular. One
    # reversed copy in, the factor out, and its float64 copy read through a reversed view: a layer of 16,384
    # columns then holds 4 GiB at most here (its moments, two float32 matrices, then the float64 factor).
    reversed_damped = moments.float().flip((0, 1))
    torch.diagonal(reversed_damped).copy_(diagonal.flip(0))
    lower = torch.linalg.cholesky(reversed_damped)
    del reversed_damped
    return np.flip(lower.numpy(), (0, 1)).astype(np.float64)


def _round_columns(columns: np.ndarray, steps: np.ndarray, max_level: int, factor: np.ndarray) -> np.ndarray:
    """Levels of the weight columns (one per row of `columns`), each taking in the rounding residuals of
    the columns before it: GPTQ's update, gathered per column instead of spread from each."""
    count = columns.shape[0]
    levels = np.zeros_like(columns)
    residuals = np.zeros_like(columns)
    diagonal = np.diagonal(factor)
    for start in range(0, count, BLOCK):
        end = min(start + BLOCK, count)
        block = columns[start:end] + (factor[:start, start:end].T @ residuals[:start]) / diagonal[start:end, None]
        local = factor[start:end, start:end]
        for i in range(end - start):
            value = block[i] + (local[:i, i] @ residuals[start : start + i]) / local[i, i]
            level = np.clip(np.rint(value / steps), -max_level, max_level)
            levels[start + i] = level
            residuals[start + i] = columns[start + i] - level * steps
    return levels
