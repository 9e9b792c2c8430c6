"""The reader against corrupted and crafted files: a short, deterministic slice of scripts/fuzz_format.py.

Part of the normal suite (not marked slow): the seed files are made fresh by each software codec, then
cases of the long run's mutator (seed 0; no video bomb, smaller many-tensor files, both slow to make or
read) are read in two isolated worker processes (6 GiB of
address space, 20 s a case): many with the metadata checks only (info-style reading, no ffmpeg) and a
few dozen decoded both from bytes and from a file on disk. Any exception other than a VcwcError, a
corrupted file decoding to other tensors, a timeout or a memory failure fails. Then one regression test
per problem the fuzzer found, each in this process.
"""

from __future__ import annotations

import copy
import importlib.util
import random
import sys
import time
import zlib
from pathlib import Path

import pytest
import zstandard

import vcwc
from vcwc import FormatError
from vcwc.codecs import ffmpeg
from vcwc.format import container, schema
from vcwc.format.container import Container

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_format.py"
MASTER_SEED = 0
METADATA_CASES = 1500  # cheap: most stop at the schema checks
DECODE_CASES = 60  # each runs ffmpeg up to twice
DECODE_OFFSET = 1_000_000  # their case numbers, apart from the metadata-only ones


def _load_fuzzer():
    # Registered under its own name: the spawned workers import it by that name.
    spec = importlib.util.spec_from_file_location("fuzz_format", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_format"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzzer()


@pytest.fixture(scope="module")
def seeds():
    return fuzz.make_seeds()


@pytest.fixture(scope="module")
def references(seeds):
    return fuzz.reference_digests(seeds)


@pytest.fixture(scope="module")
def results(seeds, references):
    # Files of tens of thousands of tensors take seconds each to read: fewer here (the regression test
    # below reads one of 60000).
    many, fuzz.MANY_TENSORS = fuzz.MANY_TENSORS, (100, 1000, 3000)
    try:
        return _run(seeds, references)
    finally:
        fuzz.MANY_TENSORS = many


def _run(seeds, references):
    originals = [fuzz.Case(-1 - i, seed.name, "original", "none", seed.data) for i, seed in enumerate(seeds)]
    metadata_only = [
        fuzz.make_case(seeds, i, MASTER_SEED, decode=False, video_bombs=False) for i in range(METADATA_CASES)
    ]
    decoded = [fuzz.make_case(seeds, DECODE_OFFSET + i, MASTER_SEED, video_bombs=False) for i in range(DECODE_CASES)]
    cases = originals + metadata_only + decoded
    return fuzz.run_cases(cases, len(cases), references, workers=2)


def _failures(results) -> list[str]:
    return [
        f"case {r['index']} ({r['kind']} {r['seed']}: {r['mutation'][:120]}): {r['outcome']} via {r['route']}: "
        f"{(r['routes'].get(r['route'] or '', {}).get('message') or '')[:200]}"
        for r in results
        if fuzz.is_failure(r["outcome"])
    ]


def test_the_seed_files_decode_to_their_tensors(results):
    originals = [r for r in results if r["kind"] == "original"]
    assert originals and all(r["outcome"] == fuzz.IDENTICAL for r in originals), _failures(originals)


def test_metadata_checks_never_fail_otherwise_than_with_a_vcwc_error(results):
    checked = [r for r in results if not r["decode"]]
    assert len(checked) == METADATA_CASES
    assert not _failures(checked), "\n".join(_failures(checked))
    outcomes = {r["outcome"] for r in checked}
    assert f"{fuzz.VCWC_ERROR}:FormatError" in outcomes and fuzz.READ_ONLY in outcomes


def test_decoding_gives_the_tensors_or_a_vcwc_error(results):
    decoded = [r for r in results if r["decode"] and r["kind"] != "original"]
    assert len(decoded) == DECODE_CASES
    assert not _failures(decoded), "\n".join(_failures(decoded))
    # The slice reaches the decoders: some cases get to ffmpeg, and some decode.
    assert any(r["ffmpeg_runs"] > 0 for r in decoded)
    assert any(r["outcome"] in (fuzz.IDENTICAL, fuzz.DIFFERENT) for r in decoded)
    assert any(r["outcome"].startswith(fuzz.VCWC_ERROR) for r in decoded if r["kind"] == "corrupted")


def test_outcomes_that_count_as_failures():
    reference = [("w", "torch.float32", (2,), "aa")]
    ok = {"status": "ok", "value": reference}
    other = {"status": "ok", "value": [("w", "torch.float32", (2,), "bb")]}
    assert (
        fuzz.classify("corrupted", {"info": {"status": "ok", "value": None}, "bytes": ok}, reference)[0]
        == fuzz.IDENTICAL
    )
    assert fuzz.classify("corrupted", {"bytes": other}, reference)[0] == fuzz.SILENT
    assert fuzz.classify("crafted", {"bytes": other}, reference)[0] == fuzz.DIFFERENT
    raised = {"status": "other", "type": "KeyError", "message": "'w'"}
    assert fuzz.classify("crafted", {"bytes": ok, "path": raised}, reference)[0] == "other-exception:KeyError"
    assert (
        fuzz.classify("crafted", {"bytes": {"status": "memory", "type": "MemoryError", "message": ""}}, reference)[0]
        == fuzz.MEMORY
    )
    assert all(fuzz.is_failure(o) for o in (fuzz.SILENT, fuzz.MEMORY, fuzz.TIMEOUT, "other-exception:KeyError"))
    assert not any(fuzz.is_failure(o) for o in (fuzz.IDENTICAL, fuzz.DIFFERENT, "VcwcError:FormatError"))


def test_a_case_over_its_time_is_a_timeout_and_the_worker_is_replaced(seeds, references):
    seed = seeds[0]
    cases = [fuzz.Case(i, seed.name, "original", "none", seed.data) for i in range(2)]
    results = fuzz.run_cases(cases, 2, references, workers=1, timeout=0.001)
    assert [r["outcome"] for r in results] == [fuzz.TIMEOUT, fuzz.TIMEOUT]


# What the fuzzer found: each crafted file now raises a FormatError naming the field --------------------


@pytest.fixture(scope="module")
def x264(seeds):
    return next(seed for seed in seeds if seed.name == "x264-lossless-per_tensor")


@pytest.fixture(scope="module")
def tied(seeds):
    return next(seed for seed in seeds if seed.name == "x264-tied-float16-kernel_blocks")


def crafted(seed, change, extra: bytes = b"") -> bytes:
    doc = copy.deepcopy(seed.metadata)
    change(doc)
    return container.with_metadata(seed.data + extra, doc)


def tensor(doc: dict, name: str) -> dict:
    return next(t for t in doc["tensors"] if t["name"] == name)


def _set(name, **fields):
    def change(doc):
        record = tensor(doc, name)
        for key, value in fields.items():
            if "." in key:
                section, key = key.split(".")
                record[section][key] = value
            else:
                record[key] = value

    return change


def _alias_of_alias(doc):
    doc["tensors"].append(dict(tensor(doc, "head.weight"), name="head2.weight", alias_of="head.weight"))


def _alias_before_its_tensor(doc):
    doc["tensors"].insert(
        0, doc["tensors"].pop(next(i for i, t in enumerate(doc["tensors"]) if t["name"] == "head.weight"))
    )


@pytest.mark.parametrize(
    "change, message",
    [
        # was KeyError in decode_tensors: the alias checks existed but were never called
        pytest.param(
            _set("head.weight", alias_of="missing"),
            "alias_of: 'missing' is not an earlier stored tensor",
            id="alias-of-a-missing-tensor",
        ),
        pytest.param(
            _alias_before_its_tensor,
            "alias_of: 'emb.weight' is not an earlier stored tensor",
            id="alias-before-its-tensor",
        ),
        # was RuntimeError (reshape) in _to_torch
        pytest.param(
            _set("head.weight", alias_of="conv.bias"),
            "alias_of: 'conv.bias' has another dtype or shape",
            id="alias-of-another-shape",
        ),
        pytest.param(
            _set("head.weight", dtype="float32"),
            "alias_of: 'emb.weight' has another dtype or shape",
            id="alias-of-another-dtype",
        ),
        # was decoded: format version 1 has no alias of an alias
        pytest.param(
            _alias_of_alias,
            "head2.weight'\\).alias_of: 'head.weight' is not an earlier stored tensor",
            id="alias-of-an-alias",
        ),
        # was ValueError from numpy (array is too big) for an empty float16-stored tensor
        pytest.param(
            _set("fc.bias", shape=[0, 2**62], **{"uncoded.length": 0}),
            "shape: .* has more than 2\\*\\*48 elements",
            id="empty-float16-tensor-of-2**62",
        ),
    ],
)
def test_crafted_aliases_and_shapes_in_a_file_with_tied_weights(tied, change, message):
    with pytest.raises(FormatError, match=message):
        vcwc.decompress(crafted(tied, change))


@pytest.mark.parametrize(
    "change, message",
    [
        # was TypeError from torch.empty (Overflow when unpacking long long)
        pytest.param(
            _set("steps", shape=[0, 2**63], **{"uncoded.length": 0}),
            "steps'\\).shape: .* more than 2\\*\\*48",
            id="empty-tensor-of-2**63",
        ),
        pytest.param(
            _set("steps", shape=[0, 10**30], **{"uncoded.length": 0}),
            "steps'\\).shape: .* more than 2\\*\\*48",
            id="empty-tensor-of-10**30",
        ),
        # was RuntimeError from torch (Stride calculation overflowed)
        pytest.param(
            _set("steps", shape=[0, 2**40, 2**40], **{"uncoded.length": 0}),
            "steps'\\).shape",
            id="empty-tensor-of-2**80",
        ),
        # was ValueError (cannot reshape array of size 16): matrix_shape's numpy product wrapped to 16
        pytest.param(
            _set("fc.weight", shape=[1, 16 * 1048577, 1099510579201], **{"layout.matrix": [1, 16]}),
            "fc.weight'\\).shape",
            id="coded-shape-whose-int64-product-wraps",
        ),
        # was TypeError ('float' object cannot be interpreted as an integer): 32.0 == 32 passed the check
        pytest.param(
            _set("fc.weight", **{"layout.matrix": [10, 32.0]}), "fc.weight'\\).layout.matrix", id="float-in-the-matrix"
        ),
    ],
)
def test_crafted_shapes_and_matrices(x264, change, message):
    with pytest.raises(FormatError, match=message):
        vcwc.decompress(crafted(x264, change))


def test_an_uncoded_tensor_past_the_end_of_a_stored_blob(x264):
    """Was read as the empty slice past the blob: a scalar of uninitialized memory (torch.empty), or a
    RuntimeError from reshape when part of the tensor lay inside."""

    def change(doc):
        record = tensor(doc, "steps")
        record["uncoded"]["offset"] = 4096
        doc["blobs"][record["uncoded"]["blob"]]["compression"] = "none"

    with pytest.raises(FormatError, match="steps'\\).uncoded.offset: the tensor ends at byte 4104"):
        vcwc.decompress(crafted(x264, change))


def test_a_compressed_scales_blob_is_read_no_further_than_the_scales(x264):
    """Was inflated whole (up to 16 GiB) for 8 bytes of scales: a MemoryError in 6 GiB."""
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(64 << 20))

    def change(doc):
        tensor(doc, "fc.weight")["quantizer"]["scales"]["blob"] = len(doc["blobs"])
        doc["blobs"].append(
            {
                "kind": "quantizer",
                "offset": len(x264.payload),
                "length": len(bomb),
                "crc32": zlib.crc32(bomb),
                "compression": "zstd",
            }
        )

    with pytest.raises(FormatError, match="decompresses to more than the 8 bytes expected"):
        vcwc.decompress(crafted(x264, change, bomb))


