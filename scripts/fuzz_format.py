"""Fuzz the .vcwc reader with corrupted and crafted files, each read in an isolated child process.

    python scripts/fuzz_format.py --cases 10000 --out results/fuzz/ [--seed 0] [--workers 2]
    python scripts/fuzz_format.py --replay 1234 [--seed 0]      # one case, in this process, with its traceback

Inputs: tests/golden/tiny_x264_v1.vcwc (also with its metadata stored uncompressed) and files made here by
each software codec (x264, x265, aom, svtav1) from a small model (a conv weight, a linear weight, biases,
an int64 scalar, bf16 tensors, a tied tensor), lossless and lossy, per-tensor and per-channel scales, plus
one made with the "smallest" recipe (fixed step). Each case mutates one of them:

  corrupted  bytes flipped, cut, inserted, deleted or appended anywhere in the file: it must decode to the
             original tensors or raise a VcwcError; different tensors without an error is silent corruption.
  crafted    the metadata changed and stored with a valid header checksum (fields deleted, retyped, made
             huge, negative or zero, lists emptied or grown, strings changed, objects replaced or moved in
             from another file, blobs re-sliced with matching CRCs): a VcwcError, or a decode.

and reads it three ways: `vcwc info`-style (Container, size_report, describe_streams), vcwc.decompress on
the bytes, and CompressedModel on a file on disk. Any other exception, silent corruption, a case over 20 s
or over 6 GiB of address space (RLIMIT_AS in the worker, thread pools and ffmpeg included; MemoryError or
a killed worker) is a failure of the reader. Workers are restarted when one dies or times out; the inputs
of failing cases are kept in OUT/failures/.

Writes OUT/fuzz.json (counts per outcome, VcwcError classes, examples) and OUT/fuzz.md. tests/test_format_fuzz.py
runs a short slice of the same cases.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import io
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

from vcwc.format.records import DTYPE_BYTES

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT / "tests" / "golden" / "tiny_x264_v1.vcwc"
TIMEOUT_SECONDS = 20.0
MEMORY_BYTES = 6 << 30
READY_TIMEOUT_SECONDS = 300.0  # a worker's start (imports torch) is not part of any case
CRAFTED_SHARE = 0.6
EXAMPLES_PER_OUTCOME = 5

IDENTICAL = "decoded-identical"
DIFFERENT = "decoded-different-crafted"
READ_ONLY = "read-ok-not-decoded"  # a metadata-only case that read without error
SILENT = "silent-corruption"
TIMEOUT = "timeout"
MEMORY = "memory"
VCWC_ERROR = "VcwcError"
OTHER = "other-exception"
FAILURES = (SILENT, TIMEOUT, MEMORY, OTHER)


def is_failure(outcome: str) -> bool:
    return outcome.split(":")[0] in FAILURES


# Inputs ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Seed:
    name: str
    data: bytes
    metadata: dict  # as stored, blob table included
    header_bytes: int

    @property
    def payload(self) -> bytes:
        return self.data[self.header_bytes :]


def small_model(tied: bool = False) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    model = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g),
        "fc.weight": torch.randn(10, 32, generator=g) * 0.1,
        "fc.bias": torch.randn(10, generator=g),
        "steps": torch.tensor(7, dtype=torch.int64),
        "emb.weight": torch.randn(6, 16, generator=g).to(torch.bfloat16),
        "emb.bias": torch.randn(16, generator=g).to(torch.bfloat16),
    }
    if tied:
        model["head.weight"] = model["emb.weight"]  # the same storage: written once, as an alias
    return model


def seed_recipes() -> list[tuple[str, object, bool]]:
    """(name, recipe, tied) of the files made fresh."""
    import vcwc

    lossless = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # video, as the seeds exercise it
    recipes = []
    for codec in ("x264", "x265", "aom", "svtav1"):
        for qp in (None, 30):
            for granularity in ("per_tensor", "per_channel"):
                name = f"{codec}-{'lossless' if qp is None else f'qp{qp}'}-{granularity}"
                recipes.append((name, lossless.with_changes(codec=codec, qp=qp, granularity=granularity), False))
    recipes.append(("smallest", vcwc.RECIPES["smallest"], False))
    recipes.append(("fast-raw-symbols", vcwc.RECIPES["fast"], False))  # tensors stored as raw int8 symbols
    recipes.append(
        (
            "x264-tied-float16-kernel_blocks",
            lossless.with_changes(codec="x264", uncoded="float16", arrangement="kernel_blocks"),
            True,
        )
    )
    return recipes


def make_seeds(golden: Path = GOLDEN) -> list[Seed]:
    import vcwc
    from vcwc.format import container

    files = [("golden", golden.read_bytes())]
    parsed = container.Container(files[0][1])
    files.append(
        ("golden-plain-metadata", container.with_metadata(files[0][1], parsed.metadata, compress_metadata=False))
    )
    for name, recipe, tied in seed_recipes():
        files.append((name, vcwc.compress(small_model(tied), recipe).data))
    seeds = []
    for name, data in files:
        parsed = container.Container(data)
        seeds.append(Seed(name, data, parsed.metadata, parsed.header_bytes))
    return seeds


def tensor_digest(state_dict) -> list[tuple[str, str, tuple[int, ...], str]]:
    """Names, dtypes, shapes and a hash of the bytes of a decoded state dict, in its order."""
    digest = []
    for name, tensor in state_dict.items():
        flat = tensor.detach().contiguous().reshape(-1)
        raw = flat.view(__import__("torch").uint8).numpy().tobytes() if flat.numel() else b""
        digest.append((name, str(tensor.dtype), tuple(tensor.shape), hashlib.sha256(raw).hexdigest()))
    return digest


def reference_digests(seeds: list[Seed]) -> dict[str, list]:
    import vcwc

    return {seed.name: tensor_digest(vcwc.decompress(seed.data)) for seed in seeds}


# Mutations ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    index: int
    seed: str
    kind: str  # "corrupted", "crafted" or "original"
    mutation: str
    data: bytes
    decode: bool = True  # False: metadata checks only (info-style reading, no ffmpeg)


HUGE = (2**31, 2**32, 2**62, 2**63, 2**64, 10**30)
JUNK = (None, True, False, 0, -1, 1.5, "", "junk", [], {}, [0], {"junk": 1}, 2**62)


def _random_path(doc, rng: random.Random) -> tuple:
    """A place in a JSON value as a key/index path, () for none: a random walk down from the root that stops
    at each level a third of the time (a top-level field, a tensor, one of its fields, ...). Walking, not
    listing every place, keeps a file of 60000 tensors cheap to mutate."""
    path, node = (), doc
    while isinstance(node, (dict, list)) and node:
        if isinstance(node, list):
            key = rng.randrange(len(node))
        else:  # objects and lists hold more to break than plain values: three times as likely
            keys = list(node)
            key = rng.choices(keys, [3 if isinstance(node[k], (dict, list)) else 1 for k in keys])[0]
        path, node = path + (key,), node[key]
        if rng.random() < 0.35:
            break
    return path


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _strings(value, found: set) -> set:
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, dict):
        for key, child in value.items():
            found.add(key)
            _strings(child, found)
    elif isinstance(value, list):
        for child in value:
            _strings(child, found)
    return found


def _objects(value, found: list) -> list:
    if isinstance(value, dict):
        found.append(value)
        for child in value.values():
            _objects(child, found)
    elif isinstance(value, list):
        for child in value:
            _objects(child, found)
    return found


def _integer_variants(value: int, rng: random.Random) -> list:
    return [
        str(value),
        float(value),
        rng.choice(HUGE),
        -rng.choice(HUGE),
        -1,
        -value,
        0,
        value + 1,
        value - 1,
        value * 2,
        value // 2,
        rng.randrange(0, 65),
        1,
    ]


def _new_value(value, rng: random.Random, doc, others: list[Seed], vocabulary: list[str]):
    """A replacement for `value`: retyped, made huge, negative or zero, emptied, grown, changed or moved in."""
    choice = rng.random()
    if choice < 0.12:  # any type: retyped
        return copy.deepcopy(rng.choice(JUNK))
    if isinstance(value, bool):
        return rng.choice([not value, 0, 1, "true", None])
    if isinstance(value, int):
        return rng.choice(_integer_variants(value, rng))
    if isinstance(value, float):
        return rng.choice(
            [str(value), int(value), -value, 0.0, 1e308, -1e308, float("nan"), float("inf"), value * 2**40, 2**62]
        )
    if isinstance(value, str):
        return rng.choice(
            [
                "",
                "x",
                value + "x",
                value[:-1],
                value.upper(),
                "\x00",
                "../x",
                "é" * 3,
                "a" * 5000,
                rng.choice(vocabulary),
                rng.choice(vocabulary),
                7,
                None,
            ]
        )
    if isinstance(value, list):
        options = ["empty", "todict", "junk", "swap", "reverse", "drop"] + ["duplicate"] * 3
        op = rng.choice(options)
        value = copy.deepcopy(value)
        if op == "empty" or not value:
            return [] if value else [copy.deepcopy(rng.choice(JUNK))]
        if op == "todict":
            return {str(i): item for i, item in enumerate(value)}
        if op == "junk":
            return value + [copy.deepcopy(rng.choice(JUNK))]
        if op == "swap" and len(value) > 1:
            i, j = rng.sample(range(len(value)), 2)
            value[i], value[j] = value[j], value[i]
            return value
        if op == "reverse":
            return value[::-1]
        if op == "drop":
            del value[rng.randrange(len(value))]
            return value
        return value + [copy.deepcopy(rng.choice(value)) for _ in range(rng.choice([1, 1, 2, 50]))]
    if isinstance(value, dict):
        op = rng.choice(["empty", "tolist", "another", "another", "junkkey", "dropkey"])
        if op == "empty":
            return {}
        if op == "tolist":
            return list(value.values())
        if op == "another":  # an object from elsewhere in this file or another one
            source = rng.choice([doc] + [seed.metadata for seed in others])
            return copy.deepcopy(rng.choice(_objects(source, [])))
        value = copy.deepcopy(value)
        if op == "junkkey":
            value[rng.choice(["junk", "blob", "offset", "length", "frame", "shape"])] = copy.deepcopy(rng.choice(JUNK))
        elif value:
            del value[rng.choice(list(value))]
        return value
    return copy.deepcopy(rng.choice(JUNK))


def _transplant(doc: dict, path: tuple, others: list[Seed], rng: random.Random) -> bool:
    """Put the value found at the same path in another file there: plausible, yet inconsistent."""
    other = rng.choice(others).metadata
    try:
        value = _get(other, path)
    except (KeyError, IndexError, TypeError):
        return False
    _get(doc, path[:-1])[path[-1]] = copy.deepcopy(value)
    return True


def _reslice_blob(doc: dict, seed: Seed, rng: random.Random) -> str | None:
    """Point a blob at other bytes of the payload, with their true CRC, so the junk reaches the decoders."""
    blobs = doc.get("blobs")
    if not isinstance(blobs, list) or not blobs or not isinstance(blobs[0], dict):
        return None
    index = rng.randrange(len(blobs))
    if not isinstance(blobs[index], dict):
        return None
    payload = seed.payload
    offset = rng.randrange(len(payload) + 1)
    length = rng.randrange(len(payload) - offset + 1)
    blobs[index].update(offset=offset, length=length, crc32=zlib.crc32(payload[offset : offset + length]) & 0xFFFFFFFF)
    if rng.random() < 0.3:
        blobs[index]["compression"] = rng.choice(["none", "zstd"])
    return f"blobs[{index}] resliced to {offset}+{length} with its CRC"


def _tensors(doc: dict, rng: random.Random, storage: str | None = None) -> dict | None:
    tensors = doc.get("tensors")
    if not isinstance(tensors, list):
        return None
    chosen = [t for t in tensors if isinstance(t, dict) and (storage is None or t.get("storage") == storage)]
    return rng.choice(chosen) if chosen else None


def _int64(value: int) -> int:
    """`value` wrapped as numpy's int64 arithmetic would wrap it."""
    return (value + 2**63) % 2**64 - 2**63


