"""The NNCodec baseline (ISO/IEC 15938-17 reference software), run in its own Python environment.

NNCodec needs numpy<2, so it cannot live beside vcwc: this module starts vcwc/bench/nncodec_worker.py with the
NNCodec environment's interpreter and exchanges tensors through .npz files and options and results through
JSON in a temporary folder. Set the environment up with scripts/setup_nncodec.sh. This module imports
without NNCodec installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, NNCodecError, NNCodecUnavailable

PYTHON_ENV = "VCWC_NNCODEC_PYTHON"
# Where scripts/setup_nncodec.sh builds the environment by default: the user's data folder, not the package.
DEFAULT_VENV = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vcwc" / "nncodec-venv"
WORKER = Path(__file__).resolve().with_name("nncodec_worker.py")
DEFAULT_TIMEOUT_SECONDS = 3600.0
SETUP_HINT = (
    f"run scripts/setup_nncodec.sh from a vcwc checkout (it builds {DEFAULT_VENV} and prints its "
    f"python), or point ${PYTHON_ENV} at a Python that has nncodec 2.1.3"
)


@dataclass
class NNCodecResult:
    """One encode + decode. Times are NNCodec's own calls; start-up is the interpreter plus its imports."""

    bitstream_bytes: int
    reconstructed: dict[str, np.ndarray]
    encode_seconds: float
    decode_seconds: float
    version: str
    startup_seconds: float = 0.0
    worker_seconds: float = 0.0  # the whole subprocess, including file exchange
    name_bytes: int = 0  # tensor names carried in the bitstream (part of bitstream_bytes)
    bitstream: bytes = field(default=b"", repr=False)
    versions: dict = field(default_factory=dict)  # nncodec, numpy, torch and python of the worker
    encode_times: list[float] = field(default_factory=list)  # every repeat, the first is encode_seconds
    decode_times: list[float] = field(default_factory=list)


def find_python(python: str | os.PathLike | None = None) -> str:
    """The NNCodec environment's interpreter: `python`, else $VCWC_NNCODEC_PYTHON, else the default venv.

    An explicit choice that does not exist is an InputError; nothing configured is NNCodecUnavailable.
    """
    chosen = python or os.environ.get(PYTHON_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            source = "the python option" if python else f"${PYTHON_ENV}"
            raise InputError(
                f"NNCodec python {str(chosen)!r} (from {source}) does not exist or is not executable; {SETUP_HINT}"
            )
        return str(path)
    default = DEFAULT_VENV / "bin" / "python"
    if default.is_file():
        return str(default)
    raise NNCodecUnavailable(f"the NNCodec baseline needs its own Python environment and none is set up: {SETUP_HINT}")


def worker_command(python: str, argument: str) -> list[str]:
    # -I: ignore PYTHONPATH and the user's site-packages (they may hold numpy 2), and do not put the
    # worker's folder (vcwc/bench/, whose module names could shadow others) first on sys.path.
    return [python, "-I", str(WORKER), argument]


def check(python: str | os.PathLike | None = None, *, timeout: float = 300.0) -> dict:
    """Versions of the NNCodec environment (nncodec, numpy, torch, python), after a trial import."""
    command = worker_command(find_python(python), "--check")
    completed = _run(command, timeout)
    try:
        return json.loads(completed.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise NNCodecError("NNCodec worker's --check printed no JSON", command, completed.stderr) from None


def nncodec_roundtrip(
    tensors: dict[str, np.ndarray],
    qp: int,
    *,
    use_dq: bool = True,
    python: str | os.PathLike | None = None,
    timeout: float | None = None,
    repeats: int = 1,
) -> NNCodecResult:
    """Encode `tensors` (float32) with NNCodec at `qp` and decode them again, in the NNCodec environment.

    `repeats` > 1 times the encode and decode that many times in the one warm worker (benchmarks).
    """
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)):
        raise InputError(f"NNCodec qp must be a whole number, not {qp!r}")
    if not tensors:
        raise InputError("NNCodec: no tensors to code")
    names = list(tensors)
    arrays = {}
    for index, name in enumerate(names):
        array = np.asarray(tensors[name])
        if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
            raise InputError(f"NNCodec codes non-empty float tensors; {name!r} is {array.dtype} {array.shape}")
        arrays[f"arr_{index}"] = np.ascontiguousarray(array, dtype=np.float32)
    command_python = find_python(python)

    with tempfile.TemporaryDirectory(prefix="vcwc-nncodec-") as workdir:
        folder = Path(workdir)
        (folder / "request.json").write_text(
            json.dumps({"names": names, "qp": int(qp), "use_dq": bool(use_dq), "repeats": int(repeats)})
        )
        np.savez(folder / "tensors.npz", **arrays)
        command = worker_command(command_python, workdir)
        launched = time.time()
        start = time.perf_counter()
        completed = _run(command, DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout)
        worker_seconds = time.perf_counter() - start
        try:
            result = json.loads((folder / "result.json").read_text())
            with np.load(folder / "reconstructed.npz", allow_pickle=False) as archive:
                reconstructed = {name: archive[f"arr_{index}"] for index, name in enumerate(names)}
            bitstream = (folder / "bitstream.nnc").read_bytes()
        except (OSError, ValueError, KeyError) as exc:
            raise NNCodecError(
                f"NNCodec worker exited 0 but its output is unreadable ({exc})", command, completed.stderr
            ) from None
    return NNCodecResult(
        bitstream_bytes=result["bitstream_bytes"],
        reconstructed=reconstructed,
        encode_seconds=result["encode_seconds"],
        decode_seconds=result["decode_seconds"],
        version=result["versions"]["nncodec"],
        startup_seconds=max(0.0, result["imported_at"] - launched),
        worker_seconds=worker_seconds,
        name_bytes=result["name_bytes"],
        bitstream=bitstream,
        versions=result["versions"],
        encode_times=result["encode_times"],
        decode_times=result["decode_times"],
    )


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise NNCodecError(f"NNCodec worker timed out after {timeout:g} s", command, stderr) from None
    except OSError as exc:
        raise NNCodecError(f"cannot start the NNCodec worker ({exc.strerror})", command) from None
    if completed.returncode != 0:
        raise NNCodecError(f"NNCodec worker failed (exit status {completed.returncode})", command, completed.stderr)
    return completed
