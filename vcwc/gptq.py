"""Error-compensating rounding (GPTQ) steered by noise, not data.

Rounding each weight to its nearest level is best for the weights' own squared error, but a layer's
output error is ΔWᵀ E[x xᵀ] ΔW: errors on correlated inputs can cancel. GPTQ (Frantar et al., "GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023; Optimal Brain
Quantization) rounds the columns of a layer's weight matrix one at a time and spreads each rounding
error over the columns not yet rounded, in proportion to the inverse of E[x xᵀ]. The levels stay on the
same grid, so the file format and the decoder do not change; only which level each weight takes does.

E[x xᵀ] comes from the same BatchNorm-driven Gaussian noise as the bias correction (vcwc.correction):
no data. For a convolution, x is an input patch (in_channels/groups × kernel) as the weight matrix's
columns are ordered, one matrix per group. Layers other than Conv2d and Linear keep nearest rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .correction import coded_layers, drive_with_noise

DAMPING = 0.01  # added to E[x xᵀ]'s diagonal, as a fraction of its mean: keeps the inverse well-conditioned
BLOCK = 128  # columns rounded together before their errors reach the rest (the result is the same)
# Patches kept per batch for a convolution's moments: enough for a stable estimate, bounded in memory.
MAX_PATCHES = 1 << 16


def input_moments(module: nn.Module, coded: list[str], input_shape: tuple[int, ...], *,
                  batch_size: int = 32, batches: int = 2) -> dict[str, torch.Tensor]:
    """E[x xᵀ] of each coded layer's input patches under BatchNorm-driven noise: (groups, d, d) float32.

    Coded weights of other layer types (Conv1d, Conv3d) are left out; they are rounded to nearest.
    """
    layers = {name: layer for name, layer in coded_layers(module, coded, "gptq rounding").items()
              if isinstance(layer, (nn.Conv2d, nn.Linear))}
    names = {id(layer): name for name, layer in layers.items()}
    sums: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(0)

    def record(layer, inputs):
        patches = _patches(layer, inputs[0])  # (groups, n, d)
        if patches.shape[1] > MAX_PATCHES:
            keep = torch.randperm(patches.shape[1], generator=generator)[:MAX_PATCHES]
            patches = patches[:, keep]
        moments = patches.transpose(1, 2) @ patches / patches.shape[1]
        name = names[id(layer)]
        sums[name] = sums[name] + moments if name in sums else moments

    handles = [layer.register_forward_pre_hook(record) for layer in layers.values()]
    drive_with_noise(module, input_shape, handles, batch_size=batch_size, batches=batches)
    return {name: sums[name] / batches for name in layers}


def _patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's inputs as the rows its weight matrix multiplies: (groups, n, d), float32."""
    x = x.float()
    if isinstance(layer, nn.Linear):
        return x.reshape(1, -1, x.shape[-1])
    padding = layer.padding
    if isinstance(padding, str):  # 'valid', or 'same' (stride 1)
        padding = 0 if padding == "valid" else tuple(
            dilation * (kernel - 1) // 2 for kernel, dilation in zip(layer.kernel_size, layer.dilation))
    columns = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride)
    groups = layer.groups
    per_group = columns.shape[1] // groups
    # (N, groups * d, L) -> (groups, N * L, d): the column order is (channel, kernel row, kernel col),
    # as weight.reshape(out_channels, -1) orders a group's columns.
    return columns.reshape(columns.shape[0], groups, per_group, -1).permute(1, 0, 3, 2).reshape(groups, -1, per_group)


def gptq_levels(values: np.ndarray, scales: np.ndarray, max_level: int, moments: torch.Tensor) -> np.ndarray:
    """int8 levels of `values` (the weight tensor, output channels first) on the grid `scales` (one, or
    one per output channel), chosen by GPTQ against the input moments (groups, d, d)."""
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
    return levels.T.reshape(values.shape).astype(np.int8)


def _inverse_upper_factor(moments: torch.Tensor) -> np.ndarray:
    """Upper-triangular U with Uᵀ U = (moments + damping)⁻¹: row i holds how column i's rounding error
    moves the later columns. In float32, as GPTQ computes it: the factorizations dominate its time."""
    moments = moments.float().clone()
    diagonal = torch.diagonal(moments)
    diagonal[diagonal <= 0] = 1.0  # an input the noise never reached: its weights are rounded alone
    diagonal += DAMPING * diagonal.mean()
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(moments))
    return torch.linalg.cholesky(inverse, upper=True).double().numpy()


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
