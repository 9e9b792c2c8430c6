"""Model files in: checkpoints, safetensors files and sharded safetensors folders (vcwc.save writes them).

Reading never runs pickle code (`torch.load(weights_only=True)`, or safetensors). A model is a
`ModelSource`: tensor names, dtypes and shapes, and each tensor read when asked for. PyTorch
checkpoints are loaded whole; safetensors files and sharded folders (a Hugging Face style folder with
model.safetensors.index.json, or a single model.safetensors) are read one tensor at a time, so a model
larger than memory can be compressed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .file_kinds import is_torchscript, refuse_other_kinds
from .format.safetensors import SafetensorsFile, from_array

TORCH_SUFFIXES = {".pt", ".pth", ".th", ".bin", ".ckpt"}
DATA_PARALLEL_PREFIX = "module."
STATE_DICT_KEYS = ("state_dict", "model")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLED_FILE = "pytorch_model.bin"
EXTRAS_KEY = "vcwc_extras"
DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
TORCH_DTYPES = {name: dtype for dtype, name in DTYPE_NAMES.items()}
FLOAT_NAMES = ("float32", "float16", "bfloat16", "float64")


@dataclass
class ModelSource:
    """A model's tensors, in order, each read on demand; and what surrounded them in the file."""

    source: str = "<state dict>"
    prefix: str = ""  # stripped from every key, e.g. "module." from DataParallel
    container_key: str | None = None  # the checkpoint key the state dict sat under
    extras: dict = field(default_factory=dict)  # JSON-able non-tensor entries beside it (e.g. best_prec1)
    dropped: list[str] = field(default_factory=list)  # entries that could not be kept, named
    shards: dict[str, str] | None = None  # tensor -> shard file name, for a sharded checkpoint
    shard_metadata: dict | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # tensor -> the earlier tensor it shares storage with

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    def dtype(self, name: str) -> str:
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        raise NotImplementedError

    def array(self, name: str) -> np.ndarray:
        """The tensor's values as numpy (bfloat16 as float32, exactly)."""
        raise NotImplementedError

    def raw(self, name: str) -> bytes:
        """The tensor's bytes as stored, little-endian."""
        raise NotImplementedError

    def is_float(self, name: str) -> bool:
        return self.dtype(name) in FLOAT_NAMES

    def tensor(self, name: str) -> torch.Tensor:
        return torch_from_bytes(self.raw(name), self.dtype(name), self.shape(name))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor in memory, tied ones sharing storage as they did."""
        tensors: dict[str, torch.Tensor] = {}
        for name in self.names:
            tensors[name] = tensors[self.aliases[name]] if name in self.aliases else self.tensor(name)
        return tensors


class LoadedModel(ModelSource):
    """A model held in memory as a state dict of torch tensors."""

    def __init__(
        self,
        state_dict: dict[str, torch.Tensor],
        prefix: str = "",
        container_key: str | None = None,
        extras: dict | None = None,
        dropped: list[str] | None = None,
        source: str = "<state dict>",
    ):
        super().__init__(source, prefix, container_key, extras or {}, dropped or [])
        for name, tensor in state_dict.items():
            if tensor.dtype not in DTYPE_NAMES:
                raise InputError(f"{source}: tensor {name!r} has dtype {tensor.dtype}, which vcwc does not store")
            if tensor.layout != torch.strided or tensor.is_quantized:
                raise InputError(f"{source}: tensor {name!r} is not a dense tensor ({tensor.layout})")
        self._tensors = {name: tensor.detach().cpu() for name, tensor in state_dict.items()}
        self.aliases = _tied(self._tensors)

    @property
    def names(self) -> list[str]:
        return list(self._tensors)

    def dtype(self, name: str) -> str:
        return DTYPE_NAMES[self._tensors[name].dtype]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def array(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()

    def raw(self, name: str) -> bytes:
        tensor = self._tensors[name].contiguous()
        return tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""

    def tensor(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)


def _tied(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """Tensors that are views of the same memory with the same shape (tied weights): name -> first name."""
    first: dict[tuple, str] = {}
    aliases = {}
    for name, tensor in tensors.items():
        if tensor.numel() == 0:
            continue
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


class SafetensorsModel(ModelSource):
    """One safetensors file or a sharded folder, read a tensor at a time."""

    def __init__(
        self, files: list[Path], source: str, shards: dict[str, str] | None = None, shard_metadata: dict | None = None
    ):
        super().__init__(source, shards=shards, shard_metadata=shard_metadata)
        self._files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, SafetensorsFile] = {}
        for path in files:
            handle = SafetensorsFile(path)
            self._files[path.name] = handle
            for name in handle.entries:
                if name in self._where:
                    raise InputError(f"{source}: tensor {name!r} is in two files")
                self._where[name] = handle
            extras = handle.metadata.get(EXTRAS_KEY)
            if extras:
                try:
                    self.extras.update(json.loads(extras))
                except ValueError:
                    pass
        if shards is not None:
            missing = [name for name in shards if name not in self._where]
            if missing:
                raise InputError(f"{source}: the index lists {missing[0]!r}, which no shard holds")
            self._order = list(shards)
        else:
            self._order = [name for handle in self._files.values() for name in handle.entries]
        if not self._order:
            raise InputError(f"{source}: holds no tensors")

    @property
    def names(self) -> list[str]:
        return list(self._order)

    def dtype(self, name: str) -> str:
        return self._where[name].entries[name].dtype

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name].entries[name].shape

    def array(self, name: str) -> np.ndarray:
        return self._where[name].array(name)

    def raw(self, name: str) -> bytes:
        return self._where[name].read(name)


def load_model(path: str | os.PathLike) -> ModelSource:
    """A model file: a PyTorch checkpoint (.pt/.pth/.th/.bin/.ckpt), a .safetensors file, a sharded
    safetensors folder or its model.safetensors.index.json."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        return _load_folder(path)
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} is not a file")
    refuse_other_kinds(path)
    if path.name.endswith(".index.json"):
        return _load_index(path)
    if path.suffix == ".safetensors":
        return SafetensorsModel([path], str(path))
    return from_checkpoint(_torch_load(path), str(path))


