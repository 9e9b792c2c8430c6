"""The parts of a recipe, each a small validated, frozen dataclass: the codec and its encoder settings, the
quantizer, which tensors are coded, and per-tensor overrides; with the choices each setting takes and the
step-QP scale they share. vcwc.recipe puts them together."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from ..codecs import get_codec
from ..codecs.custom import STANDARDS
from ..errors import InputError

RECIPE_VERSION = 1
STEPS_PER_OCTAVE = 4  # NNCodec's QP scale: step QP -20 is a step of 2 ** (-20 / 4) in weight units
GRANULARITIES = ("per_tensor", "per_channel")
ROUNDINGS = ("nearest", "gptq", "dependent", "auto")
ALLOCATIONS = ("uniform", "sensitivity", "sensitivity_columns", "auto")
BY_SENSITIVITY = ("sensitivity", "sensitivity_columns")
SWITCHES = ("off", "on", "auto")
LAYERS = ("all", "fc")
ARRANGEMENTS = ("rows", "kernel_blocks")
UNCODED_STORAGE = ("exact", "float16")
LOW_BITS = ("off", "auto")
CUSTOM_PREFIX = "custom:"


def step_from_qp(qp: float) -> float:
    """The fixed quantization step of a step QP, on NNCodec's scale so that the two ladders line up."""
    return 2.0 ** (qp / STEPS_PER_OCTAVE)


def qp_from_step(step: float) -> float:
    return STEPS_PER_OCTAVE * math.log2(step)


def check_type(name: str, value: Any, kind, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise InputError(f"recipe {name} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"recipe {name} must be one of {', '.join(choices)}, got {value!r}")


def no_unknown(source: str, data: dict, known: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{source}: unknown setting {prefix}{unknown[0]}; known: {', '.join(prefix + k for k in sorted(known))}"
        )


@dataclass(frozen=True)
class CodecSettings:
    """The video codec and its encoder settings. `qp=None` is lossless on the symbols. The codec checks
    the QP against its own range when it runs."""

    name: str = "x265"  # a registered codec or profile, "auto", or "custom:ENCODER"
    qp: int | None = None
    preset: str | None = None
    encoder_args: str = ""  # custom encoders only: '-option value' pairs, "{qp}" where the QP goes
    encoder_format: str | None = None  # custom encoders only: h264, hevc or obu

    def __post_init__(self):
        check_type("codec.name", self.name, str)
        check_type("codec.qp", self.qp, int, optional=True)
        check_type("codec.preset", self.preset, str, optional=True)
        if self.name.startswith(CUSTOM_PREFIX):
            if self.encoder_format not in STANDARDS:
                raise InputError(f"recipe codec {self.name!r} needs encoder_format, one of {', '.join(STANDARDS)}")
            return
        if self.encoder_args or self.encoder_format:
            raise InputError("recipe: encoder_args and encoder_format go with a custom codec (custom:ENCODER)")
        if self.name == "auto":
            return
        get_codec(self.name)  # a CodecError naming the known codecs

    @property
    def custom_encoder(self) -> str | None:
        return self.name[len(CUSTOM_PREFIX) :] if self.name.startswith(CUSTOM_PREFIX) else None


@dataclass(frozen=True)
class QuantizerSettings:
    """Linear symmetric quantization, zero point 0.

    Without `step_qp`, each tensor (or output channel, `per_channel`) gets the scale max|w| / max_level
    with max_level = 2^(bits-1) - 1. Up to 8 bits the symbols sit in 8-bit frames; `bits` 9 or 10 let
    tensors that need more than 127 levels use 10-bit frames (where the codec takes them; else 8). With `step_qp`, every tensor gets the fixed step 2^(step_qp/4) in
    weight units (NNCodec's QP scale), except that a tensor whose range would need more than
    max_level steps gets the coarser scale max|w| / max_level instead of being clipped. `allocation`
    "sensitivity" moves each tensor's step around that base by how much its error moves the model's output
    (vcwc.quant.sensitivity; needs the architecture); "sensitivity_columns" also moves the steps of each
    tensor's columns (input features) by theirs, stored as column scales (format version 4); "auto" is
    "sensitivity_columns" where the architecture is known.
    """

    granularity: str = "per_tensor"
    bits: int = 8
    step_qp: float | None = None
    allocation: str = "uniform"

    @property
    def by_sensitivity(self) -> bool:
        return self.allocation in BY_SENSITIVITY

    def __post_init__(self):
        check_choice("quantizer.granularity", self.granularity, GRANULARITIES)
        check_type("quantizer.bits", self.bits, int)
        if not 2 <= self.bits <= 10:
            raise InputError(f"recipe quantizer.bits must be between 2 and 10, got {self.bits}")
        check_choice("quantizer.allocation", self.allocation, ALLOCATIONS)
        check_type("quantizer.step_qp", self.step_qp, (int, float), optional=True)
        if isinstance(self.step_qp, float) and self.step_qp.is_integer():
            object.__setattr__(self, "step_qp", int(self.step_qp))  # -16.0 and -16 are one recipe
        if self.step_qp is not None and not -64 <= self.step_qp <= 16:
            raise InputError(
                f"recipe quantizer.step_qp must be between -64 and 16 (a step of 2^-16 to 16), got {self.step_qp}"
            )

    @property
    def step(self) -> float | None:
        return None if self.step_qp is None else step_from_qp(self.step_qp)


@dataclass(frozen=True)
class TensorOverride:
    """Settings for the tensors whose names match `pattern` (fnmatch), or exactly `name`."""

    pattern: str | None = None
    name: str | None = None
    step_qp: float | None = None  # this fixed step instead of the quantizer's
    qp: int | None = None  # this codec QP instead of the codec's (the tensors get frames of their own)

    def __post_init__(self):
        if (self.pattern is None) == (self.name is None):
            raise InputError("recipe override: give either a pattern or a name")
        check_type("override.step_qp", self.step_qp, (int, float), optional=True)
        check_type("override.qp", self.qp, int, optional=True)

    def matches(self, tensor: str) -> bool:
        return tensor == self.name if self.name is not None else fnmatch.fnmatchcase(tensor, self.pattern)


@dataclass(frozen=True)
class Selection:
    """Which tensors go through the video codec; the rest are stored as they came.

    Default: every non-empty floating-point tensor with at least 2 dimensions. `layers="fc"` keeps only
    2-D weights. `include` patterns (fnmatch) narrow the choice; `exclude` patterns remove names from it.
    """

    layers: str = "all"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        check_choice("selection.layers", self.layers, LAYERS)
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def is_coded(self, name: str, floating: bool, shape: tuple[int, ...]) -> bool:
        if not floating or len(shape) < 2 or math.prod(shape) == 0:
            return False
        if self.layers == "fc" and len(shape) != 2:
            return False
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def check_patterns(self, names: list[str]) -> None:
        for option, patterns in (("include", self.include), ("exclude", self.exclude)):
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                    raise InputError(f"recipe selection.{option} pattern {pattern!r} matches no tensor name")
