"""End to end with the real ffmpeg: every software codec, real tensors."""

import json

import numpy as np
import pytest
import torch

import vcwc
from vcwc import QuantConfig, dequantize, quantize
from vcwc.metrics import snr_db

pytestmark = pytest.mark.slow  # real codecs or models end to end

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video

CODECS = ["x264", "x265", "aom", "svtav1"]


def int8_reference(tensor, per_channel=False):
    q = quantize(tensor, QuantConfig("per_channel" if per_channel else "per_tensor"))
    return torch.from_numpy(dequantize(q.symbols, q.scales)).to(tensor.dtype)


def assert_lossless(original, decoded, coded_names, per_channel=False):
    assert list(decoded) == list(original)
    for name, tensor in original.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape, name
        expected = int8_reference(tensor, per_channel) if name in coded_names else tensor
        assert torch.equal(decoded[name], expected), name


@pytest.fixture(scope="module")
def resnet18_state_dict():
    from vcwc.models.build import build_model

    torch.manual_seed(0)
    return build_model("resnet18").state_dict()


@pytest.mark.parametrize("codec", CODECS)
def test_lossless_round_trip_is_bit_exact_on_resnet18(codec, resnet18_state_dict):
    compressed = vcwc.compress(resnet18_state_dict, LOSSLESS.with_changes(codec=codec))
    coded = {t["name"] for t in compressed.metadata["tensors"] if t["storage"] == "video"}
    assert len(coded) == 21  # 20 conv kernels and fc.weight
    assert_lossless(resnet18_state_dict, vcwc.decompress(compressed.data), coded)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_lossless_round_trip_is_bit_exact_on_cifar_resnets(codec, per_channel, cifar10_dir):
    for path in sorted(cifar10_dir.glob("resnet*.th")):
        model = vcwc.load_model(path)
        compressed = vcwc.compress(
            model, LOSSLESS.with_changes(codec=codec, granularity="per_channel" if per_channel else "per_tensor")
        )
        coded = {t["name"] for t in compressed.metadata["tensors"] if t["storage"] == "video"}
        assert len(coded) == int(path.name[6:8]), path.name  # depth - 1 convs and the linear layer
        assert_lossless(model.state_dict(), vcwc.decompress(compressed.data), coded, per_channel)


@pytest.fixture(scope="module")
def small_conv_model():
    torch.manual_seed(1)
    return {
        "features.0.weight": torch.randn(32, 16, 3, 3) * 0.05,
        "features.0.bias": torch.randn(32),
        "head.weight": torch.randn(10, 288) * 0.02,
        "head.bias": torch.zeros(10),
    }


@pytest.mark.parametrize("codec", CODECS)
def test_lossy_snr_rises_as_qp_falls_and_model_still_loads(codec, small_conv_model):
    low, high = vcwc.get_codec(codec).qp_range
    snrs = []
    for qp in (high * 3 // 4, high // 2, high // 6):
        compressed = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec=codec, qp=qp))
        decoded = vcwc.decompress(compressed.data)
        snrs.append(snr_db(small_conv_model["features.0.weight"], decoded["features.0.weight"]))
        stored = {t["name"]: t.get("snr_db") for t in compressed.metadata["tensors"]}
        assert stored["features.0.weight"] == pytest.approx(snrs[-1])
        module = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3))
        module.load_state_dict(
            {"0.weight": decoded["features.0.weight"], "0.bias": decoded["features.0.bias"]}, strict=True
        )
    assert snrs[0] < snrs[1] < snrs[2], snrs


@pytest.mark.parametrize("codec", CODECS)
def test_compressing_twice_gives_identical_bytes_whatever_the_workers(codec, small_conv_model):
    first = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec=codec, qp=20), jobs=1)
    second = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec=codec, qp=20), jobs=2)
    assert first.data == second.data