SHAPES = (
    [0, 2**62],
    [0, 2**63],
    [0, 10**30],
    [0, 2**40, 2**40],
    [2**31, 2**31],
    [2**62],
    [0],
    [0, 0],
    [1] * 17,
    [3, 0, 7],
    [],
    [1],
    [2, 3],
    [16 * 1048577, 1099510579201],
    [1, 16 * 1048577, 1099510579201],
    [8, 2**61],
    [4, 2**62, 4],
)


def _reshape(doc: dict, rng: random.Random, seed: Seed) -> str | None:
    """A tensor's shape changed with its length or matrix changed to match, so the decoder gets to see it.
    The matrix is sometimes computed as int64 arithmetic would (wrapping), as a careless reader would."""
    record = _tensors(doc, rng)
    if record is None:
        return None
    shape = list(rng.choice(SHAPES))
    record["shape"] = shape
    elements = 1
    for size in shape:
        elements *= size
    uncoded = record.get("uncoded")
    if isinstance(uncoded, dict):
        dtype = "float16" if uncoded.get("encoding") == "float16" else record.get("dtype")
        uncoded["length"] = elements * DTYPE_BYTES.get(dtype, 4)
    layout = record.get("layout")
    if isinstance(layout, dict) and shape:
        rest = 1
        for size in shape[1:]:
            rest *= size
        wrap = _int64 if rng.random() < 0.5 else int
        layout["matrix"] = [shape[0], wrap(rest)] if len(shape) > 1 else [1, shape[0]]
    return f"tensor {str(record.get('name'))[:40]!r} reshaped to {shape}"


