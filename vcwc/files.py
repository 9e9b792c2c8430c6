"""Reading model files safely and writing any file atomically."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import InputError

TORCH_SUFFIXES = {".pt", ".pth", ".th", ".bin", ".ckpt"}
DATA_PARALLEL_PREFIX = "module."
STATE_DICT_KEYS = ("state_dict", "model")


@dataclass
class LoadedModel:
    """A state dict plus what was around it in the file, so nothing is silently dropped."""

    state_dict: dict[str, torch.Tensor]
    prefix: str = ""  # stripped from every key, e.g. "module." from DataParallel
    container_key: str | None = None  # the checkpoint key the state dict sat under
    extras: dict = field(default_factory=dict)  # JSON-able non-tensor entries beside it (e.g. best_prec1)
    dropped: list[str] = field(default_factory=list)  # entries that could not be kept, named

    def restored_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {self.prefix + name: tensor for name, tensor in state_dict.items()}


def load_model(path: str | os.PathLike) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} is not a file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    return from_checkpoint(_torch_load(path), str(path))


def _load_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            state_dict = {name: handle.get_tensor(name) for name in handle.keys()}
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    loaded = from_checkpoint(state_dict, str(path))
    extras = metadata.get("vcwc_extras")
    if extras:
        loaded.extras = json.loads(extras)
    return loaded


def _torch_load(path: Path):
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: refused, loading it would run pickle code that is not plain tensors "
                         f"and containers ({first_line})") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{path}: not a PyTorch model file ({type(exc).__name__}: {str(exc)[:200]})") from None


def from_checkpoint(checkpoint, source: str = "<state dict>") -> LoadedModel:
    """Find the state dict in what torch.load returned (or a state dict itself)."""
    if isinstance(checkpoint, torch.nn.Module):
        checkpoint = checkpoint.state_dict()
    if not isinstance(checkpoint, dict):
        raise InputError(f"{source}: holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict")
    container_key = None
    if not _is_state_dict(checkpoint):
        container_key = next((key for key in STATE_DICT_KEYS if _is_state_dict(checkpoint.get(key))), None)
        if container_key is None:
            raise InputError(f"{source}: no state dict found (expected a dict of tensors, or one under "
                             f"{' or '.join(map(repr, STATE_DICT_KEYS))})")
    state_dict = dict(checkpoint[container_key] if container_key else checkpoint)
    extras, dropped = {}, []
    for key, value in checkpoint.items():
        if key == container_key or container_key is None:
            continue
        if _json_able(value):
            extras[key] = value
        else:
            dropped.append(key)
    prefix = ""
    if state_dict and all(name.startswith(DATA_PARALLEL_PREFIX) for name in state_dict):
        prefix = DATA_PARALLEL_PREFIX
        state_dict = {name[len(prefix):]: tensor for name, tensor in state_dict.items()}
    if not state_dict:
        raise InputError(f"{source}: the state dict is empty")
    return LoadedModel(state_dict, prefix, container_key, extras, dropped)


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _json_able(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def check_output(path: str | os.PathLike, force: bool = False) -> None:
    """Refuse to overwrite an existing file unless forced (called before long work, and again on write)."""
    if Path(path).exists() and not force:
        raise InputError(f"output {str(path)!r} exists; pass --force (force=True) to overwrite it")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None] | bytes, force: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename: never a half-written file.

    `write` is the bytes to write, or a function that writes the file at the path it is given.
    """
    path = Path(path)
    check_output(path, force)
    if not path.parent.exists():
        raise InputError(f"output folder {str(path.parent)!r} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        if isinstance(write, (bytes, bytearray, memoryview)):
            Path(temporary).write_bytes(write)
        else:
            write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, *, force: bool = False,
                    extras: dict | None = None, container_key: str | None = None) -> Path:
    """Write a state dict as .safetensors or .pt/.pth.

    A .pt file gets the checkpoint's shape back when `container_key` is given ({key: state dict,
    **extras}); a .safetensors file keeps `extras` as JSON in its metadata.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {"vcwc_extras": json.dumps(extras)} if extras else None
        tensors = {name: tensor.contiguous() for name, tensor in state_dict.items()}
        return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata), force)
    if path.suffix in TORCH_SUFFIXES:
        checkpoint = {container_key: state_dict, **(extras or {})} if container_key else state_dict
        return atomic_write(path, lambda temporary: torch.save(checkpoint, temporary), force)
    raise InputError(f"output {str(path)!r}: use a .safetensors or .pt/.pth suffix")
