"""Encode and decode tensors with NNCodec, inside NNCodec's own Python environment.

Started by vcwc/bench/nncodec.py as `PYTHON -I nncodec_worker.py WORKDIR` (or `--check`). It must not import vcwc
or anything that needs numpy 2: it runs with NNCodec's numpy<2. Everything crosses the process boundary as
files, none of them pickled:

  WORKDIR/request.json   {"names": [...], "qp": int, "use_dq": bool, "repeats": int (optional, default 1)}
  WORKDIR/tensors.npz    arr_0, arr_1, ... float32, in the order of "names"
  -> WORKDIR/bitstream.nnc, WORKDIR/reconstructed.npz (same layout), WORKDIR/result.json

On failure it prints a traceback to stderr and exits with status 1.
"""

import contextlib
import json
import os
import platform
import sys
import time
import traceback
import types

# Run by path, Python puts this folder (vcwc/bench/) first on sys.path, where vcwc's own nncodec.py would shadow
# the real package. vcwc starts us with -I, which leaves it out; this covers a plain `python worker.py`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]


def provide_torchvision() -> bool:
    """Put a stand-in torchvision in place if the real one is missing; True if we did.

    nncodec.nn imports modules that build torchvision transforms and subclass torchvision datasets at
    import time (for its training use cases). Encoding a dict of arrays never calls them, and torchvision
    does not install beside the CPU torch used here.
    """
    try:
        import torchvision  # noqa: F401
        return False
    except ImportError:
        pass

    class StandIn:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            raise RuntimeError("torchvision is not installed; vcwc's stand-in only lets nncodec import")

    def module(name: str) -> types.ModuleType:
        stub = types.ModuleType(name)
        stub.__path__ = []

        def attribute(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (StandIn,), {})

        stub.__getattr__ = attribute
        sys.modules[name] = stub
        return stub

    package = module("torchvision")
    package.__version__ = "0.0+vcwc.stand.in"
    for name in ("datasets", "transforms", "models"):
        setattr(package, name, module(f"torchvision.{name}"))
    return True


def versions() -> dict:
    from importlib import metadata

    import numpy
    import torch

    return {"nncodec": metadata.version("nncodec"), "numpy": numpy.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def run(workdir: str) -> None:
    started = time.time()
    stand_in = provide_torchvision()
    # NNCodec prints progress on stdout even when not verbose; keep our stdout clean.
    with contextlib.redirect_stdout(sys.stderr):
        import numpy as np
        from nncodec.nn import decode, encode
    imported = time.time()

    with open(os.path.join(workdir, "request.json")) as handle:
        request = json.load(handle)
    names = request["names"]
    with np.load(os.path.join(workdir, "tensors.npz"), allow_pickle=False) as archive:
        tensors = {name: np.ascontiguousarray(archive[f"arr_{index}"], dtype=np.float32)
                   for index, name in enumerate(names)}
    loaded = time.time()

    results = os.path.join(workdir, "nncodec_results")
    os.makedirs(results, exist_ok=True)
    encode_times, decode_times = [], []
    # Repeats time the same calls again in this warm process (for benchmarks); the results are identical.
    for _ in range(max(1, int(request.get("repeats", 1)))):
        with contextlib.redirect_stdout(sys.stderr):
            start = time.perf_counter()
            bitstream = bytes(encode(tensors, args={"qp": int(request["qp"]), "use_dq": bool(request["use_dq"]),
                                                    "verbose": False, "results": results}))
            encode_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            decoded = decode(bytearray(bitstream), args={"verbose": False})
            decode_times.append(time.perf_counter() - start)

    missing = [name for name in names if name not in decoded]
    if missing:
        raise RuntimeError(f"NNCodec decoded no tensor named {', '.join(map(repr, missing[:5]))}")
    reconstructed = {}
    for index, name in enumerate(names):
        array = np.asarray(decoded[name], dtype=np.float32)
        if array.size != tensors[name].size:
            raise RuntimeError(f"NNCodec decoded {name!r} with {array.size} values, expected {tensors[name].size}")
        reconstructed[f"arr_{index}"] = array.reshape(tensors[name].shape)
    with open(os.path.join(workdir, "bitstream.nnc"), "wb") as handle:
        handle.write(bitstream)
    np.savez(os.path.join(workdir, "reconstructed.npz"), **reconstructed)
    result = {
        "bitstream_bytes": len(bitstream),
        # Each tensor's name travels in the bitstream as a NUL-terminated string (topology_elem_id).
        "name_bytes": sum(len(name.encode()) + 1 for name in names),
        "encode_seconds": encode_times[0], "decode_seconds": decode_times[0],
        "encode_times": encode_times, "decode_times": decode_times,
        "started_at": started, "imported_at": imported, "import_seconds": imported - started,
        "load_seconds": loaded - imported, "torchvision_stand_in": stand_in, "versions": versions(),
    }
    with open(os.path.join(workdir, "result.json"), "w") as handle:
        json.dump(result, handle)


def check() -> None:
    stand_in = provide_torchvision()
    with contextlib.redirect_stdout(sys.stderr):
        import nncodec.nn  # noqa: F401
    print(json.dumps({**versions(), "torchvision_stand_in": stand_in, "python_path": sys.executable}))


def main(argv: list) -> int:
    if len(argv) != 1:
        print("usage: nncodec_worker.py WORKDIR | --check", file=sys.stderr)
        return 2
    try:
        check() if argv[0] == "--check" else run(argv[0])
    except BaseException:  # NNCodec reports bad input with SystemExit
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
