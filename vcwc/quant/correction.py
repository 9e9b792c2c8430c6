"""Data-free bias correction: undo the mean shift that weight quantization puts on each layer's output.

Rounding errors ΔW are small and zero-mean per weight, but their sum against the layer's mean input does
not vanish: output channel o moves by E[ΔW·x]_o = Σ_i ΔW[o, i] E[x_i] on every input. Where a BatchNorm
follows the layer, adding that shift to its running mean cancels it exactly; a layer with its own bias
absorbs it in the bias. (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019.)

A transposed convolution (weight (in, out/groups, k...)) scatters each input over k taps at `stride`
steps, so an output position takes prod(k / stride) of them on average: its mean shift is the same sum
over the kernel divided by the product of the strides (positions in different phases of the stride take
different taps; a bias can only cancel their mean).

No data is used: E[x] comes from the noise pass of vcwc.quant.noise. Only tensors that the file stores
uncoded change (running means, biases); the coded weights are those the codec returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError
from .noise import NoiseStatistics


@dataclass(frozen=True)
class Target:
    tensor: str  # the uncoded tensor that absorbs the shift: a BatchNorm's running_mean or the layer's bias
    sign: int  # +1 for a running mean (subtracted inside BatchNorm), -1 for a bias (added)


@dataclass
class BiasCorrection:
    input_means: dict[str, torch.Tensor]  # coded weight name -> mean of each of its layer's inputs
    targets: dict[str, Target]  # coded weight name -> where its output shift goes
    groups: dict[str, int]  # coded weight name -> the convolution's groups (1 for linear layers)
    uncorrectable: dict[str, str]  # coded weight name -> why its shift cannot be absorbed
    transposed_strides: dict[str, int] = field(default_factory=dict)  # transposed convolutions: prod(stride)

    @classmethod
    def from_statistics(cls, stats: NoiseStatistics, state_names: set[str], coded: set[str]) -> BiasCorrection:
        """Where each coded layer's shift goes: its own bias, else the running mean of the BatchNorm it feeds.

        A target must be a tensor the file stores uncoded (`state_names` minus `coded`).
        """
        targets, uncorrectable = {}, dict(stats.unserved)
        for name, layer in stats.layers.items():
            layer_name = name[: -len(".weight")] if name.endswith(".weight") else ""
            bias = f"{layer_name}.bias" if layer_name else "bias"
            running_mean = f"{stats.batchnorm_after.get(name)}.running_mean"
            if layer.bias is not None and bias in state_names and bias not in coded:
                targets[name] = Target(bias, -1)
            elif name in stats.batchnorm_after and running_mean in state_names and running_mean not in coded:
                targets[name] = Target(running_mean, +1)
            else:
                uncorrectable[name] = "neither a bias of its own nor a BatchNorm after it"
        groups = {name: getattr(layer, "groups", 1) for name, layer in stats.layers.items()}
        means = {name: stats.means[name] for name in stats.layers if name in stats.means}
        transposed = {
            name: math.prod(layer.stride)
            for name, layer in stats.layers.items()
            if isinstance(layer, nn.modules.conv._ConvTransposeNd)
        }
        return cls(means, targets, groups, uncorrectable, transposed)

    def shift(self, name: str, original: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
        """The output shift of one coded layer, for its weights as the decoder will return them."""
        error = reconstructed.double() - original.double()
        groups, means = self.groups[name], self.input_means[name].double()
        if name in self.transposed_strides:
            return output_shift(forward_kernel(error, groups), means, groups) / self.transposed_strides[name]
        return output_shift(error, means, groups)

    def apply(self, targets: dict[str, torch.Tensor], shifts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """New values of the absorbing tensors (`targets`: their current values) given each layer's shift."""
        updated: dict[str, torch.Tensor] = {}
        for name, target in self.targets.items():
            if name not in shifts:
                continue
            base = updated.get(target.tensor, targets[target.tensor])
            updated[target.tensor] = (base.double() + target.sign * shifts[name]).to(targets[target.tensor].dtype)
        return updated

    def corrected(
        self, original: dict[str, torch.Tensor], reconstructed: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """New values of the absorbing tensors, for the coded weights as the decoder will see them."""
        shifts = {
            name: self.shift(name, original[name], reconstructed[name])
            for name in self.targets
            if name in reconstructed
        }
        return self.apply(original, shifts)


def output_shift(error: torch.Tensor, input_means: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """E[ΔW·x] per output channel: the weight error summed over the kernel, against the input means."""
    per_input = error.reshape(error.shape[0], error.shape[1], -1).sum(dim=2) if error.dim() > 2 else error
    outputs, inputs_per_group = per_input.shape
    if input_means.numel() != inputs_per_group * groups:
        raise InputError(
            f"bias correction: a layer with {inputs_per_group * groups} inputs saw {input_means.numel()} input means"
        )
    grouped = input_means.reshape(groups, inputs_per_group)
    owner = torch.arange(outputs) // (outputs // groups)
    return (per_input * grouped[owner]).sum(dim=1)


def forward_kernel(transposed: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """A transposed convolution's weight (in, out/groups, k...) as (out, in/groups, k...), the layout of a
    convolution's: the taps each output channel takes from each input channel of its group."""
    inputs, outputs_per_group, *kernel = transposed.shape
    grouped = transposed.reshape(groups, inputs // groups, outputs_per_group, *kernel).transpose(1, 2)
    return grouped.reshape(groups * outputs_per_group, inputs // groups, *kernel)
