"""Turn an architecture (a registered name, "MODULE:CALLABLE", or a module) into a model holding given weights.

`MODULE:CALLABLE` names any importable module, dotted or not, found on sys.path, PYTHONPATH or in the
current directory (a path to a .py file works too), and a callable in it that takes no arguments and
returns a torch.nn.Module. Weights are loaded strictly: a missing, unexpected or misshapen key is an
error naming it, never a layer silently left at its initial values (a tied tensor stored under one of its
names, and a checkpoint's value for a non-persistent buffer, are not mismatches: see check_state_dict).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, first_line
from .registry import ARCHITECTURES, Preprocessing, get_architecture


class StateDictMismatchError(InputError):
    """A state dict does not fit the model: missing, unexpected or wrongly shaped entries."""


@dataclass(frozen=True)
class Architecture:
    """What vcwc knows of a model's architecture: how to build it, and one input's shape if known."""

    name: str
    factory: object  # a callable returning a fresh nn.Module
    input_shape: tuple[int, ...] | None = None
    preprocess: Preprocessing | None = None
    from_folder: bool = False  # named by the model folder's config.json, not by the user

    def build(self) -> nn.Module:
        return self.factory()


def resolve(arch: str | nn.Module, input_shape: tuple[int, ...] | None = None) -> Architecture:
    """An Architecture from a registered name, "MODULE:CALLABLE", or a module (which is copied when built)."""
    if isinstance(arch, nn.Module):
        import copy

        return Architecture(type(arch).__name__, lambda: copy.deepcopy(arch), input_shape)
    if not isinstance(arch, str) or not arch:
        raise InputError(f"an architecture is a registered name, MODULE:CALLABLE or a torch module, got {arch!r}")
    if arch in ARCHITECTURES or ":" not in arch:
        spec = get_architecture(arch)
        module_name, function = spec.builder.split(":")
        builder = getattr(importlib.import_module(module_name), function)
        return Architecture(
            arch, lambda: builder(*spec.arguments), tuple(input_shape or spec.input_shape), spec.preprocess
        )
    return Architecture(arch, _import_callable(arch), tuple(input_shape) if input_shape else None)


def _import_callable(spec: str):
    module_name, _, name = spec.rpartition(":")
    if not module_name or not name:
        raise InputError(f"architecture {spec!r}: expected MODULE:CALLABLE")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(f"no file {module_name}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            added = os.getcwd() not in sys.path and "" not in sys.path
            if added:
                sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(os.getcwd())
    except Exception as exc:  # an import runs arbitrary code: any failure is the user's module's
        raise InputError(
            f"architecture {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    try:
        factory = getattr(module, name)
    except AttributeError:
        raise InputError(f"architecture {spec!r}: {module_name!r} has no {name!r}") from None
    if not callable(factory):
        raise InputError(f"architecture {spec!r}: {name!r} is a {type(factory).__name__}, not a callable")
    try:
        required = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):
        required = []
    if required:
        raise InputError(
            f"architecture {spec!r}: {name}() needs arguments ({', '.join(required)}); give a callable that takes none"
        )

    def build() -> nn.Module:
        try:
            model = factory()
        except Exception as exc:
            raise InputError(f"architecture {spec!r}: {name}() failed ({type(exc).__name__}: {exc})") from None
        if not isinstance(model, nn.Module):
            raise InputError(
                f"architecture {spec!r}: {name}() returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    return build


def _list_keys(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _tied_names(model: nn.Module) -> dict[str, list[str]]:
    """Each parameter or buffer name to every name of the same tensor (tied weights, e.g. a language model's
    output layer that is its input embedding)."""
    groups: dict[int, list[str]] = {}
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        groups.setdefault(id(tensor), []).append(name)
    return {name: groups[id(tensor)] for name, tensor in named}


def _non_persistent_buffers(model: nn.Module, expected) -> dict[str, torch.Tensor]:
    return {name: buffer for name, buffer in model.named_buffers() if name not in expected}


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise StateDictMismatchError naming every missing, unexpected or wrongly shaped key.

    Two differences between a checkpoint and its model's state dict are not mismatches: a tied tensor
    stored once (safetensors cannot hold two names of one tensor, so Hugging Face writes a tied output
    layer under the embedding's name only), and a buffer the checkpoint holds that the model keeps out of
    its state dict (non-persistent, as transformers made `position_ids`)."""
    expected = model.state_dict()
    tied = _tied_names(model)
    missing = [key for key in expected if key not in state_dict and not any(n in state_dict for n in tied.get(key, ()))]
    loose = _non_persistent_buffers(model, expected)
    unexpected = [
        key
        for key in state_dict
        if key not in expected and not (key in loose and tuple(loose[key].shape) == tuple(state_dict[key].shape))
    ]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list_keys(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_list_keys(wrong_shape)}")
    if problems:
        raise StateDictMismatchError(f"the weights do not fit {type(model).__name__}: " + "; ".join(problems))


def load_weights_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a state dict that check_state_dict accepted: every key the model expects, a tied tensor through
    whichever of its names the checkpoint holds, a non-persistent buffer from the checkpoint's value."""
    expected = model.state_dict()
    model.load_state_dict({key: value for key, value in state_dict.items() if key in expected}, strict=False)
    loose = _non_persistent_buffers(model, expected)
    with torch.no_grad():
        for key, value in state_dict.items():
            if key in loose:
                loose[key].copy_(value)


def build_model(
    arch: str | nn.Module | Architecture, state_dict: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """Build the architecture, load `state_dict` strictly, set eval mode."""
    architecture = arch if isinstance(arch, Architecture) else resolve(arch)
    model = architecture.build()
    if state_dict is not None:
        check_state_dict(model, state_dict)
        load_weights_into(model, state_dict)
    return model.eval()
