"""The data-free methods a resolved recipe asks for, applied to the model at hand.

gptq rounding needs each coded layer's input moments and the bias correction its input means; both
come from one pass of noise through the model (vcwc.quant.noise), which needs the architecture. A
tensor a method cannot serve (not a layer's weight, never reached, no bias or BatchNorm to absorb
the shift) is left to nearest rounding or no correction, and the report says which and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io import ModelSource
from ..models.build import Architecture, build_model, resolve
from ..models.huggingface import folder_architecture
from ..models.registry import NO_ARCHITECTURE
from ..quant.correction import BiasCorrection
from ..quant.inputs import CalibrationInputs, WithProgress, driver_for
from ..quant.noise import StatisticsRecorder, drive
from ..quant.sensitivity import MIN_COLUMN_ROWS, column_factors, sensitivities, step_offsets
from ..recipe import Recipe
from ..recipe.settings import BY_SENSITIVITY

# The passes hold the model in float32 and its activations (with sensitivity, one tensor's gradient at a
# time): float32 weights dominate past a billion weights; activations of two random sequences at a time
# add little (SmolLM2-135M peaks at 1.8 GiB in all, results/llm).
PASS_MEMORY_FACTOR = 1.5
PASS_MEMORY_MARGIN = 2 << 30
# Every layer type gptq does not serve is named in the statistics; what is left is a layer whose inputs
# do not match the coded weight's matrix (`_fits`).
MOMENTS_MISMATCH = "its layer's inputs do not match its weight matrix (a weight tied to another layer's)"


def architecture_for(arch, input_shape, recipe: Recipe, source: ModelSource, notes: list[str]) -> Architecture | None:
    """The architecture given, else (where the recipe would use one) that of the Hugging Face folder the
    model was read from; None for weight-only (`arch="none"` asks for it)."""
    declined = ""
    if isinstance(arch, str) and arch == NO_ARCHITECTURE:
        arch = None
    elif arch is None and Path(source.source).exists() and recipe.could_use_architecture:
        shapes = {name: source.shape(name) for name in source.names}
        noted = len(notes)
        found = folder_architecture(source.source, shapes, notes)
        if found is not None:
            return replace(found, input_shape=tuple(input_shape) if input_shape else found.input_shape)
        declined = f" ({notes[-1]})" if len(notes) > noted else ""
    if arch is None:
        if recipe.needs_architecture:
            method = (
                "gptq rounding"
                if recipe.rounding == "gptq"
                else "bias correction"
                if recipe.bias_correction == "on"
                else "step allocation by sensitivity"
            )
            raise InputError(f"{method} needs the model's architecture (arch=...){declined}")
        return None
    return resolve(arch, input_shape)


def resolve_recipe(
    recipe: Recipe, codec: str, source: ModelSource, architecture: bool, calibration, notes: list[str]
) -> Recipe:
    """The recipe's "auto" choices made for this model (Recipe.resolved), with a note where the inputs or
    the model kept gptq rounding or the bias correction off."""
    real_inputs, batchnorm = calibration is not None, _has_batchnorm(source)
    everything = recipe.resolved(codec=codec, architecture=True, real_inputs=True, batchnorm=True)
    if architecture and everything.needs_architecture:
        architecture = _passes_fit(recipe, source, notes)
    resolved = recipe.resolved(codec=codec, architecture=architecture, real_inputs=real_inputs, batchnorm=batchnorm)
    if architecture and not batchnorm and resolved != everything:
        notes.append(
            "auto: bias correction stays off (the model has no BatchNorm)"
            if real_inputs
            else "auto: gptq rounding and bias correction stay off: without --calibration the model (no BatchNorm) "
            "is measured on random inputs, whose layer statistics are not its data's"
            + ("; dependent quantization instead" if resolved.rounding == "dependent" else "")
        )
    return resolved


def _passes_fit(recipe: Recipe, source: ModelSource, notes: list[str]) -> bool:
    """Whether the model, built in float32 for the passes of inputs, fits in the memory available. Where it
    would not, the "auto" methods stay off with a note, and methods asked for by name are an error: a
    clear message before the work, not the system's out-of-memory kill in the middle of it."""
    elements = sum(math.prod(source.shape(name)) for name in source.names if source.is_float(name))
    needed = PASS_MEMORY_FACTOR * 4 * elements + PASS_MEMORY_MARGIN
    available = available_memory()
    if available is None or needed <= available:
        return True
    sizes = f"about {needed / 2**30:.1f} GiB for the model's passes of inputs, {available / 2**30:.1f} GiB available"
    if recipe.needs_architecture:
        raise InputError(
            f"rounding gptq, bias correction on or allocation sensitivity need {sizes}; "
            "leave them to auto (weight-only) or use a machine with more memory"
        )
    notes.append(f"auto: the methods that run the model stay off (weight-only): they would need {sizes}")
    return False


def _moment_budget() -> int | None:
    """Memory gptq's moments may take, with the model already built: what is available, less room for
    the pass's activations and the factorizations."""
    available = available_memory()
    return None if available is None else max(0, available - PASS_MEMORY_MARGIN)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _has_batchnorm(source: ModelSource) -> bool:
    """BatchNorm layers normalize noise to the statistics they were trained on, so the data-free
    methods' layer statistics from noise resemble the data's (their buffers name them)."""
    return any(name.endswith(".running_var") for name in source.names)


