import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from vcwc import cli


def command_names():
    parser = cli.build_parser()
    return list(parser._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", command_names())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert "usage: vcwc " + command in capsys.readouterr().out


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pth"
    torch.save(
        {
            "state_dict": {"module.conv.weight": torch.randn(8, 4, 3, 3), "module.conv.bias": torch.randn(8)},
            "best_prec1": 90.0,
        },
        path,
    )
    return path


def test_compress_info_decompress(tmp_path, checkpoint, capsys):
    out = tmp_path / "model.vcwc"
    assert cli.main(["compress", str(checkpoint), "-o", str(out), "--codec", "x264", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["coded_weights"] == 8 * 4 * 9 and summary["file_bytes"] == out.stat().st_size

    assert cli.main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in info["tensors"]] == ["conv.weight", "conv.bias"]
    assert cli.main(["info", str(out)]) == 0
    assert "conv.weight" in capsys.readouterr().out

    restored = tmp_path / "restored.safetensors"
    assert cli.main(["decompress", str(out), "-o", str(restored)]) == 0
    assert set(load_file(restored)) == {"conv.weight", "conv.bias"}
    as_pt = tmp_path / "restored.pt"
    assert cli.main(["decompress", str(out), "-o", str(as_pt), "--restore-prefix"]) == 0
    checkpoint_back = torch.load(as_pt, weights_only=True)
    assert checkpoint_back["best_prec1"] == 90.0
    assert set(checkpoint_back["state_dict"]) == {"module.conv.weight", "module.conv.bias"}


def test_failures_exit_non_zero_with_a_one_line_reason(tmp_path, checkpoint, capsys):
    out = tmp_path / "model.vcwc"
    out.write_bytes(b"keep me")
    assert cli.main(["compress", str(checkpoint), "-o", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("vcwc: error: ") and "--force" in error and len(error.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me"
    assert cli.main(["info", str(out)]) == 1
    assert "is too short to be a .vcwc file" in capsys.readouterr().err
    assert cli.main(["compress", str(tmp_path / "nothing.pt"), "-o", str(tmp_path / "x.vcwc")]) == 1
    assert "nothing.pt" in capsys.readouterr().err


def test_encoders_lists_the_software_codecs(capsys):
    assert cli.main(["encoders", "--json"]) == 0
    listed = {e["codec"]: e for e in json.loads(capsys.readouterr().out)["encoders"]}
    assert all(listed[name]["works"] for name in ("x264", "x265", "aom", "svtav1"))


def test_info_piped_into_a_reader_that_stops_early_is_quiet(tmp_path, checkpoint):
    out = tmp_path / "model.vcwc"
    assert cli.main(["compress", str(checkpoint), "-o", str(out), "--codec", "x264"]) == 0
    shell = f"{sys.executable} -m vcwc.cli info {out} | head -c 10"
    completed = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], capture_output=True, text=True)
    assert completed.returncode == 0 and "Traceback" not in completed.stderr and len(completed.stdout) == 10


def test_info_and_encoders_start_without_torch(tmp_path, checkpoint):
    out = tmp_path / "model.vcwc"
    assert cli.main(["compress", str(checkpoint), "-o", str(out), "--codec", "x264"]) == 0
    program = (
        "import sys; from vcwc.cli import main; "
        f"assert main(['info', {str(out)!r}]) == 0; assert main(['encoders']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_a_pickle_is_refused_with_the_fix_and_a_vcwc_file_is_recognised(tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save({"model": Payload()}, path)
    assert cli.main(["compress", str(path), "-o", str(tmp_path / "x.vcwc")]) == 1
    error = capsys.readouterr().err
    assert "torch.save(model.state_dict()" in error and "\x1b" not in error and len(error.strip().splitlines()) == 1
    compressed = tmp_path / "already.vcwc"
    assert cli.main(["compress", str(tmp_path / "m.safetensors"), "-o", str(compressed)]) == 1
    capsys.readouterr()
    save_file({"w": torch.randn(4, 4)}, str(tmp_path / "m.safetensors"))
    assert cli.main(["compress", str(tmp_path / "m.safetensors"), "-o", str(compressed), "--codec", "x264"]) == 0
    assert cli.main(["compress", str(compressed), "-o", str(tmp_path / "again.vcwc")]) == 1
    assert "is a .vcwc file, already compressed" in capsys.readouterr().err


def test_a_torchscript_archive_is_refused_with_the_fix(tmp_path, capsys):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 4)), str(path))
    assert cli.main(["compress", str(path), "-o", str(tmp_path / "x.vcwc")]) == 1
    captured = capsys.readouterr()
    assert "TorchScript archive" in captured.err and "state_dict()" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "x.vcwc").exists()


