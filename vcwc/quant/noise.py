"""Statistics of each layer's inputs from one pass of inputs through the model.

The data-free methods need, for each coded layer, the mean of its inputs (bias correction) or their
second moments E[x xᵀ] (gptq rounding). Without data they come from fixed Gaussian noise run through
the model with every BatchNorm normalizing by the batch's own statistics: each BatchNorm output then has
exactly its stored mean (beta) and spread (gamma) per channel, as real inputs would give it, and the
ReLUs, residual sums and pooling after it shape what each later layer sees. A model that takes token
ids gets random tokens instead, and real inputs may replace either (vcwc.quant.inputs). One pass collects
everything.

A coded tensor that is not the weight of a convolution or linear layer (an embedding table, an
attention block's packed projection) gets no statistics; the methods leave it to nearest rounding and
no correction, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .inputs import GaussianNoise, attended_positions, kept_positions, pass_failed

# Patches kept per batch for a convolution's moments: enough for a stable estimate, bounded in memory.
MAX_PATCHES = 1 << 16
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
# gptq serves these; Conv3d and the transposed convolutions (bias correction only) keep nearest rounding
MOMENT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
# A layer's moments are (groups, d, d) float32 and its factorization takes d³/3 operations: 16,384 columns
# take 1 GiB and 1.5 x 10^12 operations; a layer of 65,536 columns (a 1024-channel convolution with a 64-tap
# kernel) would need 16 GiB and 64 times the operations.
MAX_MOMENT_BYTES = 1 << 30


@dataclass
class NoiseStatistics:
    layers: dict[str, nn.Module]  # coded weight name -> the layer that owns it
    unserved: dict[str, str]  # coded weight name -> why the methods cannot serve it
    means: dict[str, torch.Tensor] = field(default_factory=dict)  # mean of each input channel, float32
    moments: dict[str, torch.Tensor] = field(default_factory=dict)  # (groups, d, d) float32
    no_moments: dict[str, str] = field(default_factory=dict)  # a served layer whose moments were not kept, and why
    batchnorm_after: dict[str, str] = field(default_factory=dict)  # the BatchNorm fed by the layer's output


def owning_layers(module: nn.Module, coded: list[str]) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The convolution or linear layer owning each coded weight, and why the others have none."""
    owners = {
        f"{name}.weight" if name else "weight": layer
        for name, layer in module.named_modules()
        if isinstance(layer, LAYER_TYPES)
    }
    kinds = {}
    for name, child in module.named_modules():
        for parameter_name, _ in child.named_parameters(recurse=False):
            kinds[f"{name}.{parameter_name}" if name else parameter_name] = type(child).__name__
    layers, unserved = {}, {}
    for name in coded:
        if name in owners:
            layers[name] = owners[name]
        else:
            owner = kinds.get(name)
            unserved[name] = (
                f"a parameter of {owner}, not the weight of a convolution or linear layer"
                if owner
                else f"not a parameter of {type(module).__name__}"
            )
    return layers, unserved


def noise_statistics(
    module: nn.Module,
    coded: list[str],
    driver,
    *,
    means: bool = False,
    moments: bool = False,
    moment_budget: int | None = None,
) -> NoiseStatistics:
    """Input means and/or second moments of the layers owning the `coded` weights, over the batches of
    `driver` (vcwc.quant.inputs), or of Gaussian noise when `driver` is one input's shape."""
    if isinstance(driver, tuple):
        driver = GaussianNoise(driver)
    recorder = StatisticsRecorder(module, coded, means=means, moments=moments, moment_budget=moment_budget)
    drive(module, driver, recorder.attach())
    return recorder.result()


