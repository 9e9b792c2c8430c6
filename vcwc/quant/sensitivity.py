"""How much each coded tensor's quantization error moves the model's output, without data.

For a weight w of tensor t, the output's squared change under a small error e is about (∂f/∂w)² e², so
the mean over t of the squared gradient measures its sensitivity (the diagonal of the Gauss-Newton
matrix JᵀJ, averaged over the tensor). It is estimated with random projections r of the output:
E_r[(∂(rᵀf)/∂w)²] = Σ_k (∂f_k/∂w)², one backward pass per probe, over the same inputs the other
data-free methods use (noise with every BatchNorm normalized by its batch, random tokens, or real
inputs; vcwc.quant.inputs). Each batch's values are divided by their mean over the coded weights before
they are summed: the allocation needs the tensors' shares, and a batch of random inputs that drives the
model where its gradients are huge must not set them alone.

With uniform noise of step Δ_t in tensor t, the output error is Σ_t s_t n_t Δ_t² / 12; for a fixed
number of bits the best steps satisfy Δ_t ∝ s_t^(-1/2) (equal slopes), which `step_offsets` turns into
step-QP offsets around the recipe's base (4 QPs per octave of step, so offset = -2 log2(s_t / s̄)),
centred so that the weight-weighted geometric mean of the steps is the base: the ladder of base step QPs
keeps its meaning.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from .inputs import attended_positions, pass_failed
from .noise import _normalize_by_batch

PROBES = 2  # random projections of the output per batch
MAX_OFFSET = 8.0  # step QPs either side of the base: a tensor's step stays within 4x of the base step
# Steps per column: (c_j / mean c)^-1/4, the square root of the high-rate rule's factor (exponent 1/2), which
# measured better on a sentence encoder and as well on a language model (scripts/explore_column_steps.py);
# within 4x of the tensor's step.
COLUMN_STRENGTH = 0.25
MAX_COLUMN_OCTAVES = 2.0
# Factors sit on eighth octaves (half a step QP apart) so that their float32 values repeat and the
# quantizer blob compresses them to a few bits each; a tensor of fewer rows than this keeps one step per
# column (zstd leaves its column scales a few bits each: past 1/16 bit per weight below 128 rows).
COLUMN_GRID = 8
MIN_COLUMN_ROWS = 128


def output_tensor(output) -> torch.Tensor:
    """The main tensor of a model's output: itself, `logits` or `last_hidden_state`, or the first item."""
    if isinstance(output, torch.Tensor):
        return output
    for key in ("logits", "last_hidden_state"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, dict) and output:
        return output_tensor(next(iter(output.values())))
    if isinstance(output, (tuple, list)) and output:
        return output_tensor(output[0])
    raise InputError(f"the model's output ({type(output).__name__}) holds no tensor to measure sensitivity on")


