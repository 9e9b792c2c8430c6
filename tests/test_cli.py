import json

import pytest
import torch
from safetensors.torch import load_file

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
    torch.save({"state_dict": {"module.conv.weight": torch.randn(8, 4, 3, 3), "module.conv.bias": torch.randn(8)},
                "best_prec1": 90.0}, path)
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
