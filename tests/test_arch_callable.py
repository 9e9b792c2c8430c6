"""--arch MODULE:CALLABLE: any importable module's model builder, with a one-line error for each way it fails."""

import json
import textwrap

import pytest

from vcwc import cli

MODULE = textwrap.dedent("""
    from torch import nn
    from vcwc.models.cifar import DigitsResNet

    def digits():
        return DigitsResNet()

    def needs_width(width):
        return DigitsResNet(width)

    def not_a_module():
        return [1, 2, 3]

    def other_model():
        return nn.Linear(3, 4)

    def broken():
        raise RuntimeError("no such layer")

    class Positions(nn.Module):
        # A token model that takes at most 16 tokens: position embeddings of its own.
        def __init__(self):
            super().__init__()
            self.tokens, self.positions, self.head = nn.Embedding(50, 8), nn.Embedding(16, 8), nn.Linear(8, 3)

        def forward(self, ids):
            return self.head(self.tokens(ids) + self.positions.weight[: ids.shape[1]])

    def positions():
        return Positions()

    NOT_CALLABLE = 3
""")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MODULE)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "zoo.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def compress(models_dir, tmp_path, arch, *extra):
    output = tmp_path / "out.vcwc"
    return cli.main(
        [
            "compress",
            str(models_dir / "digits_resnet.safetensors"),
            "-o",
            str(output),
            "--force",
            "--recipe",
            "smallest",
            "--arch",
            arch,
            "--input-shape",
            "1,8,8",
            "--json",
            *extra,
        ]
    )


@pytest.mark.parametrize("arch", ["mymodels:digits", "pkg.zoo:digits", "mymodels.py:digits"])
def test_a_callable_in_the_current_folder_drives_the_data_free_methods(workdir, models_dir, capsys, arch):
    assert compress(models_dir, workdir, arch) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"]["rounding"] == "gptq" and summary["recipe"]["bias_correction"] == "on"
    assert summary["methods"]["inputs"]["shape"] == [32, 1, 8, 8]


@pytest.mark.parametrize(
    "arch, message",
    [
        ("nosuchmodule:digits", "cannot import 'nosuchmodule'"),
        ("mymodels:missing", "'mymodels' has no 'missing'"),
        ("mymodels:NOT_CALLABLE", "is a int, not a callable"),
        ("mymodels:needs_width", "needs arguments (width)"),
        ("mymodels:not_a_module", "returned a list, not a torch.nn.Module"),
        ("mymodels:broken", "broken() failed (RuntimeError: no such layer)"),
        ("mymodels:other_model", "the weights do not fit Linear: missing keys: weight, bias"),
        ("resnet19", "unknown architecture 'resnet19'"),
    ],
)
def test_each_failure_is_one_line_naming_it(workdir, models_dir, capsys, arch, message):
    assert compress(models_dir, workdir, arch) == 1
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error


def test_a_forward_pass_that_fails_on_the_input_shape_is_named(workdir, models_dir, capsys):
    assert compress(models_dir, workdir, "mymodels:digits", "--rounding", "gptq", "--input-shape", "3,9,9") == 1
    error = capsys.readouterr().err
    assert "forward pass of DigitsResNet failed on gaussian noise of shape (32, 3, 9, 9)" in error
    assert "give one input's shape with --input-shape" in error and len(error.strip().splitlines()) == 1


def test_a_token_model_shorter_than_the_default_sequence_is_told_to_give_its_length(workdir, capsys):
    import torch
    from mymodels import positions
    from safetensors.torch import save_model

    torch.manual_seed(0)
    save_model(positions(), str(workdir / "positions.safetensors"))
    command = ["compress", "positions.safetensors", "-o", "out.vcwc", "--force", "--recipe", "smallest"]
    assert cli.main([*command, "--arch", "mymodels:positions"]) == 1
    error = capsys.readouterr().err
    assert "failed on random tokens of shape (2, 128)" in error and "--input-shape" in error, error
    assert not (workdir / "out.vcwc").exists()
    assert cli.main([*command, "--arch", "mymodels:positions", "--input-shape", "16"]) == 0
