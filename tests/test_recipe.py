"""Recipes: named ones, files, overrides, validation, and what a file records. Pure: no codec runs."""

import itertools
import json

import pytest

from vcwc import CodecError, InputError
from vcwc.cli import build_parser
from vcwc.cli.compress import recipe_from_args
from vcwc.recipe import AUTO_RULES, RECIPES, CodecSettings, Recipe, TensorOverride, get_recipe, named, step_from_qp


def test_named_recipes_say_what_they_are():
    lossless, smallest, fast = RECIPES["lossless"], RECIPES["smallest"], RECIPES["fast"]
    assert (lossless.codec.name, lossless.codec.qp, lossless.quantizer.granularity) == ("x264", None, "per_tensor")
    assert smallest.codec.name == "x264" and smallest.quantizer.step_qp == -16
    assert (smallest.rounding, smallest.bias_correction) == ("auto", "auto")
    assert fast.codec.preset == "ultrafast" and fast.quantizer.granularity == "per_channel"
    assert fast.rounding == "nearest" and fast.bias_correction == "off"
    assert "2^(-16/4)" in smallest.describe() and "ultrafast" in fast.describe()
    with pytest.raises(InputError, match="unknown recipe 'tiny'"):
        named("tiny")


def test_auto_methods_resolve_on_the_architecture():
    smallest = RECIPES["smallest"]
    for statistics in ({"batchnorm": True}, {"batchnorm": True, "real_inputs": True}):
        with_arch = smallest.resolved(architecture=True, **statistics)
        assert (with_arch.rounding, with_arch.bias_correction) == ("gptq", "on")
    real_inputs_no_batchnorm = smallest.resolved(architecture=True, real_inputs=True)
    assert (real_inputs_no_batchnorm.rounding, real_inputs_no_batchnorm.bias_correction) == ("gptq", "off")
    for without in (smallest.resolved(architecture=True), smallest.resolved(real_inputs=True, batchnorm=True)):
        assert (without.rounding, without.bias_correction) == ("dependent", "off")
    lossy = smallest.with_changes(qp=20).resolved(architecture=True, batchnorm=True)
    assert (lossy.rounding, lossy.bias_correction) == ("nearest", "on")
    assert not smallest.needs_architecture and smallest.with_changes(rounding="gptq").needs_architecture
    auto = Recipe(codec=CodecSettings("auto"))
    assert auto.resolved(codec="x265").codec.name == "x265"


def test_the_auto_rules_are_the_ones_their_version_stands_for():
    """If this fails, the "auto" rules changed: raise vcwc.recipe.AUTO_RULES (sweeps would reuse points
    measured under the old rules otherwise), move the committed sweeps' records to their new keys where
    they still hold (scripts/migrate_sweep_keys.py) or rerun them, and write the new rules here."""
    assert AUTO_RULES == 2
    resolved = {}
    for qp in (None, 20):
        for flags in itertools.product((False, True), repeat=3):
            known = dict(zip(("architecture", "real_inputs", "batchnorm"), flags))
            recipe = RECIPES["smallest"].with_changes(qp=qp).resolved(codec="x265", **known)
            resolved[(qp, *flags)] = (recipe.rounding, recipe.bias_correction, recipe.quantizer.allocation)
    dependent, gptq, nearest, columns = "dependent", "gptq", "nearest", "sensitivity_columns"
    assert resolved == {
        (None, False, False, False): (dependent, "off", "uniform"),
        (None, False, False, True): (dependent, "off", "uniform"),
        (None, False, True, False): (dependent, "off", "uniform"),
        (None, False, True, True): (dependent, "off", "uniform"),
        (None, True, False, False): (dependent, "off", columns),
        (None, True, False, True): (gptq, "on", columns),
        (None, True, True, False): (gptq, "off", columns),
        (None, True, True, True): (gptq, "on", columns),
        (20, False, False, False): (nearest, "off", "uniform"),
        (20, False, False, True): (nearest, "off", "uniform"),
        (20, False, True, False): (nearest, "off", "uniform"),
        (20, False, True, True): (nearest, "off", "uniform"),
        (20, True, False, False): (nearest, "off", columns),
        (20, True, False, True): (nearest, "on", columns),
        (20, True, True, False): (nearest, "off", columns),
        (20, True, True, True): (nearest, "on", columns),
    }
    without_step = RECIPES["smallest"].with_changes(step_qp=None).resolved(architecture=True)
    assert without_step.quantizer.allocation == "uniform"
    assert Recipe(codec=CodecSettings("auto")).resolved(codec="x265").codec.name == "x265"
    assert RECIPES["smallest"].chooses_automatically and RECIPES["lossless"].chooses_automatically  # low bits
    assert not Recipe(codec=CodecSettings("x264")).chooses_automatically


