"""What happens to each tensor: coded (with which quantizer, codec settings and layout), stored as it
came, or an alias of a tensor it is tied to; and the chunks that bound the encoder's memory."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..codecs.base import Codec, EncoderSettings
from ..format.records import PayloadRecord
from ..io import ModelSource
from ..quant.quantize import QuantConfig
from ..recipe import Recipe, step_from_qp

# Coded weights per chunk. Chunks are packed into frames and encoded one after another, so memory holds
# about one chunk's symbols and frames; a model smaller than this is one chunk.
CHUNK_WEIGHTS = 1 << 26


@dataclass(frozen=True)
class TensorPlan:
    """How one coded tensor is encoded. Tensors share frames only when their `frame_key`s match."""

    name: str
    codec: Codec
    settings: EncoderSettings
    quant: QuantConfig
    arrangement: str = "rows"
    low_bits_apart: bool = False  # wide symbols keep their low bits raw (vcwc.format.low_bits)

    @property
    def frame_key(self) -> tuple:
        return self.codec.name, self.settings

    @property
    def payload(self) -> PayloadRecord:
        return PayloadRecord(
            self.codec.name,
            self.codec.standard,
            self.settings.lossless,
            self.settings.qp,
            self.settings.preset or self.codec.default_preset,
        )


@dataclass
class Plan:
    coded: dict[str, TensorPlan]  # in the model's order
    uncoded: list[str]
    aliases: dict[str, str]  # tied tensor -> the earlier tensor it repeats
    chunks: list[list[str]] = field(default_factory=list)
    raw_fallback: bool = False  # a tensor whose video would cost more than raw int8 is stored raw
    column_steps: dict = field(default_factory=dict)  # tensor -> its columns' step factors (vcwc.quant.quantize)


def make_plan(
    source: ModelSource,
    recipe: Recipe,
    codec: Codec,
    settings: EncoderSettings,
    gptq_served: set[str] = frozenset(),
    step_offsets: dict[str, float] | None = None,
    column_steps: dict | None = None,
) -> Plan:
    """The plan of a resolved recipe. `gptq_served` names the tensors that have input moments for gptq;
    `step_offsets` moves tensors' fixed steps (in step QPs) around the recipe's; `column_steps` multiply
    the steps of tensors' columns."""
    coded, uncoded, aliases = {}, [], {}
    for name in source.names:
        if name in source.aliases:
            aliases[name] = source.aliases[name]
            continue
        if not recipe.selection.is_coded(name, source.is_float(name), source.shape(name)):
            uncoded.append(name)
            continue
        step_qp = recipe.step_qp_for(name)
        if step_qp is not None:
            step_qp += (step_offsets or {}).get(name, 0.0)
        rounding = recipe.rounding if recipe.rounding != "gptq" or name in gptq_served else "nearest"
        # Symbols wider than the codec's frames take are capped at its depth (coarser scales, never clipping).
        bits = min(recipe.quantizer.bits, codec.max_bit_depth)
        quant = QuantConfig(
            recipe.quantizer.granularity, bits, None if step_qp is None else step_from_qp(step_qp), rounding
        )
        qp = recipe.qp_for(name)
        tensor_settings = settings if qp == settings.qp else replace(settings, qp=qp)
        apart = recipe.low_bits == "auto" and tensor_settings.lossless
        coded[name] = TensorPlan(name, codec, tensor_settings, quant, recipe.arrangement, apart)
    # An alias of a tensor that is not coded is stored as it came, like its original.
    for name, original in list(aliases.items()):
        if original not in coded:
            del aliases[name]
            uncoded.append(name)
    position = {name: index for index, name in enumerate(source.names)}
    uncoded.sort(key=position.__getitem__)
    columns = {name: factors for name, factors in (column_steps or {}).items() if name in coded}
    return Plan(coded, uncoded, aliases, chunk(source, list(coded)), recipe.raw_fallback, columns)


def chunk(source: ModelSource, names: list[str], budget: int = CHUNK_WEIGHTS) -> list[list[str]]:
    """Consecutive groups of coded tensors of at most `budget` weights (a larger tensor is alone)."""
    chunks: list[list[str]] = []
    total = 0
    for name in names:
        count = 1
        for side in source.shape(name):
            count *= side
        if not chunks or total + count > budget:
            chunks.append([])
            total = 0
        chunks[-1].append(name)
        total += count
    return chunks