def _move_uncoded(doc: dict, rng: random.Random, seed: Seed) -> str | None:
    """An uncoded tensor moved within or past its blob, whose compression may be flipped."""
    record = _tensors(doc, rng, "uncoded")
    if record is None or not isinstance(record.get("uncoded"), dict):
        return None
    uncoded = record["uncoded"]
    uncoded["offset"] = rng.choice([0, 1, 4, 64, 200, 4096, 2**31, 2**62])
    blobs = doc.get("blobs")
    if (
        rng.random() < 0.5
        and isinstance(blobs, list)
        and isinstance(uncoded.get("blob"), int)
        and 0 <= uncoded["blob"] < len(blobs)
        and isinstance(blobs[uncoded["blob"]], dict)
    ):
        blobs[uncoded["blob"]]["compression"] = rng.choice(["none", "zstd"])
    return f"tensor {str(record.get('name'))[:40]!r} moved to offset {uncoded['offset']}"


def _many_regions(doc: dict, rng: random.Random, seed: Seed) -> str | None:
    """A coded tensor made a column of N one-pixel regions stacked in a tall frame: valid-looking, and
    many rectangles for the overlap checks."""
    record = _tensors(doc, rng, "video")
    frames = doc.get("frames")
    if record is None or not isinstance(frames, list) or not frames or not isinstance(frames[0], dict):
        return None
    count = rng.choice([64, 2000, 16384])
    frames[0]["height"] = max(count, 16)
    record["shape"] = [count, 1]
    record["layout"] = {"arrangement": "rows", "matrix": [count, 1], "permutation": None}
    if isinstance(record.get("quantizer"), dict):
        record["quantizer"]["granularity"] = "per_tensor"
        if isinstance(record["quantizer"].get("scales"), dict):
            record["quantizer"]["scales"]["count"] = 1
    record["regions"] = [
        {"frame": 0, "x": 0, "y": i, "row": i, "col": 0, "width": 1, "height": 1} for i in range(count)
    ]
    if rng.random() < 0.5:
        record["regions"].reverse()
    # the other coded tensors' regions would overlap the column: they go
    doc["tensors"] = [
        t for t in doc["tensors"] if t is record or not (isinstance(t, dict) and t.get("storage") == "video")
    ]
    return f"tensor {str(record.get('name'))[:40]!r} split into {count} one-pixel regions"