def test_thousands_of_regions_are_checked_in_time(x264):
    """16384 one-pixel regions stacked in a column: the overlap check compared each with all the others
    (14 s a reading, over 20 s a case)."""
    doc = copy.deepcopy(x264.metadata)
    doc["frames"][0]["height"] = 16384
    doc["tensors"] = [t for t in doc["tensors"] if t["storage"] != "video" or t["name"] == "conv.weight"]
    tensor(doc, "conv.weight")["payload"].pop("low_bits", None)  # its packed bits fit the old shape only
    tensor(doc, "conv.weight").update(
        shape=[16384, 1],
        layout={"arrangement": "rows", "matrix": [16384, 1], "permutation": None},
        regions=[{"frame": 0, "x": 0, "y": i, "row": i, "col": 0, "width": 1, "height": 1} for i in range(16384)],
    )
    data = container.with_metadata(x264.data, doc)
    start = time.perf_counter()
    Container(data)
    assert time.perf_counter() - start < 3
    regions = tensor(doc, "conv.weight")["regions"]
    regions[100]["y"] = 7  # now overlapping the region at y 7
    with pytest.raises(FormatError, match="frames\\[0\\]: regions of 'conv.weight' and 'conv.weight' overlap"):
        Container(container.with_metadata(x264.data, doc))


