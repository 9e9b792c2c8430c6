"""The public entry points: `compress`, `decompress`, `open_compressed`, and the CompressedModel they share.

    compressed = vcwc.compress(model, recipe="smallest", arch="cifar_resnet20")
    compressed.save("model.vcwc")
    state_dict = vcwc.decompress("model.vcwc")

A recipe (vcwc.recipe) says how the model is compressed; everything else here is about the run: which
ffmpeg, how many jobs, which hardware device, the model's architecture for the data-free methods.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .codecs import ffmpeg, probe
from .codecs.base import Codec, EncoderSettings, get_codec
from .codecs.custom import CustomCodec
from .errors import InputError, VcwcWarning
from .files import atomic_write, check_output
from .format.container import Container, ContainerWriter
from .format.records import Metadata, SourceRecord, TensorRecord
from .format.report import SizeReport, size_report
from .io import ModelSource, from_checkpoint, load_model, tensor_bytes, torch_from_bytes
from .pipeline import methods as data_free
from .pipeline.decode import decode_tensors
from .pipeline.encode import check_min_snr, encode_tensors
from .pipeline.plan import make_plan
from .pipeline.uncoded import write_uncoded
from .quant.inputs import CalibrationInputs, load_calibration
from .recipe import Recipe, get_recipe
from .save import OutputTensor, write_model
from .version import __version__

LOW_SNR_DB = 10.0  # below this a coded tensor has lost most of its signal: warn


class CompressedModel:
    """A .vcwc file, in memory or on disk: its typed metadata now, tensors decoded when asked for."""

    def __init__(
        self, source, name: str | None = None, warnings_seen: list[str] | None = None, notes: list[str] | None = None
    ):
        self.container = source if isinstance(source, Container) else Container(source, name)
        self.warnings = list(warnings_seen or [])  # what the user should know of the result
        self.notes = list(notes or [])  # choices made on the way, e.g. which codec "auto" picked

    @classmethod
    def open(cls, path: str | os.PathLike) -> CompressedModel:
        return cls(Path(path))

    @property
    def metadata(self) -> dict:
        """The metadata as stored (JSON); `meta` is the same, typed and checked."""
        return self.container.metadata

    @property
    def meta(self) -> Metadata:
        return self.container.meta

    @property
    def recipe(self) -> dict | None:
        return self.meta.recipe

    @property
    def data(self) -> bytes:
        """The whole file's bytes (read from disk for a file-backed model)."""
        return self.container._read(0, self.container.file_bytes)

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        return atomic_write(path, self.data, force)

    def size_report(self) -> SizeReport:
        return size_report(self.meta, self.container.file_bytes, self.container.header_bytes)

    def decompress(
        self,
        names: list[str] | None = None,
        *,
        ffmpeg_path: str | None = None,
        jobs: int | None = None,
        progress: bool = False,
        hwaccel: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """The state dict (original names, shapes, dtypes), or only the tensors `names`."""
        binary = ffmpeg.find_ffmpeg(ffmpeg_path) if self.meta.frames else None
        wanted = None if names is None else set(names)
        state_dict = {}
        for tensor in decode_tensors(
            self.container, names, binary=binary, jobs=jobs, progress=progress, hwaccel=hwaccel
        ):
            if wanted is None or tensor.record.name in wanted:
                state_dict[tensor.record.name] = _to_torch(tensor.data, tensor.record)
        return state_dict

    def decompress_to(
        self,
        output: str | os.PathLike,
        *,
        force: bool = False,
        restore_prefix: bool = False,
        ffmpeg_path: str | None = None,
        jobs: int | None = None,
        progress: bool = False,
        hwaccel: str | None = None,
    ) -> Path:
        """Write the decoded model to a .safetensors or .pt file, or a folder of shards (a path ending in
        "/" or an existing folder: the input's shard names and layout), one tensor at a time."""
        check_output(output, force) if not str(output).endswith(("/", os.sep)) and not Path(output).is_dir() else None
        source: SourceRecord = self.meta.source
        prefix = source.prefix if restore_prefix else ""
        tensors = [OutputTensor(prefix + r.name, r.dtype, r.shape) for r in self.meta.tensors]
        binary = ffmpeg.find_ffmpeg(ffmpeg_path) if self.meta.frames else None

        def produce():
            for tensor in decode_tensors(self.container, binary=binary, jobs=jobs, progress=progress, hwaccel=hwaccel):
                yield prefix + tensor.record.name, tensor.data

        shards = {prefix + name: shard for name, shard in source.shards.items()} if source.shards else None
        return write_model(
            output,
            tensors,
            produce,
            force=force,
            extras=source.extras or None,
            container_key=source.container_key if restore_prefix else None,
            shards=shards,
            shard_metadata=source.shard_metadata,
        )

    def close(self) -> None:
        self.container.close()

    def __len__(self) -> int:
        return self.container.file_bytes


def _to_torch(data: bytes, record: TensorRecord) -> torch.Tensor:
    return torch_from_bytes(data, record.dtype, record.shape)


def open_compressed(source) -> CompressedModel:
    """A CompressedModel from itself, a file's bytes, or a path."""
    if isinstance(source, CompressedModel):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return CompressedModel(bytes(source))
    return CompressedModel.open(source)


def decompress(
    source,
    names: list[str] | None = None,
    *,
    ffmpeg_path: str | None = None,
    jobs: int | None = None,
    progress: bool = False,
    hwaccel: str | None = None,
) -> dict[str, torch.Tensor]:
    """The state dict (original names, shapes, dtypes) from .vcwc bytes or a path.

    `names` decodes only those tensors, and only the frames that hold them. Frames are decoded in software
    unless `hwaccel` names an ffmpeg hwaccel (cuda, vaapi, qsv, ...); either way the symbols are checked
    against their stored checksums.
    """
    return open_compressed(source).decompress(
        names, ffmpeg_path=ffmpeg_path, jobs=jobs, progress=progress, hwaccel=hwaccel
    )


def model_source(model) -> ModelSource:
    """A ModelSource from a path, a state dict, a checkpoint dict, an nn.Module or a ModelSource."""
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    return from_checkpoint(model)


def resolve_codec(recipe: Recipe, settings: EncoderSettings, binary: str, notes: list[str]) -> Codec:
    """The codec a recipe names: registered, "auto" (the first that works here), or a custom encoder."""
    spec = recipe.codec
    if spec.custom_encoder is not None:
        return CustomCodec(spec.custom_encoder, spec.encoder_args, spec.encoder_format, probe_qp=spec.qp)
    if spec.name == "auto":
        chosen, passed = probe.choose_auto(binary, settings)
        notes += [f"codec auto passed over {name}: {why}" for name, why in passed]
        notes.append(f"codec auto picked {chosen.name} ({chosen.encoder})")
        return chosen
    codec = get_codec(spec.name)
    if codec.experimental:
        notes.append(
            f"{codec.name} is experimental (never run end to end by the maintainers); the round trip is "
            f"verified as for any codec"
        )
    return codec


def compress(
    model,
    recipe: Recipe | str | dict | None = None,
    *,
    arch: str | nn.Module | None = None,
    input_shape: tuple[int, ...] | None = None,
    calibration: str | os.PathLike | CalibrationInputs | None = None,
    output: str | os.PathLike | None = None,
    force: bool = False,
    ffmpeg_path: str | None = None,
    jobs: int | None = None,
    device: str | None = None,
    progress: bool = False,
    min_snr_db: float | None = None,
) -> CompressedModel:
    """Compress a model into a .vcwc file.

    `model`: a path (checkpoint, .safetensors, sharded folder), a state dict, a checkpoint dict, an
    nn.Module, or a ModelSource. `recipe`: a Recipe, a name (`lossless`, the default, `smallest`, `fast`),
    a .json/.toml path or a dict. `arch`: the model's architecture (a registered name, "MODULE:CALLABLE"
    or a module; an nn.Module model is its own), which the data-free methods need; `input_shape` is one
    input's shape, channels first, where the architecture does not say (a model that takes token ids is
    driven by random tokens). `calibration`: real model inputs (a .npz, .pt or .safetensors file, or
    CalibrationInputs) that drive the methods instead of noise; the file records that data was used. `output`: write the file there
    (streamed: memory holds about one chunk of the model) instead of building it in memory. `device`: a
    hardware encoder's device. `min_snr_db`: refuse (write nothing) if a coded tensor's weight SNR falls
    below it. A coded tensor below 10 dB is reported as a VcwcWarning, also kept in `.warnings`.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", VcwcWarning)
        result = _compress(
            model,
            get_recipe(recipe),
            arch,
            input_shape,
            calibration,
            output,
            force,
            ffmpeg_path,
            jobs,
            device,
            progress,
            min_snr_db,
            notes,
        )
    messages = [str(w.message) for w in seen if issubclass(w.category, VcwcWarning)]
    for other in seen:
        if not issubclass(other.category, VcwcWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    for message in messages:
        warnings.warn(message, VcwcWarning, stacklevel=2)
    return CompressedModel(result, warnings_seen=messages, notes=notes)


def _compress(
    model,
    recipe: Recipe,
    arch,
    input_shape,
    calibration,
    output,
    force,
    ffmpeg_path,
    jobs,
    device,
    progress,
    min_snr_db,
    notes: list[str],
):
    if output is not None:
        check_output(output, force)
    if isinstance(model, nn.Module) and arch is None:
        arch = model
    source = model_source(model)
    recipe.selection.check_patterns(source.names)
    binary = ffmpeg.find_ffmpeg(ffmpeg_path)
    settings = EncoderSettings(qp=recipe.codec.qp, preset=recipe.codec.preset, device=device)
    codec = resolve_codec(recipe, settings, binary, notes)
    codec.check(settings)
    probe.require(codec, binary)
    architecture = data_free.architecture_for(arch, input_shape, recipe, source, notes)
    if isinstance(calibration, (str, os.PathLike)):
        calibration = load_calibration(calibration)
    attempt_notes: list[str] = []
    try:
        resolved, methods = _methods(
            recipe, codec, settings, source, architecture, calibration, attempt_notes, progress
        )
    except InputError as exc:
        # An architecture the model's folder named, not the user, that cannot run on the inputs (a model
        # that needs more than token ids, say): the file is weight-only, as it would be without the folder,
        # unless the recipe asked for a method by name.
        if architecture is None or not architecture.from_folder or recipe.needs_architecture:
            raise
        notes.append(f"{architecture.name} from the folder's config.json is not used (weight-only): {exc}")
        resolved, methods = _methods(recipe, codec, settings, source, None, calibration, notes, progress)
    else:
        notes.extend(attempt_notes)
    recipe = resolved
    plan = make_plan(source, recipe, codec, settings, methods.gptq_served, methods.step_offsets, methods.column_steps)
    dependent = [name for name, tensor in plan.coded.items() if tensor.quant.dependent]
    if dependent:
        methods.report["dependent_quantization"] = {"tensors": dependent}
    with ContainerWriter(output, force) as writer:
        encoded = encode_tensors(
            source,
            plan,
            writer,
            binary,
            jobs=jobs,
            progress=progress,
            moments=methods.moments,
            on_decoded=methods.observe,
        )
        check_min_snr(encoded, min_snr_db)
        for name, snr in encoded.reconstructed_error.items():
            if snr < LOW_SNR_DB:
                warnings.warn(
                    f"tensor {name!r} came back at {snr:.1f} dB weight SNR: these settings destroy most of its signal",
                    VcwcWarning,
                    stacklevel=2,
                )
        corrected = methods.corrected(source)
        records = _records(source, plan, encoded, corrected, recipe.uncoded, writer)
        metadata = _metadata(source, records, encoded, recipe, methods, corrected, binary if plan.coded else None)
        return writer.finish(metadata)


def _methods(
    recipe: Recipe, codec: Codec, settings, source: ModelSource, architecture, calibration, notes, progress=False
):
    """The recipe resolved for this model, and the data-free methods' passes over its candidates. Given
    an architecture, every way it fails (import, build, weights, forward pass) is an error."""
    recipe = data_free.resolve_recipe(recipe, codec.name, source, architecture is not None, calibration, notes)
    candidates = make_plan(source, recipe, codec, settings)
    methods = data_free.prepare(
        source,
        list(candidates.coded),
        architecture,
        recipe.rounding,
        recipe.bias_correction == "on",
        calibration,
        recipe.quantizer.allocation,
        progress,
    )
    return recipe, methods


def _records(source: ModelSource, plan, encoded, corrected: dict, uncoded_storage: str, writer) -> list[TensorRecord]:
    scales_blob = writer.add("quantizer", *encoded.scales_blob()) if plan.coded else None
    replaced = {name: tensor_bytes(tensor, source.dtype(name)) for name, tensor in corrected.items()}
    uncoded = write_uncoded(source, plan.uncoded, replaced, uncoded_storage, writer)
    records = []
    for name in source.names:
        if name in encoded.records:
            record = encoded.records[name]
            record = replace(record, quantizer=record.quantizer.in_blob(scales_blob))
        elif name in plan.aliases:
            record = TensorRecord(
                name, source.dtype(name), tuple(source.shape(name)), "alias", alias_of=plan.aliases[name]
            )
        else:
            record = uncoded[name]
        records.append(record)
    return records


def _metadata(
    source: ModelSource, records: list[TensorRecord], encoded, recipe: Recipe, methods, corrected: dict, binary
) -> dict:
    metadata = {
        "format": "vcwc",
        "vcwc_version": __version__,
        "ffmpeg_version": ffmpeg.version(binary) if binary else None,
        "source": SourceRecord(
            source.prefix,
            source.container_key,
            source.extras,
            tuple(source.dropped),
            source.shards,
            source.shard_metadata,
        ).to_dict(),
        "tensors": [record.to_dict() for record in records],
        "frames": [f.to_dict() for f in encoded.frames],
        "recipe": recipe.to_dict(),
    }
    if methods.report:
        metadata["methods"] = methods.report
    if methods.correction is not None:
        metadata["bias_correction"] = {
            "method": "batchnorm_driven_noise",
            "corrected": sorted(corrected),
            "uncorrectable": sorted(methods.correction.uncorrectable),
        }
    return metadata
