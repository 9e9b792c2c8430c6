"""Recipes: one validated, frozen, versioned description of how a model is compressed.

A recipe holds every setting that shapes the file: the codec and its encoder settings, the quantizer
(granularity, symbol bits, or one fixed step), how weights take their levels (rounding), the data-free
corrections, which tensors are coded, their layout, how uncoded tensors are stored, and per-tensor
overrides. It says nothing about the machine (ffmpeg binary, hardware device, parallel jobs) or the
model's architecture, which are given at run time. It serializes to a dict (and JSON or TOML files);
the file written records the *resolved* recipe, with "auto" choices made.

Named recipes (`RECIPES`, `named`):
- `lossless`: int8 per tensor (scale max|w|/127), x264 lossless on the symbols. Any model.
- `smallest`: one fixed quantization step 2^(step_qp/4) in weight units (step_qp -16 by default), x264
  lossless on the symbols; gptq rounding and the bias correction where the architecture is known,
  nearest rounding and no correction where not. The smallest files at a given accuracy.
- `fast`: int8 per output channel, x264 preset ultrafast lossless, nearest rounding, no noise pass.
  Any model; the speed point.
All three keep the low bits of wide symbols apart, stored raw (`low_bits`, vcwc.format.low_bits); a
recipe built from scratch codes every bit with the codec, as codec comparisons want.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from .codecs import get_codec
from .codecs.custom import STANDARDS
from .errors import CodecError, InputError

RECIPE_VERSION = 1
STEPS_PER_OCTAVE = 4  # NNCodec's QP scale: step QP -20 is a step of 2 ** (-20 / 4) in weight units
GRANULARITIES = ("per_tensor", "per_channel")
ROUNDINGS = ("nearest", "gptq", "auto")
ALLOCATIONS = ("uniform", "sensitivity", "auto")
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


def _check_type(name: str, value: Any, kind, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise InputError(f"recipe {name} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"recipe {name} must be one of {', '.join(choices)}, got {value!r}")


def _no_unknown(source: str, data: dict, known: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{source}: unknown setting {prefix}{unknown[0]}; known: {', '.join(prefix + k for k in sorted(known))}"
        )


# The flat names of settings (as on the command line) and where they live in a recipe.
SETTINGS = {
    "codec": "codec.name",
    "qp": "codec.qp",
    "preset": "codec.preset",
    "encoder_args": "codec.encoder_args",
    "encoder_format": "codec.encoder_format",
    "granularity": "quantizer.granularity",
    "bits": "quantizer.bits",
    "step_qp": "quantizer.step_qp",
    "allocation": "quantizer.allocation",
    "layers": "selection.layers",
    "include": "selection.include",
    "exclude": "selection.exclude",
}


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
        _check_type("codec.name", self.name, str)
        _check_type("codec.qp", self.qp, int, optional=True)
        _check_type("codec.preset", self.preset, str, optional=True)
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
    (vcwc.quant.sensitivity; needs the architecture); "auto" does so where the architecture is known.
    """

    granularity: str = "per_tensor"
    bits: int = 8
    step_qp: float | None = None
    allocation: str = "uniform"

    def __post_init__(self):
        _check_choice("quantizer.granularity", self.granularity, GRANULARITIES)
        _check_type("quantizer.bits", self.bits, int)
        if not 2 <= self.bits <= 10:
            raise InputError(f"recipe quantizer.bits must be between 2 and 10, got {self.bits}")
        _check_choice("quantizer.allocation", self.allocation, ALLOCATIONS)
        _check_type("quantizer.step_qp", self.step_qp, (int, float), optional=True)
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
        _check_type("override.step_qp", self.step_qp, (int, float), optional=True)
        _check_type("override.qp", self.qp, int, optional=True)

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
        _check_choice("selection.layers", self.layers, LAYERS)
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