@dataclass
class Methods:
    """What the noise pass found, and the report of which method served which tensor."""

    moments: dict[str, torch.Tensor] = field(default_factory=dict)
    step_offsets: dict[str, float] = field(default_factory=dict)  # step QPs added to the recipe's, per tensor
    column_steps: dict[str, np.ndarray] = field(default_factory=dict)  # step factors of tensors' columns
    correction: BiasCorrection | None = None
    report: dict = field(default_factory=dict)
    _shifts: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def gptq_served(self) -> set[str]:
        return set(self.moments)

    def observe(self, name: str):
        """What takes in one coded tensor as the decoder returns it (its output shift goes to its target),
        or None where there is nothing to correct."""
        if self.correction is None or name not in self.correction.targets:
            return None

        def shift(original: np.ndarray, reconstructed: np.ndarray) -> None:
            self._shifts[name] = self.correction.shift(
                name,
                torch.from_numpy(np.array(original, dtype=np.float32)),
                torch.from_numpy(np.array(reconstructed, dtype=np.float32)),
            )

        return shift

    def corrected(self, source: ModelSource) -> dict[str, torch.Tensor]:
        """New values of the tensors that absorb the coded weights' output shifts."""
        if self.correction is None:
            return {}
        targets = {target.tensor: source.tensor(target.tensor) for target in self.correction.targets.values()}
        return self.correction.apply(targets, self._shifts)


def prepare(
    source: ModelSource,
    coded: list[str],
    architecture: Architecture | None,
    rounding: str,
    bias_correction: bool,
    calibration: CalibrationInputs | None = None,
    allocation: str = "uniform",
    progress: bool = False,
) -> Methods:
    """Run the passes of inputs the methods need (none when no method is asked for): real inputs where
    given (`calibration`), else noise or random tokens (vcwc.quant.inputs)."""
    methods = Methods()
    if rounding != "gptq" and not bias_correction and allocation not in BY_SENSITIVITY:
        return methods
    module = build_model(architecture, source.state_dict())
    methods.report["architecture"] = {"name": architecture.name}
    driver = driver_for(module, architecture.input_shape, calibration)
    methods.report["inputs"] = driver.describe()
    if progress:
        driver = WithProgress(driver, f"running {architecture.name} on {driver.kind.replace('_', ' ')}")
    recorder = None
    if rounding == "gptq" or bias_correction:
        recorder = StatisticsRecorder(
            module, coded, means=bias_correction, moments=rounding == "gptq", moment_budget=_moment_budget()
        )
    if allocation in BY_SENSITIVITY:
        # One pass of the inputs serves both: the statistics are recorded on the sensitivity pass's forwards.
        columns = {} if allocation == "sensitivity_columns" else None
        measured = sensitivities(module, coded, driver, handles=recorder.attach() if recorder else (), columns=columns)
        weights = {name: math.prod(source.shape(name)) for name in coded}
        methods.step_offsets = step_offsets(measured, weights)
        methods.column_steps = {
            name: column_factors(sums).numpy()
            for name, sums in (columns or {}).items()
            if name in methods.step_offsets
            and len(source.shape(name)) >= 2
            and source.shape(name)[0] >= MIN_COLUMN_ROWS
        }
        methods.report["step_allocation"] = {
            "step_qp_offsets": {name: round(offset, 3) for name, offset in methods.step_offsets.items()},
            "base_step_instead": {
                name: "the model's output does not depend on it here"
                for name in coded
                if name not in methods.step_offsets
            },
        }
        if columns is not None:
            methods.report["step_allocation"]["column_steps"] = {
                name: _spread(factors) for name, factors in methods.column_steps.items()
            }
    elif recorder is not None:
        drive(module, driver, recorder.attach())
    if recorder is None:
        return methods
    stats = recorder.result()
    if rounding == "gptq":
        methods.moments = {name: moment for name, moment in stats.moments.items() if _fits(moment, source.shape(name))}
        methods.report["gptq_rounding"] = {
            "served": sorted(methods.moments, key=coded.index),
            "nearest_instead": {
                name: stats.unserved.get(name) or stats.no_moments.get(name, MOMENTS_MISMATCH)
                for name in coded
                if name not in methods.moments
            },
        }
    if bias_correction:
        methods.correction = BiasCorrection.from_statistics(stats, set(source.names), set(coded))
        methods.report["bias_correction"] = {
            "corrected": {name: target.tensor for name, target in methods.correction.targets.items()},
            "uncorrected": dict(methods.correction.uncorrectable),
        }
    return methods


def _spread(factors: np.ndarray) -> dict:
    """How far a tensor's column steps spread, in step QPs around the tensor's (4 per octave)."""
    offsets = 4 * np.log2(factors)
    return {"columns": len(factors), "min": round(float(offsets.min()), 2), "max": round(float(offsets.max()), 2)}


def _fits(moments: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """The moments' columns match the weight matrix's (a tied weight used elsewhere may not)."""
    columns = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return moments.shape[-1] == columns and shape[0] % moments.shape[0] == 0
