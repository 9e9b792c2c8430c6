"""`vcwc info` stream headers and `vcwc extract`: raw streams an on-device decoder can take, described."""

import json
import re

import numpy as np
import pytest
import torch

import vcwc
from vcwc import InputError, cli
from vcwc.codecs import ffmpeg
from vcwc.codecs.bitstream import parse_stream
from vcwc.codecs.streams import describe_streams, extract
from vcwc.format.container import Container

pytestmark = pytest.mark.slow  # real codecs or models end to end

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return {
        "conv.weight": torch.randn(16, 8, 3, 3) * 0.1,
        "fc.weight": torch.randn(10, 200) * 0.05,
        "fc.bias": torch.randn(10),
    }


def test_x264_lossless_is_flagged_as_not_for_phones(model):
    streams = describe_streams(vcwc.compress(model, LOSSLESS.with_changes(codec="x264")).container)
    assert streams and all(s["profile_idc"] == 244 for s in streams)
    assert not streams[0]["hardware_decoders"]["fits"] and "phones" in streams[0]["hardware_decoders"]["note"]
    tensors = {region["tensor"] for s in streams for region in s["regions"]}
    assert tensors == {"conv.weight", "fc.weight"}


@pytest.mark.parametrize("codec, extension", [("mobile-hevc", "hevc"), ("svtav1", "obu"), ("mobile-h264", "h264")])
def test_extract_writes_streams_an_ffmpeg_decoder_takes_back_to_the_symbols(model, tmp_path, codec, extension):
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec=codec, qp=20 if codec != "svtav1" else 30))
    description = json.loads(extract(compressed.container, tmp_path / "out").read_text())
    assert set(description["pixels"]["formats"]) == {"yuv420p", "yuv420p10le"}
    assert {t["symbol_offset"] for t in description["tensors"] if t["storage"] == "video"} == {128}
    binary = ffmpeg.find_ffmpeg()
    decoded = vcwc.decompress(compressed.data)
    for stream in description["streams"]:
        data = (tmp_path / "out" / stream["file"]).read_bytes()
        assert stream["file"].endswith("." + extension) and len(data) == stream["bytes"]
        assert parse_stream(data, stream["container"]).profile == stream["profile"]
        # What a device decoder does: decode the raw stream, take the luma plane, subtract 128.
        luma = ffmpeg.decode(data, stream["container"], stream["width"], stream["height"], binary)[0]
        for region in stream["regions"]:
            tensor = next(t for t in description["tensors"] if t["name"] == region["tensor"])
            assert stream["pixel_format"] == "yuv420p"
            scales = np.fromfile(tmp_path / "out" / tensor["scales"]["file"], dtype="<f4")
            scale = scales[tensor["scales"]["offset_bytes"] // 4]
            pixels = luma[region["y"] : region["y"] + region["height"], region["x"] : region["x"] + region["width"]]
            weights = (pixels.astype(np.float32) - 128) * scale
            matrix = decoded[region["tensor"]].reshape(tensor["shape"][0], -1).numpy()
            rows, cols = (
                slice(region["row"], region["row"] + region["height"]),
                slice(region["col"], region["col"] + region["width"]),
            )
            expected = matrix[rows, cols]
            assert np.array_equal(weights, expected)


def test_extract_refuses_a_folder_with_files(model, tmp_path):
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec="x264"))
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        extract(compressed.container, tmp_path)
    extract(compressed.container, tmp_path, force=True)
    assert (tmp_path / "keep.txt").read_text() == "mine" and (tmp_path / "streams.json").exists()


