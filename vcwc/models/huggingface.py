"""The architecture of a Hugging Face model folder, from its config.json, for the data-free methods.

A checkpoint saved by `transformers` (or sentence-transformers) sits beside a config.json that names its
class and sizes. Where no architecture is given, vcwc builds that class with `transformers` (an optional
dependency) and uses it if the weights fit it exactly, so `vcwc compress folder/model.safetensors` gets
the methods that run the model without an --arch callable. It is never a guess that could go wrong
silently: the class must take the file's tensors by name and shape (checked on the meta device, without
memory for the weights), code shipped in the folder (`auto_map`) is never run, and each reason it does not
apply is a note, the file then compressed weight-only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError, first_line
from .build import Architecture, check_state_dict

CONFIG = "config.json"


def config_path(model_path: str | Path) -> Path | None:
    """The config.json of a model folder, or of the folder a weights file sits in, where there is one."""
    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    candidate = folder / CONFIG
    return candidate if candidate.is_file() else None


def folder_architecture(
    model_path: str | Path, shapes: dict[str, tuple[int, ...]], notes: list[str]
) -> Architecture | None:
    """The transformers class named by the config.json beside `model_path` whose parameters are the tensors
    `shapes` (name to shape), as an Architecture; None, with a note saying why, where there is none."""
    path = config_path(model_path)
    if path is None:
        return None
    declined = f"{path} is not used (weight-only)"
    try:
        fields = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{declined}: not readable JSON ({type(exc).__name__})")
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("model_type"), str):
        notes.append(f"{declined}: it names no Hugging Face model_type")
        return None
    if "auto_map" in fields:
        notes.append(f"{declined}: its model is code shipped in the folder (auto_map), which vcwc does not run")
        return None
    try:
        import transformers
    except ImportError:
        notes.append(f"{declined}: building its model needs transformers (pip install 'vcwc[hf]')")
        return None
    try:
        config = transformers.AutoConfig.from_pretrained(str(path.parent), local_files_only=True)
    except Exception as exc:  # transformers' own errors for a config it cannot read
        notes.append(f"{declined}: transformers cannot read it ({type(exc).__name__}: {first_line(exc, 200)})")
        return None
    wanted = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    for build in _candidates(transformers, config):
        try:
            with torch.device("meta"):
                model = build()
            check_state_dict(model, wanted)
        except Exception:  # weights that do not fit it, or a class this config cannot build
            continue
        name = type(model).__name__
        notes.append(f"architecture: {name} from {path} (transformers {transformers.__version__})")
        return Architecture(name, _named_failures(build, name), _image_shape(config), from_folder=True)
    notes.append(f"{declined}: no transformers class it names takes the file's tensors")
    return None


def _candidates(transformers, config):
    """A builder for each class the config names, then for the bare model (what sentence-transformers
    saves under a config that names a task class)."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None) if isinstance(name, str) else None
        if isinstance(cls, type):
            yield lambda cls=cls: cls(config)
    yield lambda: transformers.AutoModel.from_config(config)


def _named_failures(build, name: str):
    def named() -> torch.nn.Module:
        try:
            return build()
        except Exception as exc:  # built on the meta device already; in memory it may still fail
            raise InputError(f"{name} could not be built ({type(exc).__name__}: {first_line(exc, 200)})") from None

    return named


def _image_shape(config) -> tuple[int, ...] | None:
    """One input's shape for a vision model's config (channels, size, size); None for token models."""
    size, channels = getattr(config, "image_size", None), getattr(config, "num_channels", None)
    if isinstance(size, int) and isinstance(channels, int):
        return (channels, size, size)
    return None