def test_dtypes_come_back_as_they_were():
    torch.manual_seed(2)
    model = {
        "a.weight": torch.randn(8, 8).half(),
        "b.weight": torch.randn(8, 8).bfloat16(),
        "c.weight": torch.randn(8, 8),
        "c.bias": torch.randn(8).bfloat16(),
        "steps": torch.tensor([3, 4], dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }
    decoded = vcwc.decompress(vcwc.compress(model, LOSSLESS.with_changes(codec="x264")).data)
    for name, tensor in model.items():
        assert decoded[name].dtype == tensor.dtype
    for name in ("c.bias", "steps", "mask"):
        assert torch.equal(decoded[name], model[name])


def test_uncoded_float16_storage_is_reported_and_restores_dtype():
    model = {"w.weight": torch.randn(16, 16), "w.bias": torch.randn(16)}
    decoded = vcwc.decompress(vcwc.compress(model, LOSSLESS.with_changes(codec="x264", uncoded="float16")).data)
    assert decoded["w.bias"].dtype == torch.float32
    assert torch.equal(decoded["w.bias"], model["w.bias"].half().float())


@pytest.mark.parametrize("codec", ["x264", "svtav1"])
def test_awkward_shapes_round_trip(codec):
    torch.manual_seed(3)
    model = {
        "one.weight": torch.randn(1, 1),
        "row.weight": torch.randn(1, 37),
        "odd.weight": torch.randn(7, 13),
        "zero.weight": torch.zeros(5, 6),
        "wide.weight": torch.randn(2, 20000),
        "empty.weight": torch.randn(0, 4),
        "scalar": torch.tensor(1.5),
    }
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec=codec))
    wide_regions = next(t["regions"] for t in compressed.metadata["tensors"] if t["name"] == "wide.weight")
    assert len(wide_regions) > 1  # wider than the frame limit: tiled
    decoded = vcwc.decompress(compressed.data)
    coded = {t["name"] for t in compressed.metadata["tensors"] if t["storage"] == "video"}
    assert_lossless(model, decoded, coded)
    assert torch.equal(decoded["zero.weight"], model["zero.weight"])


def test_one_tensor_decodes_without_the_others(small_conv_model):
    compressed = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x265"))
    only = vcwc.decompress(compressed.data, names=["head.weight"])
    assert list(only) == ["head.weight"]
    assert torch.equal(only["head.weight"], int8_reference(small_conv_model["head.weight"]))
    with pytest.raises(vcwc.InputError, match="nope"):
        vcwc.decompress(compressed.data, names=["nope"])


def test_selection_fc_include_and_exclude(small_conv_model):
    fc_only = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x264", layers="fc"))
    assert {t["name"] for t in fc_only.metadata["tensors"] if t["storage"] == "video"} == {"head.weight"}
    no_head = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x264", exclude=("head.*",)))
    decoded = vcwc.decompress(no_head.data)
    assert torch.equal(decoded["head.weight"], small_conv_model["head.weight"])
    with pytest.raises(vcwc.InputError, match="typo"):
        vcwc.compress(small_conv_model, LOSSLESS.with_changes(include=("typo*",)))


def test_tensors_with_different_settings_never_share_a_frame(small_conv_model):
    recipe = LOSSLESS.with_changes(overrides=(vcwc.TensorOverride(pattern="features.*", qp=30),))
    compressed = vcwc.compress(small_conv_model, recipe)
    frames = {t["name"]: {r["frame"] for r in t.get("regions", [])} for t in compressed.metadata["tensors"]}
    assert frames["features.0.weight"].isdisjoint(frames["head.weight"])
    payloads = {t["name"]: t.get("payload", {}).get("qp") for t in compressed.metadata["tensors"]}
    assert payloads["features.0.weight"] == 30 and payloads["head.weight"] is None
    decoded = vcwc.decompress(compressed.data)
    assert torch.equal(decoded["head.weight"], int8_reference(small_conv_model["head.weight"]))


def test_size_report_adds_up(small_conv_model):
    compressed = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x265"))
    report = compressed.size_report()
    assert report.file_bytes == len(compressed.data)
    parts = report.video_bytes + report.quantizer_bytes + report.raw_symbol_bytes + report.uncoded_bytes
    assert report.raw_symbol_bytes > 0  # the low bits of the wide int8 symbols
    assert report.file_bytes == report.header_bytes + parts
    assert report.coded_weights == 32 * 16 * 9 + 10 * 288
    coded = [t for t in report.tensors if t.storage == "video"]
    assert sum(t.bytes for t in coded) == pytest.approx(report.coded_bytes)
    assert report.bits_per_weight == pytest.approx(8 * report.coded_bytes / report.coded_weights)


def test_fixed_step_is_lossless_on_its_symbols_and_smaller(small_conv_model):
    int8 = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x264"))
    stepped = vcwc.compress(small_conv_model, LOSSLESS.with_changes(codec="x264", step_qp=-26))
    decoded = vcwc.decompress(stepped.data)
    q = quantize(small_conv_model["features.0.weight"].numpy(), QuantConfig(step=vcwc.step_from_qp(-26)))
    assert torch.equal(decoded["features.0.weight"], torch.from_numpy(dequantize(q.symbols, q.scales)))
    assert len(stepped.data) < len(int8.data)