def test_a_repeated_name_among_many_tensors_is_found_in_time(x264):
    """names.count for each name until the repeated one: quadratic, 10 s and more for 60000 tensors."""
    doc = copy.deepcopy(x264.metadata)
    blob = tensor(doc, "steps")["uncoded"]["blob"]
    doc["tensors"] += [
        {
            "name": f"extra.{i}",
            "dtype": "float32",
            "shape": [0],
            "storage": "uncoded",
            "uncoded": {"blob": blob, "offset": 0, "length": 0, "encoding": "exact"},
        }
        for i in range(60000)
    ]
    doc["tensors"].append(dict(doc["tensors"][-1]))
    start = time.perf_counter()
    with pytest.raises(FormatError, match="the name 'extra.59999' appears twice"):
        Container(container.with_metadata(x264.data, doc))
    assert time.perf_counter() - start < 5


def test_only_the_first_frame_of_a_stream_is_decoded():
    """A crafted stream of thousands of frames decoded to gigabytes of raw pixels (MemoryError in 6 GiB)."""
    binary = ffmpeg.find_ffmpeg()
    stream = ffmpeg.run(
        [
            binary,
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=32x32",
            "-frames:v",
            "5",
            "-c:v",
            "libx264",
            "-f",
            "h264",
            "pipe:1",
        ],
        timeout=60,
    )
    assert ffmpeg.decode(stream, "h264", 32, 32, binary).shape == (1, 32, 32)


def test_overlap_check_agrees_with_comparing_every_pair():
    """The sweep that replaced the pairwise comparison finds an overlap exactly when one exists."""
    rng = random.Random(0)
    for _ in range(3000):
        rectangles = [
            (rng.randrange(12), rng.randrange(12), rng.randrange(1, 5), rng.randrange(1, 5), f"t{i}")
            for i in range(rng.randrange(1, 7))
        ]
        overlapping = any(
            a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
            for i, a in enumerate(rectangles)
            for b in rectangles[i + 1 :]
        )
        try:
            schema._no_overlap(rectangles, "frames[0]", "<test>")
        except FormatError:
            assert overlapping, rectangles
        else:
            assert not overlapping, rectangles
