"""Data-free bias correction: undo the mean shift that weight quantization puts on each layer's output.

Rounding errors ΔW are small and zero-mean per weight, but their sum against the layer's mean input does
not vanish: output channel o moves by E[ΔW·x]_o = Σ_i ΔW[o, i] E[x_i] on every input. Where a BatchNorm
follows the layer, adding that shift to its running mean cancels it exactly; a layer with its own bias
absorbs it in the bias. (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019.)

No data is used. E[x] comes from one pass of Gaussian noise through the model with every BatchNorm
normalizing by its batch statistics: each BatchNorm output then has exactly its stored mean (beta) and
spread (gamma) per channel, as real inputs would give it, and the ReLUs, residual sums and pooling after
it shape the means each later layer sees. Only tensors that the file stores uncoded change (running means,
biases); the coded weights are those the codec returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

SEED = 0  # the noise is fixed: the same model gives the same corrections
# Spatial sides of the noise images are capped: BatchNorm-driven means do not depend on image size,
# and a 224x224 pass through a ResNet-50 would cost seconds for nothing.
MAX_NOISE_SIDE = 64


@dataclass(frozen=True)
class Target:
    tensor: str  # the uncoded tensor that absorbs the shift: a BatchNorm's running_mean or the layer's bias
    sign: int  # +1 for a running mean (subtracted inside BatchNorm), -1 for a bias (added)


@dataclass
class BiasCorrection:
    input_means: dict[str, torch.Tensor]  # coded weight name -> mean of each of its layer's inputs
    targets: dict[str, Target]  # coded weight name -> where its output shift goes
    groups: dict[str, int]  # coded weight name -> the convolution's groups (1 for linear layers)
    uncorrectable: list[str]  # coded weights with neither a following BatchNorm nor a bias

    @classmethod
    def estimate(cls, module: nn.Module, coded: list[str], input_shape: tuple[int, ...], *,
                 batch_size: int = 32, batches: int = 2) -> BiasCorrection:
        """Input means of the layers owning the `coded` weights, from BatchNorm-driven noise.

        `input_shape` is one input, channels first (e.g. (3, 224, 224)); sides above MAX_NOISE_SIDE are capped.
        """
        layers = coded_layers(module, coded, "bias correction")
        layer_names = {id(layers[name]): name for name in coded}
        sums: dict[str, torch.Tensor] = {}
        # Outputs are kept referenced during the pass, so that an id is never reused by another tensor.
        producer_of_output: dict[int, tuple[torch.Tensor, str]] = {}
        batchnorm_after: dict[str, str] = {}
        handles = []

        def record_input(layer, inputs):
            x = inputs[0]
            name = layer_names[id(layer)]
            mean = x.double().mean(dim=[0, *range(2, x.dim())])
            sums[name] = sums.get(name, 0) + mean

        def record_output(layer, inputs, output):
            producer_of_output[id(output)] = (output, layer_names[id(layer)])

        def note_batchnorm(name):
            def hook(layer, inputs):
                tensor, producer = producer_of_output.get(id(inputs[0]), (None, None))
                if tensor is inputs[0]:
                    batchnorm_after.setdefault(producer, name)
            return hook

        batchnorms = {name: layer for name, layer in module.named_modules()
                      if isinstance(layer, nn.modules.batchnorm._BatchNorm)}
        for name in coded:
            handles.append(layers[name].register_forward_pre_hook(record_input))
            handles.append(layers[name].register_forward_hook(record_output))
        for name, layer in batchnorms.items():
            handles.append(layer.register_forward_pre_hook(note_batchnorm(name)))
        drive_with_noise(module, input_shape, handles, batch_size=batch_size, batches=batches)

        state = module.state_dict()
        targets, uncorrectable = {}, []
        for name in coded:
            layer_name = name[: -len(".weight")]
            if f"{layer_name}.bias" in state and layers[name].bias is not None:
                targets[name] = Target(f"{layer_name}.bias", -1)
            elif name in batchnorm_after and f"{batchnorm_after[name]}.running_mean" in state:
                targets[name] = Target(f"{batchnorm_after[name]}.running_mean", +1)
            else:
                uncorrectable.append(name)
        missing = [name for name in coded if name not in sums]
        if missing:
            raise InputError(f"bias correction: the forward pass of {type(module).__name__} never reached "
                             f"{', '.join(map(repr, missing[:5]))}")
        means = {name: (sums[name] / batches).float() for name in coded}
        groups = {name: getattr(layers[name], "groups", 1) for name in coded}
        return cls(means, targets, groups, uncorrectable)

    def corrected(self, original: dict[str, torch.Tensor],
                  reconstructed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """New values of the absorbing tensors, for the coded weights as the decoder will see them."""
        updated: dict[str, torch.Tensor] = {}
        for name, target in self.targets.items():
            error = reconstructed[name].double() - original[name].double()
            shift = output_shift(error, self.input_means[name].double(), self.groups[name])
            base = updated.get(target.tensor, original[target.tensor])
            updated[target.tensor] = (base.double() + target.sign * shift).to(original[target.tensor].dtype)
        return updated


def output_shift(error: torch.Tensor, input_means: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """E[ΔW·x] per output channel: the weight error summed over the kernel, against the input means."""
    per_input = error.reshape(error.shape[0], error.shape[1], -1).sum(dim=2) if error.dim() > 2 else error
    outputs, inputs_per_group = per_input.shape
    if input_means.numel() != inputs_per_group * groups:
        raise InputError(f"bias correction: a layer with {inputs_per_group * groups} inputs saw "
                         f"{input_means.numel()} input means")
    grouped = input_means.reshape(groups, inputs_per_group)
    owner = torch.arange(outputs) // (outputs // groups)
    return (per_input * grouped[owner]).sum(dim=1)


def coded_layers(module: nn.Module, coded: list[str], purpose: str) -> dict[str, nn.Module]:
    """The convolution or linear layer owning each coded weight name."""
    layers = {f"{name}.weight": layer for name, layer in module.named_modules()
              if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))}
    unknown = [name for name in coded if name not in layers]
    if unknown:
        raise InputError(f"{purpose}: {', '.join(map(repr, unknown[:5]))} is not the weight of a "
                         f"convolution or linear layer of {type(module).__name__}")
    return {name: layers[name] for name in coded}


def drive_with_noise(module: nn.Module, input_shape: tuple[int, ...], handles: list, *,
                     batch_size: int = 32, batches: int = 2) -> None:
    """Run the fixed Gaussian noise through `module` with every BatchNorm normalizing by its batch.

    The caller's hooks (`handles`) record what they need on the way; they are removed afterwards, with
    the BatchNorm hooks, and the module is left in the mode it was in. Sides of `input_shape` (one
    input, channels first) above MAX_NOISE_SIDE are capped.
    """
    input_shape = (input_shape[0], *(min(side, MAX_NOISE_SIDE) for side in input_shape[1:]))
    handles = handles + [layer.register_forward_hook(_normalize_by_batch) for layer in module.modules()
                         if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
    was_training = module.training
    module.eval()
    generator = torch.Generator().manual_seed(SEED)
    try:
        with torch.no_grad():
            for _ in range(batches):
                module(torch.randn(batch_size, *input_shape, generator=generator))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)


def _normalize_by_batch(layer, inputs, output):
    """Replace an eval-mode BatchNorm's output with one normalized by the batch's own statistics."""
    return F.batch_norm(inputs[0], None, None, layer.weight, layer.bias, True, 0.0, layer.eps)
