"""Writing files and folders atomically: a result appears whole under its name, or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputError


def check_output(path: str | os.PathLike, force: bool = False) -> None:
    """Refuse to overwrite an existing file unless forced (called before long work, and again on write)."""
    if Path(path).exists() and not force:
        raise InputError(f"output {str(path)!r} exists; pass force=True to overwrite it")


def _default_mode(path: str, directory: bool = False) -> None:
    # mkstemp/mkdtemp create 0600/0700 entries; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


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
    _default_mode(temporary)
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


def atomic_directory(path: str | os.PathLike, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Fill a temporary folder beside `path`, then move its files into place.

    A missing or empty folder is replaced whole. With `force`, a non-empty folder gets the new files (an
    existing file of the same name is overwritten) and keeps every other file: a folder that also holds
    a model's config or tokenizer keeps them. A failure leaves nothing of the new files behind.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"output {str(path)!r} exists and is not a folder")
        if any(path.iterdir()) and not force:
            raise InputError(f"output folder {str(path)!r} is not empty; pass force=True to write into it")
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    _default_mode(str(temporary), directory=True)
    try:
        fill(temporary)
        if path.exists() and any(path.iterdir()):
            for item in sorted(temporary.iterdir()):
                os.replace(item, path / item.name)
            temporary.rmdir()
        else:
            if path.exists():
                path.rmdir()
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return path