MANY_TENSORS = (1000, 20000, 60000)  # 60000 took names.count minutes to find a repeated name


def _many_tensors(doc: dict, rng: random.Random, seed: Seed) -> str | None:
    """Thousands of empty tensors, perhaps with the last name repeated."""
    tensors = doc.get("tensors")
    if not isinstance(tensors, list):
        return None
    blobs = doc.get("blobs") if isinstance(doc.get("blobs"), list) else []
    blob = next((i for i, b in enumerate(blobs) if isinstance(b, dict) and b.get("kind") == "uncoded"), 0)
    count = rng.choice(MANY_TENSORS)
    tensors.extend(
        {
            "name": f"extra.{i}",
            "dtype": "float32",
            "shape": [0],
            "storage": "uncoded",
            "uncoded": {"blob": blob, "offset": 0, "length": 0, "encoding": "exact"},
        }
        for i in range(count)
    )
    if rng.random() < 0.5:
        tensors.append(copy.deepcopy(tensors[-1]))
    return f"{count} empty tensors added"


def _alias(doc: dict, rng: random.Random, seed: Seed) -> str | None:
    """An alias pointed at any name (itself, a later tensor, another alias, a tensor of another shape)."""
    tensors = doc.get("tensors")
    if not isinstance(tensors, list) or not tensors:
        return None
    names = [t.get("name") for t in tensors if isinstance(t, dict)] + ["missing", ""]
    record = _tensors(doc, rng, "alias")
    if record is None or rng.random() < 0.3:
        record = copy.deepcopy(rng.choice(tensors)) if isinstance(tensors[0], dict) else {}
        record.update(name=f"alias.{rng.randrange(100)}", storage="alias")
        tensors.insert(rng.randrange(len(tensors) + 1), record)
    record["alias_of"] = rng.choice(names)
    if rng.random() < 0.3:
        record["dtype"] = rng.choice(list(DTYPE_BYTES))
    return f"alias {str(record.get('name'))[:40]!r} of {str(record['alias_of'])[:40]!r}"


BOMB_BYTES = 8 << 30


