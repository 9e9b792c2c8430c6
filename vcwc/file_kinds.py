"""What a model file is before a reader opens it: a .vcwc file, a TorchScript archive, or another
framework's format (GGUF, HDF5, TensorFlow Lite, ONNX, NumPy) is named in a one-line error with the fix,
instead of a reader's complaint about bytes it does not understand."""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import InputError
from .format.container import MAGIC


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save): a zip whose records include the model's code."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# Model formats of other frameworks, by their first bytes (and where they have none, the suffix): named in
# the error, with the way to safetensors, instead of torch.load's complaint about a zip archive.
_FOREIGN_FORMATS = (
    (
        lambda head, path: head.startswith(b"GGUF"),
        "a GGUF file (llama.cpp)",
        "load it with transformers' from_pretrained(FOLDER, gguf_file=NAME) and save_pretrained() it as safetensors",
    ),
    (
        lambda head, path: head.startswith(b"\x89HDF\r\n\x1a\n"),
        "an HDF5 file (Keras)",
        "export its weights to a PyTorch state dict or safetensors",
    ),
    (lambda head, path: head[4:8] == b"TFL3", "a TensorFlow Lite model", "export its weights to safetensors"),
    (lambda head, path: path.suffix == ".onnx", "an ONNX model", "export its initializers to safetensors"),
    (
        lambda head, path: path.suffix == ".npz",
        "a NumPy .npz archive",
        "save the arrays with safetensors.numpy.save_file(dict(numpy.load(PATH)), 'weights.safetensors')",
    ),
)


def refuse_other_kinds(path: Path) -> None:
    """Refuse, with the fix, a file that is not a model vcwc reads: a .vcwc file, or another framework's."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(MAGIC):
        raise InputError(
            f"{path}: is a .vcwc file, already compressed; decompress it first, or give the original model"
        )
    for matches, what, remedy in _FOREIGN_FORMATS:
        if matches(head, path):
            raise InputError(
                f"{path}: {what}; vcwc reads safetensors, PyTorch state dicts and checkpoints, and Hugging Face "
                f"folders: {remedy}"
            )
