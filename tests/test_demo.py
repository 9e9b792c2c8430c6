import json

import pytest
import torch

from vcwc import cli
from vcwc.bench.demo import BUNDLED_MODEL, bundled_file, run_demo
from vcwc.bench.experiment import weights_digest

pytestmark = pytest.mark.slow  # real codecs or models end to end


def test_bundled_model_is_found():
    assert bundled_file(BUNDLED_MODEL).is_file()


def test_lossless_coding_adds_no_error_to_the_int8_model():
    result = run_demo(codecs=("x264", "x265"))
    rows = {(row["method"], row["qp"]): row for row in result.rows}
    int8 = rows[("int8_per_tensor", None)]
    for codec in ("x264", "x265"):
        lossless = rows[(codec, None)]
        assert lossless["top1"] == int8["top1"] and lossless["agreement"] == int8["agreement"]
        assert lossless["weight_snr_db"] == int8["weight_snr_db"]
        assert lossless["cached_evaluation"]  # the same weights as int8, so scored once
    assert rows[("fp32", None)]["top1"] >= 97.0
    assert (
        rows[("x265", 36)]["bits_per_weight"]
        < rows[("x265", 24)]["bits_per_weight"]
        < rows[("x265", None)]["bits_per_weight"]
    )


def test_digest_tells_identical_weights_apart_from_different_ones():
    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    assert weights_digest(a) == weights_digest({"w": torch.ones(3), "b": torch.zeros(2)})
    assert weights_digest(a) != weights_digest({"w": torch.ones(3), "b": torch.tensor([0.0, 1e-8])})
    assert weights_digest(a) != weights_digest({"w": torch.ones(3).half(), "b": torch.zeros(2)})


def test_demo_command_json(capsys):
    assert cli.main(["demo", "--codecs", "svtav1", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [row["method"] for row in output["rows"]][:3] == ["fp32", "int8_per_tensor", "int8_zstd_per_tensor"]
    assert {row["qp"] for row in output["rows"] if row["codec"] == "svtav1"} == {None, 24, 36, 44}


def test_eval_command_on_a_vcwc_file(tmp_path, capsys, models_dir):
    compressed = tmp_path / "digits.vcwc"
    model = models_dir / "digits_resnet.safetensors"
    assert cli.main(["compress", str(model), "-o", str(compressed), "--codec", "x264", "--qp", "24"]) == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "eval",
                str(compressed),
                "--arch",
                "digits_resnet",
                "--data",
                str(models_dir / "digits_test.npz"),
                "--reference",
                str(model),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 450 and result["agreement"] > 95 and result["top1"] > 95


def test_eval_takes_the_normalization_given(capsys, models_dir):
    arguments = ["eval", str(models_dir / "digits_resnet.safetensors"), "--arch", "digits_resnet"]
    arguments += ["--data", str(models_dir / "digits_test.npz"), "--json"]
    assert cli.main(arguments) == 0
    own = json.loads(capsys.readouterr().out)
    assert cli.main([*arguments, "--mean", "0.9", "--std", "0.05"]) == 0
    shifted = json.loads(capsys.readouterr().out)
    assert own["top1"] > 95 and shifted["top1"] < own["top1"] - 20  # inputs far from the trained range
    assert cli.main([*arguments, "--mean", "0.5"]) == 1
    assert "--mean and --std go together" in capsys.readouterr().err
    assert cli.main([*arguments, "--mean", "0.5,0.5", "--std", "0.5"]) == 1
    assert "--mean 0.5,0.5 --std 0.5" in capsys.readouterr().err