def test_cli_info_extract_encoders_and_auto(model, tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    torch.save(model, checkpoint)
    out = tmp_path / "model.vcwc"
    assert cli.main(["compress", str(checkpoint), "-o", str(out), "--codec", "mobile-h264", "--qp", "24"]) == 0
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^0 +mobile-h264 +208x32 +[\d,]+ +Main +1\.0 +yes$", text, flags=re.MULTILINE), text
    assert cli.main(["info", str(out), "--json"]) == 0
    streams = json.loads(capsys.readouterr().out)["streams"]
    assert streams[0]["profile"] == "Main" and streams[0]["hardware_decoders"]["fits"]
    assert cli.main(["extract", str(out), str(tmp_path / "streams")]) == 0
    assert (tmp_path / "streams" / "frame_0000.h264").exists()

    assert cli.main(["compress", str(checkpoint), "-o", str(tmp_path / "x.vcwc"), "--codec", "mobile-hevc"]) == 1
    assert "has no lossless mode" in capsys.readouterr().err
    assert (
        cli.main(["compress", str(checkpoint), "-o", str(tmp_path / "auto.vcwc"), "--codec", "auto", "--qp", "30"]) == 0
    )
    assert "codec auto picked" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "compress",
                str(checkpoint),
                "-o",
                str(tmp_path / "own.vcwc"),
                "--encoder",
                "libx264",
                "--encoder-args",
                "-qp {qp} -preset ultrafast",
                "--encoder-format",
                "h264",
                "--qp",
                "20",
            ]
        )
        == 0
    )
    assert "custom:libx264" in capsys.readouterr().out
    assert cli.main(["compress", str(checkpoint), "-o", str(tmp_path / "bad.vcwc"), "--encoder", "libx264"]) == 1
    assert "--encoder-format" in capsys.readouterr().err

    assert cli.main(["encoders", "--json"]) == 0
    listed = {e["codec"]: e for e in json.loads(capsys.readouterr().out)["encoders"]}
    assert listed["mobile-hevc"]["works"] and listed["mobile-hevc"]["default_mode"] == "lossy"
    assert listed["hevc_nvenc"]["kind"] == "hardware" and listed["h264_amf"]["experimental"]
    for name, entry in listed.items():
        assert entry["works"] or entry["reason"], name


def test_extract_holds_everything_a_device_needs_and_leaves_nothing_on_failure(model, tmp_path):
    from safetensors.numpy import load_file

    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec="x264"))
    folder = tmp_path / "device"
    description = json.loads(extract(compressed.container, folder).read_text())
    decoded = vcwc.decompress(compressed.data)
    uncoded = load_file(folder / "uncoded.safetensors")
    stored = {t["name"]: t for t in description["tensors"]}
    for name, tensor in decoded.items():
        if stored[name]["storage"] == "uncoded":
            assert np.array_equal(uncoded[name], tensor.numpy()), name
    assert set(uncoded) == {n for n, t in stored.items() if t["storage"] == "uncoded"} and uncoded

    broken = bytearray(compressed.data)
    broken[-3] ^= 0xFF  # inside the last blob: the file opens, a blob fails its checksum while extracting
    target = tmp_path / "never"
    with pytest.raises(vcwc.FormatError, match="corrupted"):
        extract(Container(bytes(broken)), target)
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["device"]


def test_extract_lists_tied_weights_once(tmp_path):
    shared = torch.randn(16, 8)
    model = {"embed.weight": shared, "head.weight": shared, "head.bias": torch.zeros(16)}
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec="x264"))
    description = json.loads(extract(compressed.container, tmp_path / "tied").read_text())
    stored = {t["name"]: t for t in description["tensors"]}
    assert stored["head.weight"] == {
        "name": "head.weight",
        "storage": "alias",
        "alias_of": "embed.weight",
        "shape": [16, 8],
        "dtype": "float32",
    }


def test_extract_gives_the_low_bits_a_device_joins_to_the_symbols(tmp_path):
    """Wide symbols keep their low bits raw: the files and the description alone rebuild the weights."""
    torch.manual_seed(4)
    model = {"fc.weight": torch.randn(48, 96) * 0.05}
    recipe = vcwc.RECIPES["smallest"].with_changes(step_qp=-30, rounding="nearest")  # symbol RMS ~9
    compressed = vcwc.compress(model, recipe)
    description = json.loads(extract(compressed.container, tmp_path / "out").read_text())
    (tensor,) = description["tensors"]
    (stream,) = description["streams"]
    bits = tensor["low_bits"]["bits"]
    assert bits == 2
    luma = ffmpeg.decode(
        (tmp_path / "out" / stream["file"]).read_bytes(),
        stream["container"],
        stream["width"],
        stream["height"],
        ffmpeg.find_ffmpeg(),
        bit_depth=8,
    )[0]
    (region,) = stream["regions"]
    high = luma[region["y"] : region["y"] + 48, region["x"] : region["x"] + 96].astype(np.int32) - 128
    packed = (tmp_path / "out" / "low_bits.bin").read_bytes()[tensor["low_bits"]["offset_bytes"] :]
    flags = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[: 48 * 96 * bits].reshape(-1, bits)
    low = (flags.astype(np.int32) << np.arange(bits - 1, -1, -1)).sum(axis=1).reshape(48, 96)
    scale = np.fromfile(tmp_path / "out" / "scales.f32", dtype="<f4")[0]
    weights = ((high << bits) + low) * scale
    assert np.array_equal(weights.astype(np.float32), vcwc.decompress(compressed.data)["fc.weight"].numpy())
    assert tensor["quantizer"] == "linear_symmetric"