@functools.lru_cache(maxsize=1)
def zstd_bomb() -> bytes:
    """One zstd frame of 8 GiB of zeros, about 256 kB: more than a worker's address space holds."""
    import zstandard

    out = io.BytesIO()
    chunk = bytes(64 << 20)
    with zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False, size=BOMB_BYTES) as writer:
        for _ in range(BOMB_BYTES // len(chunk)):
            writer.write(chunk)
    return out.getvalue()


def _bomb(doc: dict, rng: random.Random, seed: Seed) -> tuple[str, bytes] | None:
    """A zstd blob appended to the payload (with its CRC) that inflates to 8 GiB, made the scales, an uncoded
    tensor's bytes (perhaps for a 256 MiB tensor) or a frame's stream: the reader must stop at the size the
    metadata implies, never inflate it whole."""
    blobs, frames = doc.get("blobs"), doc.get("frames")
    target = rng.choice(["quantizer", "uncoded", "uncoded", "video"])
    record = _tensors(doc, rng, {"quantizer": "video", "uncoded": "uncoded"}.get(target))
    if not isinstance(blobs, list) or record is None:
        return None
    index = len(blobs)
    if target == "quantizer":
        if not isinstance(record.get("quantizer"), dict) or not isinstance(record["quantizer"].get("scales"), dict):
            return None
        record["quantizer"]["scales"]["blob"] = index
    elif target == "uncoded":
        if not isinstance(record.get("uncoded"), dict):
            return None
        record["uncoded"].update(blob=index, offset=0)
        if rng.random() < 0.5:
            record.update(dtype="int64", shape=[1 << 25])
            record["uncoded"].update(encoding="exact", length=8 << 25)
    else:
        if not isinstance(frames, list) or not frames or not isinstance(frames[0], dict):
            return None
        frames[0]["blob"] = index
    bomb = zstd_bomb()
    blobs.append(
        {
            "kind": target,
            "offset": len(seed.payload),
            "length": len(bomb),
            "crc32": zlib.crc32(bomb) & 0xFFFFFFFF,
            "compression": "zstd",
        }
    )
    return f"{target} blob made an 8 GiB zstd bomb", bomb


VIDEO_BOMB_FRAMES = 2200


@functools.lru_cache(maxsize=1)
def video_bomb() -> bytes:
    """An H.264 stream of 2200 flat 1920x1088 frames, about 80 kB, that decodes to 6.9 GB of raw pixels."""
    from vcwc.codecs import ffmpeg

    return ffmpeg.run(
        [
            ffmpeg.find_ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=1920x1088:r=25",
            "-frames:v",
            str(VIDEO_BOMB_FRAMES),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-threads",
            "1",
            "-f",
            "h264",
            "pipe:1",
        ],
        timeout=600,
    )


def _video_bomb(doc: dict, rng: random.Random, seed: Seed) -> tuple[str, bytes] | None:
    """A frame's stream replaced (with its CRC) by thousands of frames: the reader wants one."""
    blobs, frames = doc.get("blobs"), doc.get("frames")
    if not isinstance(blobs, list) or not isinstance(frames, list) or not frames or not isinstance(frames[0], dict):
        return None
    bomb = video_bomb()
    frames[0].update(blob=len(blobs), container="h264")
    blobs.append(
        {
            "kind": "video",
            "offset": len(seed.payload),
            "length": len(bomb),
            "crc32": zlib.crc32(bomb) & 0xFFFFFFFF,
            "compression": "none",
        }
    )
    return f"frame 0 made a stream of {VIDEO_BOMB_FRAMES} 1920x1088 frames", bomb


SEMANTIC = (_reshape, _reshape, _move_uncoded, _many_regions, _many_tensors, _alias, _alias, _bomb, _video_bomb)


def craft(seed: Seed, others: list[Seed], rng: random.Random, video_bombs: bool = True) -> tuple[bytes, str]:
    from vcwc.format import container

    doc = copy.deepcopy(seed.metadata)
    vocabulary = sorted(_strings(doc, set()) | _strings(rng.choice(others).metadata, set()))
    steps, extra = [], b""
    if rng.random() < 0.25:  # one change that keeps the file consistent enough to get past the first checks
        step = rng.choice([c for c in SEMANTIC if video_bombs or c is not _video_bomb])(doc, rng, seed)
        if isinstance(step, tuple):
            step, extra = step
        if step:
            steps.append(step)
    for _ in range(min(int(rng.expovariate(1.2)), 4) + (0 if steps else 1)):
        if rng.random() < 0.08:
            step = _reslice_blob(doc, seed, rng)
            if step:
                steps.append(step)
            continue
        path = _random_path(doc, rng)
        if not path:
            doc = {"format": "vcwc"} if rng.random() < 0.5 else {}
            steps.append("metadata replaced")
            continue
        where = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path)
        parent = _get(doc, path[:-1])
        choice = rng.random()
        if choice < 0.15:
            del parent[path[-1]]
            steps.append(f"{where} deleted")
        elif choice < 0.25 and _transplant(doc, path, others, rng):
            steps.append(f"{where} taken from another file")
        else:
            value = _new_value(parent[path[-1]], rng, doc, others, vocabulary)
            parent[path[-1]] = value
            shown = json.dumps(value)[:60] if not isinstance(value, float) else repr(value)
            steps.append(f"{where} = {shown}")
    data = container.with_metadata(seed.data + extra, doc, compress_metadata=rng.random() < 0.85)
    return data, "; ".join(steps)


def _position(seed: Seed, size: int, rng: random.Random) -> int:
    """A position in the header, the metadata, the payload or anywhere, a quarter of the time each."""
    area = rng.randrange(4)
    if area == 0:
        return rng.randrange(min(16, size))
    if area == 1 and seed.header_bytes > 16:
        return rng.randrange(16, min(seed.header_bytes, size))
    if area == 2 and size > seed.header_bytes:
        return rng.randrange(seed.header_bytes, size)
    return rng.randrange(size)


