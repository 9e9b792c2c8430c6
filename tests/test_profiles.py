"""Phone-like software profiles: real x264/x265 round trips, held to their profile, level and frame caps."""

import pytest
import torch

import vcwc
from vcwc import InputError
from vcwc.codecs import EncoderSettings, get_codec
from vcwc.codecs.bitstream import parse_stream
from vcwc.codecs.levels import hardware_fit, level_allows
from vcwc.metrics import snr_db

pytestmark = pytest.mark.slow  # real codecs or models end to end

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video

# profile -> (profile_idc, profile name, highest level_idc allowed)
EXPECTED = {
    "mobile-h264": (77, "Main", 51),
    "mobile-h264-baseline": (66, "Constrained Baseline", 40),
    "mobile-hevc": (1, "Main", 153),
}


def streams(compressed):
    for frame in compressed.metadata["frames"]:
        yield frame, parse_stream(compressed.container.blob(frame["blob"]), frame["container"])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_round_trip_writes_the_promised_profile_and_level(name):
    torch.manual_seed(0)
    model = {
        "conv.weight": torch.randn(64, 32, 3, 3) * 0.05,
        "fc.weight": torch.randn(10, 640) * 0.02,
        "fc.bias": torch.randn(10),
    }
    snrs = []
    for qp in (36, 24, 12):
        compressed = vcwc.compress(model, LOSSLESS.with_changes(codec=name, qp=qp))
        decoded = vcwc.decompress(compressed.data)
        snrs.append(snr_db(model["conv.weight"], decoded["conv.weight"]))
        assert torch.equal(decoded["fc.bias"], model["fc.bias"])
        profile_idc, profile, max_level = EXPECTED[name]
        for frame, info in streams(compressed):
            assert (info.profile_idc, info.profile) == (profile_idc, profile)
            assert info.level_idc <= max_level and (info.chroma_format, info.bit_depth) == ("4:2:0", 8)
            assert (info.width, info.height) == (frame["width"], frame["height"])
            assert hardware_fit(info)[0], hardware_fit(info)
    assert snrs[0] < snrs[1] < snrs[2] and snrs[2] > 30, snrs


@pytest.mark.parametrize("name, rows", [("mobile-h264", 2400), ("mobile-h264-baseline", 1200), ("mobile-hevc", 2200)])
def test_a_tensor_over_the_frame_cap_is_tiled(name, rows):
    codec = get_codec(name)
    torch.manual_seed(1)
    model = {"tall.weight": torch.randn(rows, 40)}
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec=name, qp=30, preset="ultrafast"))
    regions = compressed.metadata["tensors"][0]["regions"]
    assert len(regions) > 1
    for frame, info in streams(compressed):
        assert frame["width"] <= codec.max_width and frame["height"] <= codec.max_height
        assert (info.width, info.height) == (frame["width"], frame["height"])
        assert level_allows(info), info
    decoded = vcwc.decompress(compressed.data)["tall.weight"]
    assert snr_db(model["tall.weight"], decoded) > 15


@pytest.mark.parametrize("name", list(EXPECTED))
def test_profiles_refuse_what_phone_encoders_cannot_do(name):
    codec = get_codec(name)
    assert codec.default_mode == "lossy" and codec.kind == "profile"
    with pytest.raises(InputError, match=r"no lossless mode \(phone hardware encoders.*give a QP in 1..51"):
        vcwc.compress({"w.weight": torch.randn(8, 8)}, LOSSLESS.with_changes(codec=name))
    with pytest.raises(InputError, match="outside"):
        codec.check(EncoderSettings(qp=0))  # x264's QP 0 is its lossless mode
    with pytest.raises(InputError, match="not one of"):
        codec.check(EncoderSettings(qp=20, preset="veryslow"))
    command = codec.job(64, 64, EncoderSettings(qp=20)).output_options
    assert dict(command)["pix_fmt"] == "yuv420p"