class StatisticsRecorder:
    """Hooks that record the statistics of `noise_statistics` during any pass of the driver's batches
    (its own, or the sensitivity pass, which then spares a second one)."""

    def __init__(
        self,
        module: nn.Module,
        coded: list[str],
        *,
        means: bool = False,
        moments: bool = False,
        moment_budget: int | None = None,
    ):
        """`moment_budget`: bytes the moments of all layers may take together (None: no limit); the layers
        past it, in the model's order, keep no moments (and so nearest rounding), named in `no_moments`."""
        self.module, self.want_means = module, means
        layers, unserved = owning_layers(module, coded)
        self.stats = NoiseStatistics(layers, unserved)
        self.names = {id(layer): name for name, layer in layers.items()}
        self.moment_layers = _moment_layers(layers, moment_budget, self.stats.no_moments) if moments else set()
        self.generator = torch.Generator().manual_seed(0)
        self.mean_sums: dict[str, torch.Tensor] = {}
        self.moment_sums: dict[str, torch.Tensor] = {}
        # Outputs stay referenced during a forward pass, so that an id is never reused by another tensor.
        self.producer_of_output: dict[int, tuple[torch.Tensor, str]] = {}
        self.batches = 0
        self.keep: torch.Tensor | None = None  # the token positions of this batch that count

    def attach(self) -> list:
        """Register the hooks; the pass that runs the batches removes them."""
        handles = [self.module.register_forward_pre_hook(self._count_batch, with_kwargs=True)]
        for layer in {id(layer): layer for layer in self.stats.layers.values()}.values():
            handles.append(layer.register_forward_hook(self._record))
        for name, layer in self.module.named_modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                handles.append(layer.register_forward_pre_hook(self._note_batchnorm(name)))
        return handles

    def result(self) -> NoiseStatistics:
        stats, batches = self.stats, max(1, self.batches)
        for name in stats.layers:
            if name not in self.mean_sums and name not in self.moment_sums:
                stats.unserved[name] = "the forward pass never reached its layer"
        stats.layers = {name: layer for name, layer in stats.layers.items() if name not in stats.unserved}
        stats.means = {n: (total / batches).float() for n, total in self.mean_sums.items() if n in stats.layers}
        stats.moments = {n: total / batches for n, total in self.moment_sums.items() if n in stats.layers}
        self.producer_of_output.clear()
        return stats

    def _count_batch(self, module, args, kwargs):
        self.batches += 1
        self.keep = attended_positions(kwargs)
        self.producer_of_output.clear()  # a BatchNorm's producer is found within one forward pass

    @torch.no_grad()
    def _record(self, layer, inputs, output):
        """The layer's input statistics, after its forward pass: its output's size tells the padding a layer
        did itself (TF-style "same" padding in its own forward) from the padding it declares."""
        name = self.names[id(layer)]
        self.producer_of_output[id(output)] = (output, name)
        x = inputs[0].detach()
        if isinstance(layer, nn.Linear):
            x = kept_positions(x, self.keep)
        if self.want_means:
            channels = x.shape[-1] if isinstance(layer, nn.Linear) else x.shape[1]
            mean = (
                x.reshape(-1, channels).mean(dim=0, dtype=torch.float64)
                if isinstance(layer, nn.Linear)
                else x.mean(dim=[0, *range(2, x.dim())], dtype=torch.float64)
            )
            self.mean_sums[name] = self.mean_sums.get(name, 0) + mean
        if name in self.moment_layers:
            output_size = tuple(output.shape[2:]) if isinstance(output, torch.Tensor) else None
            patches = layer_patches(layer, x, output_size)  # (groups, n, d)
            if patches.shape[1] > MAX_PATCHES:
                keep = torch.randperm(patches.shape[1], generator=self.generator)[:MAX_PATCHES]
                patches = patches[:, keep]
            moment = patches.transpose(1, 2) @ patches / patches.shape[1]
            sums = self.moment_sums
            sums[name] = sums[name] + moment if name in sums else moment

    def _note_batchnorm(self, name):
        def hook(layer, inputs):
            tensor, producer = self.producer_of_output.get(id(inputs[0]), (None, None))
            if tensor is inputs[0]:
                self.stats.batchnorm_after.setdefault(producer, name)

        return hook


def _moment_layers(layers: dict[str, nn.Module], budget: int | None, refused: dict[str, str]) -> set[str]:
    """The coded weights whose layers get moments: a layer gptq serves, within MAX_MOMENT_BYTES and, in
    the model's order, within `budget`; the reasons for the others go to `refused`."""
    kept, spent = set(), 0
    for name, layer in layers.items():
        if not isinstance(layer, MOMENT_TYPES):
            refused[name] = f"gptq serves Conv1d, Conv2d and Linear layers, not {type(layer).__name__}"
            continue
        columns = layer.weight[0].numel()  # of one group's weight matrix
        size = 4 * getattr(layer, "groups", 1) * columns**2  # (groups, d, d) float32
        if size > MAX_MOMENT_BYTES:
            refused[name] = (
                f"its inputs have {columns:,} columns: gptq's moments would take "
                f"{size / 2**30:.1f} GiB (at most {MAX_MOMENT_BYTES / 2**30:g})"
            )
        elif budget is not None and spent + size > budget:
            refused[name] = f"the moments of the layers before it fill the {budget / 2**30:.1f} GiB of memory left"
        else:
            kept.add(name)
            spent += size
    return kept