@dataclass(frozen=True)
class Recipe:
    """How a model is compressed. See the module docstring; `describe()` says it in one line."""

    name: str | None = None
    codec: CodecSettings = field(default_factory=CodecSettings)
    quantizer: QuantizerSettings = field(default_factory=QuantizerSettings)
    rounding: str = "nearest"  # "nearest", "gptq", or "auto": gptq where the architecture is known
    bias_correction: str = "off"  # "off", "on", or "auto": on where the architecture is known
    selection: Selection = field(default_factory=Selection)
    arrangement: str = "rows"
    uncoded: str = "exact"  # how tensors that are not coded are stored: exactly, or float32 as float16
    overrides: tuple[TensorOverride, ...] = ()
    # Store a tensor's symbols as raw int8 where its video stream would cost more (named recipes do);
    # off, every coded tensor is video, as codec comparisons want.
    raw_fallback: bool = False
    # "auto": lossless tensors whose symbols are wide keep their lowest bits apart, stored raw, and the
    # codec codes the rest (vcwc.format.low_bits); "off": the codec codes every bit.
    low_bits: str = "off"
    version: int = RECIPE_VERSION

    def __post_init__(self):
        if self.version != RECIPE_VERSION:
            raise InputError(f"recipe version {self.version} is not supported (this vcwc reads {RECIPE_VERSION})")
        _check_type("name", self.name, str, optional=True)
        _check_choice("rounding", self.rounding, ROUNDINGS)
        _check_choice("bias_correction", self.bias_correction, SWITCHES)
        _check_choice("arrangement", self.arrangement, ARRANGEMENTS)
        _check_choice("uncoded", self.uncoded, UNCODED_STORAGE)
        _check_type("raw_fallback", self.raw_fallback, bool)
        _check_choice("low_bits", self.low_bits, LOW_BITS)
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @property
    def needs_architecture(self) -> bool:
        """Whether the recipe insists on the model's architecture (a method switched on, not "auto")."""
        return self.rounding == "gptq" or self.bias_correction == "on" or self.quantizer.allocation == "sensitivity"

    def step_qp_for(self, tensor: str) -> float | None:
        for override in reversed(self.overrides):
            if override.matches(tensor) and override.step_qp is not None:
                return override.step_qp
        return self.quantizer.step_qp

    def qp_for(self, tensor: str) -> int | None:
        for override in reversed(self.overrides):
            if override.matches(tensor) and override.qp is not None:
                return override.qp
        return self.codec.qp

    def resolved(
        self, *, codec: str | None = None, architecture: bool = False, representative_inputs: bool = False
    ) -> Recipe:
        """The recipe with its "auto" choices made: the codec picked; with the
        architecture, step allocation by sensitivity, and gptq rounding and bias correction where the
        inputs they are measured on are `representative_inputs` (real calibration inputs, or noise through
        a network whose BatchNorms normalize it)."""
        statistics = architecture and representative_inputs
        rounding = self.rounding
        if rounding == "auto":
            rounding = "gptq" if statistics and self.codec.qp is None else "nearest"
        bias = ("on" if statistics else "off") if self.bias_correction == "auto" else self.bias_correction
        codec_settings = replace(self.codec, name=codec) if codec and self.codec.name == "auto" else self.codec
        allocation = self.quantizer.allocation
        if allocation == "auto":
            allocation = "sensitivity" if architecture and self.quantizer.step_qp is not None else "uniform"
        quantizer = replace(self.quantizer, allocation=allocation)
        return replace(self, codec=codec_settings, quantizer=quantizer, rounding=rounding, bias_correction=bias)

    def with_changes(self, **changes) -> Recipe:
        """A copy with settings replaced, named as on the command line (`codec`, `qp`, `preset`,
        `granularity`, `bits`, `step_qp`, `rounding`, `bias_correction`, `layers`, `include`, `exclude`,
        `arrangement`, `uncoded`, ...) or by their place in the recipe (`codec.qp`, `quantizer.bits`)."""
        sections: dict[str, dict] = {}
        top = {}
        for key, value in changes.items():
            key = SETTINGS.get(key, key)
            if key == "bias_correction" and isinstance(value, bool):
                value = "on" if value else "off"
            if "." in key:
                section, name = key.split(".", 1)
                sections.setdefault(section, {})[name] = value
            elif key in self.__dataclass_fields__:
                top[key] = value
            else:
                raise InputError(
                    f"recipe has no setting {key!r}; settings: {', '.join(SETTINGS)}, "
                    f"{', '.join(k for k in self.__dataclass_fields__ if k not in ('version',))}"
                )
        for section, values in sections.items():
            if section not in ("codec", "quantizer", "selection"):
                raise InputError(f"recipe has no section {section!r}")
            unknown = sorted(set(values) - set(getattr(self, section).__dataclass_fields__))
            if unknown:
                raise InputError(f"recipe has no setting {section}.{unknown[0]}")
            top[section] = replace(getattr(self, section), **values)
        return replace(self, **top)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["overrides"] = [{k: v for k, v in o.items() if v is not None} for o in data["overrides"]]
        data["selection"] = {
            **data["selection"],
            "include": list(self.selection.include),
            "exclude": list(self.selection.exclude),
        }
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "recipe") -> Recipe:
        if not isinstance(data, dict):
            raise InputError(f"{source}: a recipe is an object of settings")
        known = set(cls.__dataclass_fields__)
        _no_unknown(source, data, known, "")
        values = dict(data)
        try:
            for key, kind in (("codec", CodecSettings), ("quantizer", QuantizerSettings), ("selection", Selection)):
                if key in values:
                    section = values[key]
                    if not isinstance(section, dict):
                        raise InputError(f"{source}: {key} must be a table of settings")
                    _no_unknown(source, section, set(kind.__dataclass_fields__), f"{key}.")
                    values[key] = kind(**section)
            if "overrides" in values:
                entries = values["overrides"]
                if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                    raise InputError(f"{source}: overrides must be a list of tables")
                for entry in entries:
                    _no_unknown(source, entry, set(TensorOverride.__dataclass_fields__), "overrides.")
                values["overrides"] = tuple(TensorOverride(**entry) for entry in entries)
            if isinstance(values.get("bias_correction"), bool):  # TOML/JSON true/false read as on/off
                values["bias_correction"] = "on" if values["bias_correction"] else "off"
            return cls(**values)
        except (InputError, CodecError) as exc:
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """A recipe from a .json or .toml file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"recipe file {str(path)!r} cannot be read ({exc.strerror})") from None
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"recipe file {str(path)!r} is not valid {path.suffix[1:] or 'JSON'} ({exc})") from None
        return cls.from_dict(data, str(path))

    def describe(self) -> str:
        """One line in words, e.g. 'x264 lossless on symbols of one fixed step 2^(-16/4), gptq rounding'."""
        codec = self.codec.name + (f" QP {self.codec.qp}" if self.codec.qp is not None else " lossless")
        if self.codec.preset:
            codec += f" preset {self.codec.preset}"
        if self.quantizer.step_qp is not None:
            quantizer = f"one fixed step 2^({self.quantizer.step_qp:g}/4)"
        else:
            quantizer = f"int{self.quantizer.bits} {self.quantizer.granularity.replace('_', ' ')}"
        parts = [f"{quantizer}, {codec}", f"{self.rounding} rounding"]
        if self.bias_correction != "off":
            parts.append(f"bias correction {self.bias_correction}")
        if self.low_bits != "off":
            parts.append(f"low bits apart {self.low_bits}")
        if self.overrides:
            parts.append(f"{len(self.overrides)} per-tensor overrides")
        return ", ".join(parts)


# Every named recipe keeps the low bits of wide symbols apart: smaller files of the same symbols (int8 per
# tensor on real CNNs: 5-7% smaller) at no cost in accuracy. On the few levels left x264 codes as tightly
# as x265 and AV1 and encodes 1.6-3x faster than x265 (results/lossless).
RECIPES: dict[str, Recipe] = {
    "lossless": Recipe("lossless", CodecSettings("x264"), raw_fallback=True, low_bits="auto"),
    "smallest": Recipe(
        "smallest",
        CodecSettings("x264"),
        # 10 bits: a tensor with outliers keeps the fixed step in 10-bit frames instead of a coarser scale
        # (tensors within 127 levels stay in 8-bit frames).
        QuantizerSettings(bits=10, step_qp=-16, allocation="auto"),
        rounding="auto",
        bias_correction="auto",
        raw_fallback=True,
        low_bits="auto",
    ),
    "fast": Recipe(
        "fast",
        CodecSettings("x264", preset="ultrafast"),
        QuantizerSettings("per_channel"),
        raw_fallback=True,
        low_bits="auto",
    ),
}


def named(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(
            f"unknown recipe {name!r}; named recipes: {', '.join(RECIPES)}, or a .json/.toml file"
        ) from None


def get_recipe(recipe: Recipe | str | dict | None) -> Recipe:
    """A Recipe from itself, a name, a path to a .json/.toml file, or a dict; None is `lossless`."""
    if recipe is None:
        return RECIPES["lossless"]
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, (str, Path)) and str(recipe).endswith((".json", ".toml")):
        return Recipe.load(recipe)
    if isinstance(recipe, str):
        return named(recipe)
    raise InputError(
        f"a recipe is a Recipe, a name ({', '.join(RECIPES)}), a .json/.toml file or a dict; "
        f"got {type(recipe).__name__}"
    )
