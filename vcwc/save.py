"""Model files out: .safetensors and .pt files and sharded safetensors folders, a tensor at a time.

Writing is atomic: a file or folder appears whole or not at all. A sharded folder gets the shard file
names and tensor-to-shard layout of the checkpoint the file came from, and model.safetensors.index.json.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InputError
from .files import atomic_directory, atomic_write, check_output
from .format.safetensors import ITEM_BYTES, SafetensorsWriter
from .io import DTYPE_NAMES, EXTRAS_KEY, INDEX_FILE, SINGLE_FILE, TORCH_SUFFIXES, tensor_bytes, torch_from_bytes


@dataclass(frozen=True)
class OutputTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]


def write_model(
    path: str | os.PathLike,
    tensors: list[OutputTensor],
    produce,
    *,
    force: bool = False,
    extras: dict | None = None,
    container_key: str | None = None,
    shards: dict[str, str] | None = None,
    shard_metadata: dict | None = None,
) -> Path:
    """Write tensors as .safetensors, .pt/.pth, or a sharded safetensors folder.

    `produce()` yields (name, bytes) in the order of `tensors`, one at a time: safetensors output is
    streamed, so memory holds one tensor. A folder gets the shard file names and tensor-to-shard layout
    of `shards` (one model.safetensors without it) and model.safetensors.index.json. A .pt file gets the
    checkpoint's shape back when `container_key` is given ({key: state dict, **extras}); a .safetensors
    file keeps `extras` as JSON in its metadata.
    """
    folder = _is_folder_target(path)
    path = Path(path)
    metadata = {EXTRAS_KEY: json.dumps(extras)} if extras else None
    if folder:
        return atomic_directory(
            path, lambda folder: _write_shards(folder, tensors, produce(), shards, shard_metadata, metadata), force
        )
    if path.suffix == ".safetensors":

        def write(temporary: str) -> None:
            with SafetensorsWriter(temporary, [(t.name, t.dtype, t.shape) for t in tensors], metadata) as writer:
                for name, data in produce():
                    writer.write(name, data)

        return atomic_write(path, write, force)
    if path.suffix in TORCH_SUFFIXES:
        check_output(path, force)
        info = {t.name: t for t in tensors}
        state_dict = {name: torch_from_bytes(data, info[name].dtype, info[name].shape) for name, data in produce()}
        checkpoint = {container_key: state_dict, **(extras or {})} if container_key else state_dict
        return atomic_write(path, lambda temporary: torch.save(checkpoint, temporary), force)
    raise InputError(f"output {str(path)!r}: use a .safetensors or .pt/.pth suffix, or a folder (ending in /)")


def _is_folder_target(path: str | os.PathLike) -> bool:
    """A trailing slash or an existing folder means a sharded folder."""
    return str(path).endswith(("/", os.sep)) or Path(path).is_dir()


def _write_shards(
    folder: Path,
    tensors: list[OutputTensor],
    produced,
    shards: dict[str, str] | None,
    shard_metadata: dict | None,
    metadata: dict | None,
) -> None:
    """Every shard open at once, each tensor written to its own as it comes: memory holds one tensor."""
    layout = shards or {}
    files: dict[str, list[OutputTensor]] = {}
    for tensor in tensors:
        files.setdefault(layout.get(tensor.name, SINGLE_FILE), []).append(tensor)
    shard_header = {"format": "pt"} if shards is not None else metadata
    writers = {
        name: SafetensorsWriter(folder / name, [(t.name, t.dtype, t.shape) for t in members], shard_header)
        for name, members in files.items()
    }
    try:
        for name, data in produced:
            writers[layout.get(name, SINGLE_FILE)].write(name, data)
    finally:
        for writer in writers.values():
            writer.close()
    if shards is not None:
        total = sum(math.prod(t.shape) * ITEM_BYTES[t.dtype] for t in tensors)
        index = {
            "metadata": {**(shard_metadata or {}), "total_size": total},
            "weight_map": {t.name: layout.get(t.name, SINGLE_FILE) for t in tensors},
        }
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2))


def save_state_dict(
    state_dict: dict[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    force: bool = False,
    extras: dict | None = None,
    container_key: str | None = None,
) -> Path:
    """Write an in-memory state dict as .safetensors, .pt/.pth, or a folder."""
    tensors = [OutputTensor(name, DTYPE_NAMES[t.dtype], tuple(t.shape)) for name, t in state_dict.items()]

    def produce():
        for name, tensor in state_dict.items():
            yield name, tensor_bytes(tensor, DTYPE_NAMES[tensor.dtype])

    return write_model(path, tensors, produce, force=force, extras=extras, container_key=container_key)