@pytest.mark.parametrize(
    "name, content, named",
    [
        ("model.gguf", b"GGUF\x03\x00\x00\x00" + bytes(64), "a GGUF file"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
        ("model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(64), "a TensorFlow Lite model"),
        ("model.onnx", b"\x08\x07\x12\x04" + bytes(64), "an ONNX model"),
        ("weights.npz", None, "a NumPy .npz archive"),
    ],
)
def test_a_model_of_another_framework_is_named_with_the_way_to_safetensors(tmp_path, capsys, name, content, named):
    import numpy as np

    path = tmp_path / name
    if content is None:
        np.savez(path, w=np.ones((4, 4), np.float32))
    else:
        path.write_bytes(content)
    assert cli.main(["compress", str(path), "-o", str(tmp_path / "x.vcwc")]) == 1
    error = capsys.readouterr().err
    assert f"{path}: {named}" in error and "safetensors" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "x.vcwc").exists()


class Payload:  # needs pickle code to load
    def __init__(self):
        self.weights = torch.ones(2, 2)


def test_low_snr_warns_on_stderr_and_in_json_and_min_snr_refuses(tmp_path, checkpoint, capsys):
    out = tmp_path / "model.vcwc"
    assert cli.main(["compress", str(checkpoint), "-o", str(out), "--codec", "aom", "--qp", "63", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert any("dB weight SNR" in warning for warning in summary["warnings"])
    assert "vcwc: warning: tensor 'conv.weight'" in captured.err
    refused = tmp_path / "refused.vcwc"
    assert (
        cli.main(["compress", str(checkpoint), "-o", str(refused), "--codec", "aom", "--qp", "63", "--min-snr", "20"])
        == 1
    )
    assert "minimum weight SNR of 20 dB" in capsys.readouterr().err
    assert not refused.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".refused")]


def test_non_finite_values_stored_uncoded_are_warned_about(tmp_path, capsys):
    model = tmp_path / "nan.safetensors"
    save_file({"w": torch.randn(8, 8), "b": torch.tensor([1.0, float("nan")])}, str(model))
    assert cli.main(["compress", str(model), "-o", str(tmp_path / "nan.vcwc"), "--codec", "x264", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("'b'" in warning and "NaN" in warning for warning in summary["warnings"])


def strict_json(text: str):
    """JSON as a strict parser (jq, JavaScript) reads it: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_model_without_weight_matrices_reports_no_bits_per_weight_as_strict_json(tmp_path, capsys):
    model = tmp_path / "buffers.safetensors"
    save_file({"steps": torch.arange(10), "mask": torch.ones(3, 3, dtype=torch.bool)}, str(model))
    out = tmp_path / "buffers.vcwc"
    assert cli.main(["compress", str(model), "-o", str(out), "--recipe", "smallest", "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["bits_per_weight"] is None
    assert cli.main(["info", str(out), "--json"]) == 0
    info = strict_json(capsys.readouterr().out)
    assert info["bits_per_weight"] is None and info["coded_weights"] == 0
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no coded weights" in text and "larger than the original" in text and "nan" not in text


def test_info_shows_step_qp_rounding_and_corrections(tmp_path, models_dir, capsys):
    out = tmp_path / "digits.vcwc"
    assert (
        cli.main(
            [
                "compress",
                str(models_dir / "digits_resnet.safetensors"),
                "-o",
                str(out),
                "--recipe",
                "smallest",
                "--step-qp=-16",
                "--arch",
                "digits_resnet",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "gptq rounding on 7 tensors" in err and "bias correction on 7 tensors" in err
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("fc1.weight"))
    assert "step -16" in row and "gptq" in row and "yes" in row
    assert "recipe: smallest:" in text
    assert cli.main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recipe"]["rounding"] == "gptq" and info["recipe"]["bias_correction"] == "on"
    assert info["recipe"]["quantizer"]["step_qp"] == -16 and "fc1.weight" in info["methods"]["gptq_rounding"]["served"]