@pytest.mark.parametrize("codec", CODECS)
def test_symbols_wider_than_int8_go_to_10_bit_frames_bit_exactly(codec):
    torch.manual_seed(4)
    model = {"outlier.weight": torch.randn(40, 70) * 0.05, "plain.weight": torch.randn(16, 32) * 0.05}
    model["outlier.weight"][3, 5] = 10.0  # 320 steps of 2^-5: beyond int8
    recipe = LOSSLESS.with_changes(codec=codec, step_qp=-20, bits=10)
    compressed = vcwc.compress(model, recipe)
    depth = {t.name: compressed.meta.frames[t.regions[0].frame].pixel_format for t in compressed.meta.tensors}
    assert depth == {"outlier.weight": "yuv420p10le", "plain.weight": "yuv420p"}
    decoded = vcwc.decompress(compressed.data)
    for name, tensor in model.items():
        q = quantize(tensor.numpy(), QuantConfig(bits=10, step=vcwc.step_from_qp(-20)))
        assert torch.equal(decoded[name], torch.from_numpy(dequantize(q.symbols, q.scales))), name
    capped = vcwc.decompress(vcwc.compress(model, recipe.with_changes(bits=8)).data)
    assert (capped["outlier.weight"] - model["outlier.weight"]).abs().max() > vcwc.step_from_qp(-20)  # coarser scale


def test_with_a_fixed_step_only_the_row_holding_an_outlier_is_coarser_and_the_file_says_so():
    torch.manual_seed(5)
    model = {"layer.weight": torch.randn(40, 70) * 0.05}
    model["layer.weight"][3, 5] = 10.0  # 320 steps of 2^-5: beyond the 127 levels of int8
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec="x264", step_qp=-20))
    (record,) = compressed.meta.tensors
    assert record.quantizer.granularity == "per_channel" and record.quantizer.scales.count == 40
    error = (vcwc.decompress(compressed.data)["layer.weight"] - model["layer.weight"]).abs()
    others = torch.arange(40) != 3
    assert error[others].max() <= vcwc.step_from_qp(-20) / 2 * 1.0001
    assert vcwc.step_from_qp(-20) / 2 < error[3].max() <= 10.0 / 127 / 2 * 1.0001


@pytest.mark.parametrize("recipe", ["smallest", "fast"])
def test_a_one_column_tensor_with_outliers_costs_about_its_int8_symbols_not_a_scale_per_weight(recipe):
    torch.manual_seed(2)
    model = {"gain.weight": torch.randn(3000, 1)}  # beyond int8's reach at the step in some rows
    compressed = vcwc.compress(
        model, vcwc.RECIPES[recipe].with_changes(step_qp=-26) if recipe == "smallest" else recipe
    )
    report = compressed.size_report()
    assert report.quantizer_bytes == 4 and report.bits_per_weight < 8.1
    error = vcwc.decompress(compressed.data)["gain.weight"] - model["gain.weight"]
    assert error.abs().max() <= model["gain.weight"].abs().max() / 127 * 1.0001


def test_a_tensor_never_costs_more_than_its_raw_int8_symbols(models_dir, tmp_path):
    from vcwc.codecs.streams import extract
    from vcwc.format.container import Container

    model = vcwc.load_model(models_dir / "digits_resnet.safetensors")
    compressed = vcwc.compress(model, "fast")  # per-channel int8 fills the range: video costs more than raw
    report = compressed.size_report()
    coded = [t for t in report.tensors if t.storage == "video"]
    assert all(t.bytes <= np.prod(t.shape) + 4 * t.shape[0] + 1e-9 for t in coded)  # raw int8 plus scales
    assert report.raw_symbol_bytes > 0 and any(t.codec == "raw int8" for t in coded)
    decoded = vcwc.decompress(compressed.data)
    for name in (t.name for t in coded):
        assert torch.equal(decoded[name], int8_reference(model.tensor(name), per_channel=True)), name
    description = json.loads(extract(Container(compressed.data), tmp_path / "device").read_text())
    raw = next(t for t in description["tensors"] if t["storage"] == "raw")
    symbols = np.fromfile(tmp_path / "device" / raw["symbols"]["file"], dtype=np.int8)
    assert symbols[raw["symbols"]["offset_bytes"] :].size >= raw["symbols"]["count"]