def drive(module: nn.Module, driver, handles: list) -> int:
    """Run the driver's batches through `module` and return how many ran; noise drivers make every BatchNorm
    normalize by its batch.

    The caller's hooks (`handles`) record what they need on the way; they are removed afterwards, with
    the BatchNorm hooks, and the module is left in the mode it was in.
    """
    if driver.normalize_batchnorm:
        handles = handles + [
            layer.register_forward_hook(_normalize_by_batch)
            for layer in module.modules()
            if isinstance(layer, nn.modules.batchnorm._BatchNorm)
        ]
    was_training = module.training
    module.eval()
    count = 0
    try:
        with torch.no_grad():
            for batch in driver:
                try:
                    module(*batch.args, **batch.kwargs)
                except Exception as exc:  # the user's model: any failure is named, never a crash
                    raise pass_failed(module, driver, batch, exc) from None
                count += 1
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return count


def _normalize_by_batch(layer, inputs, output):
    """Replace an eval-mode BatchNorm's output with one normalized by the batch's own statistics."""
    return F.batch_norm(inputs[0], None, None, layer.weight, layer.bias, True, 0.0, layer.eps)


def layer_patches(layer: nn.Module, x: torch.Tensor, output_size: tuple[int, ...] | None = None) -> torch.Tensor:
    """A layer's inputs as the rows its weight matrix multiplies: (groups, n, d), float32.

    Linear layers take any leading dimensions (tokens); convolutions any kernel, stride, dilation,
    groups and padding, in the column order of weight.reshape(out_channels, -1). `output_size` (the
    convolution's output, spatial dimensions) reveals padding the layer adds in its own forward beyond
    what it declares, as TF ports pad for "same" (the extra pixel at the end); the input is padded so.
    """
    x = x.float()
    if isinstance(layer, nn.Linear):
        return x.reshape(1, -1, x.shape[-1])
    if isinstance(layer, nn.Conv1d):
        x = x.unsqueeze(2)
        kernel, dilation, stride = (1, *layer.kernel_size), (1, *layer.dilation), (1, *layer.stride)
        padding = layer.padding if isinstance(layer.padding, str) else (0, *layer.padding)
        output_size = None if output_size is None else (1, *output_size)
    else:
        kernel, dilation, stride, padding = layer.kernel_size, layer.dilation, layer.stride, layer.padding
    if output_size is not None and not isinstance(padding, str):
        x = _pad_in_forward(x, output_size, kernel, dilation, stride, padding)
    if isinstance(padding, str):  # 'valid', or 'same' (stride 1; torch pads the extra pixel at the end)
        if padding == "valid":
            padding = (0, 0)
        else:
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            x = F.pad(x, [p for t in reversed(total) for p in (t // 2, t - t // 2)])
            padding = (0, 0)
    if layer.padding_mode != "zeros" and any(padding):
        pads = [p for p in reversed(padding) for _ in range(2)]
        x = F.pad(x, pads, mode=layer.padding_mode)
        padding = (0, 0)
    columns = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    groups = layer.groups
    per_group = columns.shape[1] // groups
    # (N, groups * d, L) -> (groups, N * L, d): the column order is (channel, kernel row, kernel col),
    # as weight.reshape(out_channels, -1) orders a group's columns.
    return columns.reshape(columns.shape[0], groups, per_group, -1).permute(1, 0, 3, 2).reshape(groups, -1, per_group)


def _pad_in_forward(x: torch.Tensor, output_size, kernel, dilation, stride, padding) -> torch.Tensor:
    """`x` zero-padded by what the layer's output size needs beyond its declared padding (none for a
    standard convolution), half before and the rest after, as TF's "same" padding does."""
    extra = []
    for size, out, k, d, s, p in zip(x.shape[2:], output_size, kernel, dilation, stride, padding):
        needed = max((out - 1) * s + d * (k - 1) + 1 - size - 2 * p, 0)
        extra.append((needed // 2, needed - needed // 2))
    if not any(before or after for before, after in extra):
        return x
    return F.pad(x, [side for pair in reversed(extra) for side in pair])