def sensitivities(
    module: nn.Module,
    coded: list[str],
    driver,
    probes: int = PROBES,
    handles: list = (),
    combine=None,
    columns: dict[str, torch.Tensor] | None = None,
    rows: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Mean squared output gradient of each coded tensor that the model's forward pass reaches. `handles`:
    hooks the caller registered to record more on the same pass (vcwc.quant.noise.StatisticsRecorder),
    removed at the end. `combine(sums, batch, sizes)` folds each batch's values into the sums (default:
    `add_batch_alike`). A dict given as `columns` is filled with each tensor's squared gradients summed
    over the rows of its weight matrix (shape[0], -1): one value per column (input feature), each batch
    weighted as `add_batch_alike` weights it; a dict given as `rows`, with the sums over its columns: one
    value per row (output channel)."""
    combine = combine or add_batch_alike
    parameters = dict(module.named_parameters(remove_duplicate=False))
    wanted = {name: parameters[name] for name in coded if name in parameters}
    sums: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    handles = list(handles)
    if driver.normalize_batchnorm:
        handles += [
            layer.register_forward_hook(_normalize_by_batch)
            for layer in module.modules()
            if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        ]
    # Each gradient is folded into its tensor's sum as soon as it is complete and dropped, so the pass
    # never holds a gradient for every weight at once (a model's worth of memory on a large LM).
    names_of: dict[int, list[str]] = {}
    for name, parameter in wanted.items():
        names_of.setdefault(id(parameter), []).append(name)

    batch_sums: dict[str, float] = {}
    batch_columns: dict[str, torch.Tensor] = {}
    batch_rows: dict[str, torch.Tensor] = {}

    def fold(parameter):
        grad = parameter.grad.reshape(-1)
        if columns is None and rows is None:
            column_sums = row_sums = None
            squares = torch.linalg.vector_norm(grad, dtype=torch.float64) ** 2
        else:
            column_sums, row_sums = squares_by_line(parameter.grad, rows=rows is not None)
            squares = column_sums.sum()
        value = float(squares) / grad.numel()
        for name in names_of[id(parameter)]:
            batch_sums[name] = batch_sums.get(name, 0.0) + value
            if columns is not None:
                batch_columns[name] = batch_columns.get(name, 0.0) + column_sums
            if rows is not None:
                batch_rows[name] = batch_rows.get(name, 0.0) + row_sums
        parameter.grad = None

    handles += [
        parameter.register_post_accumulate_grad_hook(fold) for parameter in {id(p): p for p in wanted.values()}.values()
    ]
    flags = {name: parameter.requires_grad for name, parameter in module.named_parameters()}
    was_training = module.training
    module.eval()
    try:
        for parameter in module.parameters():
            parameter.requires_grad_(any(parameter is w for w in wanted.values()))
        for batch in driver:
            # The user's model: any failure is named, never a crash.
            try:
                output = output_tensor(module(*batch.args, **batch.kwargs)).float()
            except InputError:
                raise
            except Exception as exc:
                raise pass_failed(module, driver, batch, exc) from None
            keep = attended_positions(batch.kwargs)
            for probe in range(probes):
                projection = torch.randn(output.shape, generator=generator)
                if keep is not None and tuple(output.shape[:2]) == tuple(keep.shape):
                    # padding's outputs count for nothing
                    projection *= keep.reshape(*keep.shape, *[1] * (output.dim() - 2))
                module.zero_grad(set_to_none=True)
                try:
                    (output * projection).sum().backward(retain_graph=probe < probes - 1)
                except Exception as exc:
                    raise pass_failed(module, driver, batch, exc, "backward pass (sensitivity)") from None
            sizes = {name: wanted[name].numel() for name in batch_sums}
            combine(sums, dict(batch_sums), sizes)
            weight = batch_weight(batch_sums, sizes)
            for wanted_sums, batch_lines in ((columns, batch_columns), (rows, batch_rows)):
                if wanted_sums is not None and weight is not None:
                    for name, line_sums in batch_lines.items():
                        wanted_sums[name] = wanted_sums.get(name, 0.0) + line_sums * weight
            batch_sums.clear()
            batch_columns.clear()
            batch_rows.clear()
    finally:
        for handle in handles:
            handle.remove()
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(flags[name])
            parameter.grad = None
        module.train(was_training)
    totals = {name: sums[name] for name in wanted if name in sums}  # in the model's order, whatever backward's
    return {name: total for name, total in totals.items() if total > 0 and math.isfinite(total)}


def squares_by_line(
    grad: torch.Tensor, rows: bool = False, block_elements: int = 1 << 22
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Squared gradients of the matrix (shape[0], -1) summed over its rows (one per column) and, with
    `rows`, over its columns (one per row; else None), in float64 a block of rows at a time: never a float64
    copy of a whole embedding table."""
    matrix = grad.reshape(grad.shape[0], -1)
    by_column = torch.zeros(matrix.shape[1], dtype=torch.float64)
    by_row = [] if rows else None
    for block in matrix.split(max(1, block_elements // max(1, matrix.shape[1]))):
        squares = block.double().square()
        by_column += squares.sum(0)
        if by_row is not None:
            by_row.append(squares.sum(1))
    return by_column, None if by_row is None else torch.cat(by_row)


def add_batch_alike(sums: dict[str, float], batch: dict[str, float], sizes: dict[str, int]) -> None:
    """Add one batch's sensitivities to the sums, divided by the batch's mean over every coded weight: each
    batch counts alike. Random inputs now and then drive a model where its gradients are orders of
    magnitude larger, and summed as they are, that one batch would set every tensor's share
    (scripts/explore_sensitivity_batches.py measures both ways)."""
    weight = batch_weight(batch, sizes)
    if weight is None:
        return  # a batch the output does not depend on (or that overflowed) says nothing of the shares
    for name, value in batch.items():
        sums[name] = sums.get(name, 0.0) + value * weight


def batch_weight(batch: dict[str, float], sizes: dict[str, int]) -> float | None:
    """1 / the batch's mean sensitivity over every coded weight, or None where it is 0 or not finite."""
    total = sum(sizes[name] * value for name, value in batch.items())
    if not (total > 0 and math.isfinite(total)):
        return None
    return sum(sizes.values()) / total


def step_offsets(sensitivity: dict[str, float], weights: dict[str, int], limit: float = MAX_OFFSET) -> dict[str, float]:
    """Step-QP offsets -2 log2(s_t), clamped to ±limit and centred: their weight-weighted mean is 0, so the
    weight-weighted geometric mean of the steps stays the base step."""
    if not sensitivity:
        return {}
    total = sum(weights[name] for name in sensitivity)
    offsets = {name: -2.0 * math.log2(value) for name, value in sensitivity.items()}
    for _ in range(50):  # clamping moves the centre; a few rounds settle it
        center = sum(weights[name] * offset for name, offset in offsets.items()) / total
        offsets = {name: max(-limit, min(limit, offset - center)) for name, offset in offsets.items()}
        if abs(center) < 1e-9:
            break
    return offsets


def column_factors(
    sums: torch.Tensor, strength: float = COLUMN_STRENGTH, limit: float = MAX_COLUMN_OCTAVES
) -> torch.Tensor:
    """Step factors of a tensor's columns from their sensitivities (`sensitivities(columns=...)`):
    (sums / their mean)^-strength, within 2^limit either way, with geometric mean 1 (the tensor's step
    stays the centre) before they are put on eighth octaves. float32."""
    sums = sums.double().clamp_min(float(sums.double().mean()) * 1e-12)
    octaves = -strength * torch.log2(sums / sums.mean())
    for _ in range(20):  # clamping moves the centre; a few rounds settle it
        octaves = (octaves - octaves.mean()).clamp(-limit, limit)
    return torch.exp2(torch.round((octaves - octaves.mean()) * COLUMN_GRID) / COLUMN_GRID).float()
