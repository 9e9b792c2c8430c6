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
  lossless on the symbols; gptq rounding and the bias correction where the architecture is known and its
  statistics are like the data's, dependent quantization where not. The smallest files at a given
  accuracy.
- `fast`: int8 per output channel, x264 preset ultrafast lossless, nearest rounding, no noise pass.
  Any model; the speed point.
All three keep the low bits of wide symbols apart, stored raw (`low_bits`, vcwc.format.low_bits); a
recipe built from scratch codes every bit with the codec, as codec comparisons want.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import tomllib

from ..errors import CodecError, InputError
from .settings import (
    ARRANGEMENTS,
    CUSTOM_PREFIX,
    LOW_BITS,
    RECIPE_VERSION,
    ROUNDINGS,
    SWITCHES,
    UNCODED_STORAGE,
    CodecSettings,
    QuantizerSettings,
    Selection,
    TensorOverride,
    check_choice,
    check_type,
    no_unknown,
    qp_from_step,
    step_from_qp,
)

__all__ = [
    "AUTO_RULES",
    "CUSTOM_PREFIX",
    "RECIPES",
    "CodecSettings",
    "QuantizerSettings",
    "Recipe",
    "Selection",
    "TensorOverride",
    "get_recipe",
    "named",
    "qp_from_step",
    "step_from_qp",
]

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


# Which rules `Recipe.resolved` (and the encoder's "auto" low bits) follow. A sweep keys its points by the
# recipe asked for, "auto" included, so this number joins the key of such a point
# (vcwc.bench.sweep.Point.settings): raise it whenever the rules change, and a point that ran under older
# rules is measured again instead of reused. tests/test_recipe.py pins the rules it stands for.
AUTO_RULES = 2


@dataclass(frozen=True)
class Recipe:
    """How a model is compressed. See the module docstring; `describe()` says it in one line."""

    name: str | None = None
    codec: CodecSettings = field(default_factory=CodecSettings)
    quantizer: QuantizerSettings = field(default_factory=QuantizerSettings)
    rounding: str = "nearest"  # "nearest", "gptq", "dependent" or "auto" (resolved())
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
        check_type("name", self.name, str, optional=True)
        check_choice("rounding", self.rounding, ROUNDINGS)
        if self.rounding == "dependent" and self.codec.qp is not None:
            raise InputError(
                "rounding 'dependent' needs the codec lossless on the symbols (no --qp): its levels follow the "
                "symbols' parities, which a lossy codec changes"
            )
        check_choice("bias_correction", self.bias_correction, SWITCHES)
        check_choice("arrangement", self.arrangement, ARRANGEMENTS)
        check_choice("uncoded", self.uncoded, UNCODED_STORAGE)
        check_type("raw_fallback", self.raw_fallback, bool)
        check_choice("low_bits", self.low_bits, LOW_BITS)
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @property
    def chooses_automatically(self) -> bool:
        """Whether some setting is left to "auto", decided by AUTO_RULES when the model is known."""
        return "auto" in (
            self.codec.name,
            self.rounding,
            self.bias_correction,
            self.quantizer.allocation,
            self.low_bits,
        )

    @property
    def needs_architecture(self) -> bool:
        """Whether the recipe insists on the model's architecture (a method switched on, not "auto")."""
        return self.rounding == "gptq" or self.bias_correction == "on" or self.quantizer.by_sensitivity

    @property
    def could_use_architecture(self) -> bool:
        """Whether some method of the recipe, asked for or "auto", would run the model given the chance."""
        return self.resolved(architecture=True, real_inputs=True, batchnorm=True).needs_architecture

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
        self,
        *,
        codec: str | None = None,
        architecture: bool = False,
        real_inputs: bool = False,
        batchnorm: bool = False,
    ) -> Recipe:
        """The recipe with its "auto" choices made: the codec picked; with the architecture, step allocation
        by sensitivity, per tensor and per column; gptq rounding where the layer statistics it uses are like
        the data's (`real_inputs` from a calibration file, or noise through a network whose `batchnorm`
        layers normalize it), else dependent quantization where the codec is lossless on the symbols; and
        the bias correction only where the network has BatchNorm: on a transformer it did not help even with
        real inputs (docs/recipes.md)."""
        rounding = self.rounding
        if rounding == "auto":
            lossless = self.codec.qp is None
            served = architecture and (real_inputs or batchnorm) and lossless
            rounding = "gptq" if served else "dependent" if lossless else "nearest"
        bias = self.bias_correction
        if bias == "auto":
            bias = "on" if architecture and batchnorm else "off"
        codec_settings = replace(self.codec, name=codec) if codec and self.codec.name == "auto" else self.codec
        allocation = self.quantizer.allocation
        if allocation == "auto":
            allocation = "sensitivity_columns" if architecture and self.quantizer.step_qp is not None else "uniform"
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
        no_unknown(source, data, known, "")
        values = dict(data)
        try:
            for key, kind in (("codec", CodecSettings), ("quantizer", QuantizerSettings), ("selection", Selection)):
                if key in values:
                    section = values[key]
                    if not isinstance(section, dict):
                        raise InputError(f"{source}: {key} must be a table of settings")
                    no_unknown(source, section, set(kind.__dataclass_fields__), f"{key}.")
                    values[key] = kind(**section)
            if "overrides" in values:
                entries = values["overrides"]
                if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                    raise InputError(f"{source}: overrides must be a list of tables")
                for entry in entries:
                    no_unknown(source, entry, set(TensorOverride.__dataclass_fields__), "overrides.")
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
        if self.quantizer.step_qp is not None and self.quantizer.by_sensitivity:
            quantizer = f"fixed steps around 2^({self.quantizer.step_qp:g}/4), allocated by sensitivity" + (
                " per tensor and column" if self.quantizer.allocation == "sensitivity_columns" else ""
            )
        elif self.quantizer.step_qp is not None:
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