def corrupt(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(seed.data)
    op = rng.choice(["flip", "flip", "flip", "bit", "truncate", "truncate", "insert", "delete", "append", "zero"])
    if op in ("flip", "bit"):
        count = 1 if op == "bit" else rng.choice([1, 1, 2, 3, 8])
        places = []
        for _ in range(count):
            position = _position(seed, len(data), rng)
            data[position] ^= (1 << rng.randrange(8)) if op == "bit" else rng.randrange(1, 256)
            places.append(position)
        return bytes(data), f"{op} at {places}"
    if op == "truncate":
        cut = _position(seed, len(data), rng)
        return bytes(data[:cut]), f"truncated to {cut} of {len(data)} bytes"
    position = _position(seed, len(data), rng)
    length = rng.choice([1, 1, 4, 16, 300])
    if op == "insert":
        data[position:position] = rng.randbytes(length)
    elif op == "delete":
        del data[position : position + length]
    elif op == "append":
        data += rng.randbytes(length)
        position = len(seed.data)
    else:
        data[position : position + length] = bytes(len(data[position : position + length]))
    return bytes(data), f"{op} {length} bytes at {position}"


def make_case(seeds: list[Seed], index: int, master_seed: int, decode: bool = True, video_bombs: bool = True) -> Case:
    """Case `index` of the run seeded `master_seed`: the same bytes on every run with the same seed files.
    `video_bombs=False` leaves out the one mutation whose input takes seconds to make."""
    rng = random.Random(f"{master_seed}:{index}")
    seed = seeds[rng.randrange(len(seeds))]
    if rng.random() < CRAFTED_SHARE:
        data, mutation = craft(seed, [s for s in seeds if s is not seed] or seeds, rng, video_bombs)
        kind = "crafted"
    else:
        data, mutation = corrupt(seed, rng)
        kind = "corrupted"
    return Case(index, seed.name, kind, mutation, data, decode)


# Reading one case (in a worker) ---------------------------------------------------------------------


def _info(data: bytes) -> None:
    """What `vcwc info` reads: the parsed container, the size report and the streams' headers."""
    from vcwc.codecs.streams import describe_streams
    from vcwc.format.container import Container
    from vcwc.format.report import size_report

    with Container(data) as archive:
        report = size_report(archive.meta, archive.file_bytes, archive.header_bytes)
        json.dumps(report.to_dict())
        json.dumps(describe_streams(archive))


def _decode_bytes(data: bytes):
    import vcwc

    return tensor_digest(vcwc.decompress(data))


def _decode_path(path: Path):
    from vcwc.api import CompressedModel

    model = CompressedModel(path)
    try:
        model.size_report()
        return tensor_digest(model.decompress())
    finally:
        model.close()


def _route(function, *args) -> dict:
    from vcwc.errors import VcwcError

    try:
        return {"status": "ok", "value": function(*args)}
    except MemoryError as exc:
        return {"status": "memory", "type": type(exc).__name__, "message": str(exc)[:300]}
    except VcwcError as exc:
        return {"status": "vcwc", "type": type(exc).__name__, "message": str(exc)[:300]}
    except Exception as exc:
        message = str(exc)
        # torch reports an allocation the address-space limit refused as a RuntimeError
        status = "memory" if "can't allocate memory" in message or "bad_alloc" in message else "other"
        return {
            "status": status,
            "type": type(exc).__name__,
            "message": message[:300],
            "traceback": traceback.format_exc()[-3000:],
        }


class _FFmpegCounter:
    """Counts the ffmpeg runs of a case: how many cases got past the metadata checks to a decoder."""

    def __init__(self):
        from vcwc.codecs import ffmpeg

        self.calls = 0
        self._run = ffmpeg.run_with_stderr

        def counted(*args, **kwargs):
            self.calls += 1
            return self._run(*args, **kwargs)

        ffmpeg.run_with_stderr = counted


def read_case(data: bytes, decode: bool, path: Path) -> dict:
    """The result of each way of reading `data`: info, then (if `decode`) bytes and file on disk."""
    routes = {"info": _route(_info, data)}
    if decode:
        routes["bytes"] = _route(_decode_bytes, data)
        path.write_bytes(data)
        routes["path"] = _route(_decode_path, path)
    return routes


def _worker_main(connection, workdir: str, memory_bytes: int) -> None:
    import resource

    os.setpgrp()  # its ffmpeg children share its group, so a timeout ends them too
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    os.environ.setdefault("VCWC_FFMPEG_TIMEOUT", str(TIMEOUT_SECONDS))
    from tqdm import tqdm

    import vcwc  # noqa: F401 - imported before the first case, whose time is measured
    import vcwc.api  # noqa: F401

    tqdm.set_lock(threading.RLock())  # not tqdm's multiprocessing lock, whose semaphore a killed worker leaks

    counter = _FFmpegCounter()
    path = Path(workdir) / "case.vcwc"
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        index, data, decode = message
        counter.calls = 0
        start = time.perf_counter()
        routes = read_case(data, decode, path)
        connection.send((index, routes, time.perf_counter() - start, counter.calls))


# Outcomes -------------------------------------------------------------------------------------------


def classify(kind: str, routes: dict, reference: list) -> tuple[str, str | None]:
    """(outcome, the route that decided it). Worst first: memory, other exception, silent corruption,
    VcwcError, then a decode (identical, or different for a crafted file)."""
    ranked = []
    for name, result in routes.items():
        status = result["status"]
        if status == "memory":
            ranked.append((0, MEMORY, name))
        elif status == "other":
            ranked.append((1, f"{OTHER}:{result['type']}", name))
        elif status == "vcwc":
            ranked.append((3, f"{VCWC_ERROR}:{result['type']}", name))
        elif name != "info":
            if result["value"] == reference:
                ranked.append((5, IDENTICAL, name))
            elif kind == "crafted":
                ranked.append((4, DIFFERENT, name))
            else:
                ranked.append((2, SILENT, name))
        else:
            ranked.append((6, READ_ONLY, name))
    _, outcome, route = min(ranked)
    return outcome, route


# The pool -------------------------------------------------------------------------------------------


class Worker:
    def __init__(self, context, workdir: Path, memory_bytes: int):
        workdir.mkdir(parents=True, exist_ok=True)
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, str(workdir), memory_bytes), daemon=True)
        # A spawned worker imports this module by name (when it is not __main__, as under pytest) from the
        # sys.path it inherits, so this folder must be on it while the worker starts.
        here = str(Path(__file__).resolve().parent)
        added = here not in sys.path
        if added:
            sys.path.insert(0, here)
        try:
            self.process.start()
        finally:
            if added:
                sys.path.remove(here)
        child.close()
        try:
            if not self.connection.poll(READY_TIMEOUT_SECONDS):
                raise EOFError
            self.connection.recv()
        except (EOFError, OSError):
            self.kill()
            raise RuntimeError("a fuzz worker did not start") from None
        self.case: Case | None = None
        self.started = 0.0

    def send(self, case: Case) -> None:
        self.case, self.started = case, time.perf_counter()
        self.connection.send((case.index, case.data, case.decode))

    def kill(self) -> None:
        """End this worker and the ffmpeg it runs: its own process group, which it made at start."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.join(10)
        self.connection.close()

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.kill()
        else:
            self.connection.close()


def run_cases(
    cases,
    count: int,
    references: dict,
    workers: int = 2,
    timeout: float = TIMEOUT_SECONDS,
    memory_bytes: int = MEMORY_BYTES,
    progress: bool = False,
    on_result=None,
) -> list[dict]:
    """Run `cases` (an iterable of `count` Cases) on `workers` isolated worker processes; one result each."""
    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    scratch = Path(tempfile.mkdtemp(prefix="vcwc-fuzz-"))
    results: list[dict] = []
    pending = iter(cases)
    bar = tqdm(total=count, desc="fuzz cases", unit="case", file=sys.stderr, disable=not progress, smoothing=0.05)
    started = [0]

    def start_worker() -> Worker:
        started[0] += 1
        return Worker(context, scratch / f"worker-{started[0]}", memory_bytes)

    def record(case: Case, outcome: str, route: str | None, routes: dict, seconds: float, ffmpeg_runs: int) -> None:
        result = {
            "index": case.index,
            "seed": case.seed,
            "kind": case.kind,
            "mutation": case.mutation,
            "outcome": outcome,
            "route": route,
            "seconds": round(seconds, 4),
            "ffmpeg_runs": ffmpeg_runs,
            "decode": case.decode,
            "routes": {name: {k: v for k, v in r.items() if k != "value"} for name, r in routes.items()},
        }
        results.append(result)
        if on_result is not None:
            on_result(result, case)
        bar.update()

    pool = [start_worker() for _ in range(workers)]
    try:
        for worker in pool:
            case = next(pending, None)
            if case is not None:
                worker.send(case)
        while any(worker.case is not None for worker in pool):
            busy = [worker for worker in pool if worker.case is not None]
            deadline = min(worker.started for worker in busy) + timeout
            ready = wait([worker.connection for worker in busy], timeout=max(0.0, deadline - time.perf_counter()))
            for position, worker in enumerate(pool):
                if worker.case is None:
                    continue
                case = worker.case
                if worker.connection in ready:
                    try:
                        index, routes, seconds, ffmpeg_runs = worker.connection.recv()
                    except (EOFError, OSError):  # the worker died: killed by the kernel, or crashed
                        worker.process.join(5)
                        code = worker.process.exitcode
                        routes = {
                            "worker": {"status": "memory", "type": "WorkerDied", "message": f"worker exit code {code}"}
                        }
                        record(case, MEMORY, "worker", routes, time.perf_counter() - worker.started, -1)
                        worker.kill()
                        pool[position] = worker = start_worker()
                    else:
                        assert index == case.index
                        outcome, route = classify(case.kind, routes, references[case.seed])
                        if seconds > timeout:  # finished, but late: still over the limit
                            outcome, route = TIMEOUT, route
                        record(case, outcome, route, routes, seconds, ffmpeg_runs)
                elif time.perf_counter() - worker.started > timeout:
                    routes = {
                        "worker": {"status": "timeout", "type": "Timeout", "message": f"no result within {timeout:g} s"}
                    }
                    record(case, TIMEOUT, "worker", routes, time.perf_counter() - worker.started, -1)
                    worker.kill()
                    pool[position] = worker = start_worker()
                else:
                    continue
                worker.case = None
                case = next(pending, None)
                if case is not None:
                    worker.send(case)
    finally:
        for worker in pool:
            worker.stop()
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


# The report -----------------------------------------------------------------------------------------


def summarize(results: list[dict]) -> dict:
    counts = Counter(result["outcome"] for result in results)
    by_kind: dict[str, Counter] = {}
    for result in results:
        by_kind.setdefault(result["kind"], Counter())[result["outcome"]] += 1
    vcwc_errors = Counter(
        result["outcome"].split(":", 1)[1] for result in results if result["outcome"].startswith(VCWC_ERROR + ":")
    )
    examples: dict[str, list] = {}
    for result in results:
        outcome = result["outcome"]
        limit = 20 if is_failure(outcome) else EXAMPLES_PER_OUTCOME
        chosen = examples.setdefault(outcome, [])
        if len(chosen) < limit:
            route = result["routes"].get(result["route"] or "", {})
            chosen.append(
                {
                    "case": result["index"],
                    "seed": result["seed"],
                    "kind": result["kind"],
                    "mutation": result["mutation"][:300],
                    "route": result["route"],
                    "message": route.get("message"),
                    "traceback": route.get("traceback"),
                }
            )
    seconds = sorted(result["seconds"] for result in results)
    return {
        "cases": len(results),
        "counts": dict(sorted(counts.items())),
        "by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(by_kind.items())},
        "vcwc_errors_by_class": dict(sorted(vcwc_errors.items())),
        "other_exceptions": sum(n for outcome, n in counts.items() if outcome.startswith(OTHER)),
        "silent_corruption": counts.get(SILENT, 0),
        "timeouts": counts.get(TIMEOUT, 0),
        "memory": counts.get(MEMORY, 0),
        "failures": sum(n for outcome, n in counts.items() if is_failure(outcome)),
        "cases_reaching_ffmpeg": sum(1 for result in results if result["ffmpeg_runs"] > 0),
        "case_seconds": {
            "median": seconds[len(seconds) // 2] if seconds else None,
            "max": seconds[-1] if seconds else None,
        },
        "slowest": [
            {"case": r["index"], "seconds": r["seconds"], "mutation": r["mutation"][:200]}
            for r in sorted(results, key=lambda r: -r["seconds"])[:5]
        ],
        "examples": examples,
    }


def machine() -> dict:
    from vcwc.codecs import ffmpeg

    try:
        ffmpeg_version = ffmpeg.version(ffmpeg.find_ffmpeg())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        ffmpeg_version = f"unknown ({exc})"
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ffmpeg": ffmpeg_version,
    }


def markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [
        "# Fuzzing the .vcwc reader",
        "",
        f"`{report['command']}`",
        "",
        f"{summary['cases']:,} cases (seed {report['seed']}), {report['workers']} worker processes, "
        f"{report['seconds']:.0f} s; limits per case: {report['timeout_seconds']:g} s and "
        f"{report['memory_bytes'] >> 30} GiB of address space.",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}, {report['machine']['ffmpeg'].split(' Copyright')[0]}.",
        "",
        f"**Failures: {summary['failures']}** (other exceptions {summary['other_exceptions']}, silent corruption "
        f"{summary['silent_corruption']}, timeouts {summary['timeouts']}, memory {summary['memory']}). "
        f"{summary['cases_reaching_ffmpeg']:,} cases got as far as ffmpeg. A case took "
        f"{summary['case_seconds']['median']} s (median), {summary['case_seconds']['max']} s at most"
        + (f" ({summary['slowest'][0]['mutation'][:80]})" if summary["slowest"] else "")
        + ".",
        "",
        "| outcome | corrupted | crafted | all |",
        "|---|---:|---:|---:|",
    ]
    kinds = report["summary"]["by_kind"]
    for outcome, count in summary["counts"].items():
        lines.append(
            f"| {outcome} | {kinds.get('corrupted', {}).get(outcome, 0):,} | "
            f"{kinds.get('crafted', {}).get(outcome, 0):,} | {count:,} |"
        )
    lines += ["", f"Seed files: {', '.join(report['seed_files'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "fuzz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="seconds per case")
    parser.add_argument("--replay", type=int, help="run this one case here and print what each reading did")
    args = parser.parse_args(argv)

    seeds = make_seeds()
    if args.replay is not None:
        case = make_case(seeds, args.replay, args.seed)
        print(f"case {case.index}: {case.kind} {case.seed}: {case.mutation}")
        with tempfile.TemporaryDirectory() as folder:
            routes = read_case(case.data, True, Path(folder) / "case.vcwc")
        reference = reference_digests([s for s in seeds if s.name == case.seed])[case.seed]
        print("outcome:", *classify(case.kind, routes, reference))
        for name, result in routes.items():
            print(f"--- {name}: {result['status']} {result.get('type', '')} {result.get('message', '')}")
            if result.get("traceback"):
                print(result["traceback"])
        return 0

    references = reference_digests(seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    failures_dir = args.out / "failures"

    def keep_failure(result: dict, case: Case) -> None:
        if is_failure(result["outcome"]):
            failures_dir.mkdir(exist_ok=True)
            (failures_dir / f"case-{case.index:06d}.vcwc").write_bytes(case.data)

    start = time.perf_counter()
    cases = (make_case(seeds, index, args.seed) for index in range(args.cases))
    results = run_cases(
        cases, args.cases, references, workers=args.workers, timeout=args.timeout, progress=True, on_result=keep_failure
    )
    elapsed = time.perf_counter() - start
    shown_out = os.path.relpath(args.out, Path.cwd()) if args.out.is_absolute() else str(args.out)
    report = {
        "command": f"python scripts/fuzz_format.py --cases {args.cases} --out {shown_out} --seed {args.seed} "
        f"--workers {args.workers}",
        "seed": args.seed,
        "workers": args.workers,
        "timeout_seconds": args.timeout,
        "memory_bytes": MEMORY_BYTES,
        "seconds": round(elapsed, 1),
        "machine": machine(),
        "seed_files": [seed.name for seed in seeds],
        "summary": summarize(results),
    }
    (args.out / "fuzz.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "fuzz.md").write_text(markdown(report))
    summary = report["summary"]
    print(
        f"{summary['cases']:,} cases in {elapsed:.0f} s: {summary['failures']} failures; "
        f"{json.dumps(summary['counts'])}",
        file=sys.stderr,
    )
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