def model_files(path: str | os.PathLike) -> list[Path]:
    """The files a model path reads, in order: a sharded model's index and then its shards, else the file
    (for a folder, the files load_model reads in it)."""
    path = Path(path)
    if path.is_dir():
        path = next((path / name for name in (INDEX_FILE, SINGLE_FILE, PICKLED_FILE) if (path / name).is_file()), path)
    if not path.name.endswith(".index.json"):
        return [path]
    source = _load_index(path)
    return [path, *(path.parent / name for name in dict.fromkeys(source.shards.values()))]


def _load_folder(folder: Path) -> ModelSource:
    if (folder / INDEX_FILE).is_file():
        return _load_index(folder / INDEX_FILE)
    if (folder / SINGLE_FILE).is_file():
        return SafetensorsModel([folder / SINGLE_FILE], str(folder))
    if (folder / PICKLED_FILE).is_file():  # older Hugging Face folders; read with weights_only like any checkpoint
        return load_model(folder / PICKLED_FILE)
    raise InputError(f"{folder}: a model folder needs {INDEX_FILE}, {SINGLE_FILE} or {PICKLED_FILE}")


def _load_index(index: Path) -> ModelSource:
    try:
        document = json.loads(index.read_text())
        weight_map = document["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError("weight_map is not an object of file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{index}: not a readable safetensors index ({exc})") from None
    names = list(dict.fromkeys(weight_map.values()))
    for name in names:
        if Path(name).name != name or not (index.parent / name).is_file():
            raise InputError(f"{index}: shard {name!r} is not a file beside the index")
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    return SafetensorsModel([index.parent / name for name in names], str(index.parent), dict(weight_map), metadata)


def _torch_load(path: Path):
    if is_torchscript(path):
        raise InputError(
            f"{path}: a TorchScript archive; vcwc reads weights alone (loading TorchScript runs its code): save "
            f"them with torch.save(torch.jit.load(PATH).state_dict(), 'weights.pt') or safetensors"
        )
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", re.sub(r"\x1b\[[0-9;]*m", "", str(exc)))
        what = f" (it holds {found.group(1)})" if found else ""
        raise InputError(
            f"{path}: refused: it holds Python objects other than tensors{what}, and loading them "
            f"would run pickle code; save the weights alone with torch.save(model.state_dict(), "
            f"PATH) or safetensors"
        ) from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{path}: not a PyTorch model file ({type(exc).__name__}: {str(exc)[:200]})") from None


def from_checkpoint(checkpoint, source: str = "<state dict>") -> LoadedModel:
    """Find the state dict in what torch.load returned (or a state dict, or a module)."""
    if isinstance(checkpoint, ModelSource):
        return checkpoint
    if isinstance(checkpoint, torch.nn.Module):
        checkpoint = checkpoint.state_dict(keep_vars=False)
    if not isinstance(checkpoint, dict):
        raise InputError(f"{source}: holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict")
    container_key = None
    if not _is_state_dict(checkpoint):
        container_key = _state_dict_key(checkpoint, source)
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
        state_dict = {name[len(prefix) :]: tensor for name, tensor in state_dict.items()}
    if not state_dict:
        raise InputError(f"{source}: the state dict is empty")
    return LoadedModel(state_dict, prefix, container_key, extras, dropped, source)


def _state_dict_key(checkpoint: dict, source: str) -> str:
    """The key of a training checkpoint's state dict: a usual name, else the only dict of tensors in it
    (a checkpoint of {'step', 'model_state', 'optimizer_state'}, say; an optimizer's state is nested)."""
    known = next((key for key in STATE_DICT_KEYS if _is_state_dict(checkpoint.get(key))), None)
    if known is not None:
        return known
    found = [key for key, value in checkpoint.items() if isinstance(key, str) and _is_state_dict(value)]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(
            f"{source}: several state dicts ({', '.join(map(repr, found))}); save the one to compress alone"
        )
    raise InputError(
        f"{source}: no state dict found (expected a dict of tensors, or a checkpoint dict holding one, "
        f"e.g. under {' or '.join(map(repr, STATE_DICT_KEYS))})"
    )


def _is_state_dict(value) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _json_able(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def torch_from_bytes(data: bytes, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not data:
        return torch.empty(shape, dtype=TORCH_DTYPES[dtype])
    return torch.frombuffer(bytearray(data), dtype=TORCH_DTYPES[dtype]).reshape(shape)


def tensor_bytes(values, dtype: str) -> bytes:
    """Little-endian bytes of a tensor or array as `dtype`."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().cpu().to(TORCH_DTYPES[dtype]).contiguous()
        return tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return from_array(np.asarray(values), dtype)