def test_a_recipe_round_trips_through_dict_json_and_toml(tmp_path):
    recipe = RECIPES["smallest"].with_changes(
        step_qp=-18, exclude=("fc.*",), overrides=(TensorOverride(name="conv1.weight", step_qp=-22),)
    )
    data = recipe.to_dict()
    assert Recipe.from_dict(json.loads(json.dumps(data))) == recipe
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert get_recipe(str(path)) == recipe
    toml = tmp_path / "r.toml"
    toml.write_text(
        'name = "mine"\nrounding = "gptq"\nbias_correction = true\n[codec]\nname = "x264"\n'
        '[quantizer]\nstep_qp = -17\n[[overrides]]\npattern = "layer3.*"\nstep_qp = -19\n'
    )
    loaded = get_recipe(str(toml))
    assert loaded.bias_correction == "on" and loaded.step_qp_for("layer3.0.conv1.weight") == -19
    assert loaded.step_qp_for("conv1.weight") == -17 and step_from_qp(-16) == 0.0625


def test_bad_recipes_are_refused_naming_the_setting(tmp_path):
    with pytest.raises(InputError, match="unknown setting quantizer.steps"):
        Recipe.from_dict({"quantizer": {"steps": 3}})
    with pytest.raises(InputError, match="rounding must be one of"):
        Recipe.from_dict({"rounding": "stochastic"})
    with pytest.raises(InputError, match="version 7"):
        Recipe.from_dict({"version": 7})
    with pytest.raises(InputError, match="bits must be int"):
        RECIPES["lossless"].with_changes(bits="8")
    with pytest.raises(CodecError, match="unknown codec 'h266'"):
        RECIPES["lossless"].with_changes(codec="h266")
    with pytest.raises(InputError, match="no setting 'colour'"):
        RECIPES["lossless"].with_changes(colour="blue")
    broken = tmp_path / "broken.toml"
    broken.write_text("[codec\n")
    with pytest.raises(InputError, match="broken.toml"):
        get_recipe(str(broken))
    with pytest.raises(InputError, match="encoder_format"):
        RECIPES["lossless"].with_changes(codec="custom:libx264")


def arguments(*argv):
    return build_parser().parse_args(["compress", "model.pt", "-o", "out.vcwc", *argv])


def test_command_line_flags_override_the_recipe():
    recipe = recipe_from_args(
        arguments(
            "--recipe",
            "smallest",
            "--step-qp=-20",
            "--no-bias-correction",
            "--rounding",
            "nearest",
            "--exclude",
            "fc.*",
        )
    )
    assert recipe.quantizer.step_qp == -20 and recipe.bias_correction == "off" and recipe.rounding == "nearest"
    assert recipe.selection.exclude == ("fc.*",) and recipe.name == "smallest"
    fast = recipe_from_args(arguments("--recipe", "fast", "--per-tensor", "--codec", "x265"))
    assert fast.quantizer.granularity == "per_tensor" and fast.codec.name == "x265" and fast.codec.preset is None
    stepped = recipe_from_args(arguments("--step", "0.0625", "--codec", "x264", "--qp", "20"))
    assert stepped.quantizer.step_qp == -16 and stepped.codec.qp == 20
    assert recipe_from_args(arguments()) == RECIPES["lossless"]
    custom = recipe_from_args(arguments("--encoder", "libx264", "--encoder-args", "-qp 0", "--encoder-format", "h264"))
    assert custom.codec.name == "custom:libx264" and custom.codec.encoder_args == "-qp 0"
