"""Sweeps of text models (a language model by perplexity, an encoder by embedding cosine) and of named
recipes, through `vcwc sweep` as a user runs it, on tiny real transformers and the real codecs."""

import json

import pytest

from vcwc import cli
from vcwc.bench.sweep import ModelSpec, load_records, recipe_points
from vcwc.errors import CodecError, InputError
from vcwc.recipe import RECIPES

pytestmark = pytest.mark.slow  # real codecs and models end to end


def models_toml(tmp_path, llama_folder, bert_folder, text_file):
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[model]]\nname = "llama"\npath = "{llama_folder / "model.safetensors"}"\ndata = "{text_file}"\nlimit = 4\n'
        f'[[model]]\nname = "bert"\npath = "{bert_folder / "model.safetensors"}"\ndata = "{text_file}"\nlimit = 40\n'
    )
    return config


def test_a_sweep_of_text_models_with_a_named_recipe(tmp_path, llama_folder, bert_folder, text_file, capsys):
    config = models_toml(tmp_path, llama_folder, bert_folder, text_file)
    out = tmp_path / "sweep"
    arguments = ["sweep", "--models", str(config), "--recipes", "smallest", "--step-qps=-26,-14"]
    arguments += ["--baselines", "int8_zstd_per_channel", "--out", str(out)]
    assert cli.main(arguments) == 0, capsys.readouterr().err
    records = {(r["model"], r["method"], r["qp"]): r for r in load_records(out)}
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())

    fine, coarse = records[("llama", "x264", -26)], records[("llama", "x264", -14)]
    assert fine["task"] == coarse["task"] == "language_model" and fine["recipe_name"] == "smallest"
    assert fine["eval_samples"] == 4 and fine["original_perplexity"] > 1
    assert 0 < abs(fine["perplexity_change"]) < abs(coarse["perplexity_change"])
    assert 100 >= fine["next_token_agreement"] >= coarse["next_token_agreement"]
    assert fine["bits_per_weight"] > coarse["bits_per_weight"] and "top1" not in fine
    # The recipe ran as `vcwc compress --recipe smallest` runs it: the folder's architecture steered it.
    assert fine["recipe"]["quantizer"]["allocation"] == "sensitivity_columns"

    fine, coarse = records[("bert", "x264", -26)], records[("bert", "x264", -14)]
    assert fine["task"] == "text_encoder" and fine["eval_samples"] == 40
    assert 1.0 > fine["mean_cosine"] > coarse["mean_cosine"] >= coarse["min_cosine"]
    assert records[("bert", "int8_zstd_per_channel", None)]["mean_cosine"] > coarse["mean_cosine"]

    summary = (out / "summary.md").read_text()
    assert "| perplexity | change % | next-token agreement % | mark |" in summary
    assert "| mean cosine | min cosine | mark |" in summary and "recipe smallest" in summary
    assert "perplexity within 2% of the original's" in (out / "headline.md").read_text()
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"task", "recipe_name", "perplexity_change", "mean_cosine"} <= set(header)
    assert (out / "accuracy.png").stat().st_size > 0

    # A rerun finds every point done; its scores of identical weights were kept beside the records.
    capsys.readouterr()
    assert cli.main([*arguments, "--dry-run"]) == 0
    assert all(line.startswith("done") for line in capsys.readouterr().out.splitlines())
    assert len(list((out / "evaluations").glob("*.json"))) >= 5


def test_the_text_evaluation_is_computed_once_per_weights(tmp_path, llama_folder, text_file):
    from vcwc.bench.experiment import ModelUnderTest
    from vcwc.bench.scoring import TextData
    from vcwc.eval.text import load_tokenizer, read_text
    from vcwc.io import load_model

    path = llama_folder / "model.safetensors"
    (tmp_path / "scores").mkdir()
    data = TextData(read_text(text_file), load_tokenizer(llama_folder), str(text_file), limit=2)
    subject = ModelUnderTest("llama", load_model(path), None, data, evaluation_store=tmp_path / "scores")
    assert subject.original.perplexity_change == 0.0 and subject.original.next_token_agreement == 100.0
    record = subject.run_baseline("int8_per_tensor")
    again, cached = subject.scored(dict(subject.state_dict))
    assert cached and again is subject.original
    other = ModelUnderTest("llama", load_model(path), None, data, evaluation_store=tmp_path / "scores")
    weights = {n: t.clone() for n, t in subject.state_dict.items()}
    weights["model.embed_tokens.weight"] *= 0.5
    first, known = subject.scored(weights)
    second, known_there = other.scored(weights)  # read from the store, not evaluated again
    assert not known and known_there and first.to_dict() == second.to_dict()
    assert record["task"] == "language_model" and record["perplexity_change"] != 0.0


def test_named_recipes_plan_their_codecs_and_steps():
    smallest, fast, lossless = RECIPES["smallest"], RECIPES["fast"], RECIPES["lossless"]
    planned = recipe_points((smallest, fast, lossless), None, [-20, -18])
    assert [(r.name, r.codec.name, r.quantizer.step_qp) for r in planned] == [
        ("smallest", "x264", -20),
        ("smallest", "x264", -18),
        ("fast", "x264", None),
        ("lossless", "x264", None),
    ]
    swapped = recipe_points((fast,), ["x265", "x264"], None)
    assert [(r.codec.name, r.codec.preset) for r in swapped] == [("x265", None), ("x264", "ultrafast")]
    with pytest.raises(CodecError, match="unknown codec"):
        recipe_points((fast,), ["nonsense"], None)


def test_a_model_list_needs_the_architecture_of_image_models_only(tmp_path, text_file, models_dir):
    config = tmp_path / "models.toml"
    config.write_text(f'[[model]]\npath = "m.safetensors"\ndata = "{text_file}"\ntokenizer = "tok.json"\n')
    (spec,) = ModelSpec.parse(str(config))
    assert spec.arch is None and not spec.is_image_data and spec.tokenizer == str(tmp_path / "tok.json")
    assert spec.files == (str(tmp_path / "m.safetensors"), str(text_file), str(tmp_path / "tok.json"))
    config.write_text(f'[[model]]\npath = "m.safetensors"\ndata = "{models_dir / "digits_test.npz"}"\n')
    with pytest.raises(InputError, match="lacks arch"):
        ModelSpec.parse(str(config))


def test_text_points_keep_their_key_fields_apart_from_image_points(tmp_path, models_dir):
    from vcwc.bench.sweep import Point

    image = ModelSpec("digits", "m.safetensors", "digits_resnet", str(models_dir / "digits_test.npz"))
    settings = Point(image, "fp32").settings("0" * 64)
    # Fields added for text models stay out of an image model's settings: earlier sweeps keep their keys.
    assert "tokenizer" not in settings["model"] and "input_shape" not in settings["model"]
    assert json.dumps(settings, sort_keys=True)


def test_a_point_asking_for_auto_is_keyed_by_the_auto_rules_too(models_dir, monkeypatch):
    from vcwc.bench import sweep
    from vcwc.recipe import RECIPES, CodecSettings, Recipe

    image = ModelSpec("digits", "m.safetensors", "digits_resnet", str(models_dir / "digits_test.npz"))
    auto = sweep.Point(image, "x264", RECIPES["smallest"].with_changes(step_qp=-20))
    fixed = sweep.Point(image, "x264", Recipe(codec=CodecSettings("x264")))
    keys = [sweep.point_key(point.settings("0" * 64)) for point in (auto, fixed)]
    assert auto.settings("0" * 64)["auto_rules"] == sweep.AUTO_RULES and "auto_rules" not in fixed.settings("0" * 64)
    monkeypatch.setattr(sweep, "AUTO_RULES", sweep.AUTO_RULES + 1)
    # New rules: the auto point is measured again, the point that chose everything keeps its record.
    assert sweep.point_key(auto.settings("0" * 64)) != keys[0]
    assert sweep.point_key(fixed.settings("0" * 64)) == keys[1]


def test_a_sharded_model_is_keyed_by_its_shards_which_travel_with_it(tmp_path, text_file):
    import torch
    from safetensors.torch import save_file

    from vcwc.bench.sweep import file_digest

    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a.weight": torch.ones(4, 4)}, folder / "part-1.safetensors")
    save_file({"b.weight": torch.zeros(4, 4)}, folder / "part-2.safetensors")
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a.weight": "part-1.safetensors", "b.weight": "part-2.safetensors"}}))
    (folder / "config.json").write_text("{}")
    spec = ModelSpec("sharded", str(index), None, str(text_file))
    assert spec.companions == ("part-1.safetensors", "part-2.safetensors", "config.json")
    before = file_digest(str(index))
    assert file_digest(str(folder)) == before and ModelSpec("whole", str(folder), None, str(text_file)).companions == ()
    save_file({"b.weight": torch.ones(4, 4)}, folder / "part-2.safetensors")  # the index is unchanged
    assert file_digest(str(index)) != before


def test_a_text_model_given_as_its_folder(tmp_path, llama_folder, text_file):
    from vcwc.bench.sweep import Sweep, plan_points

    spec = ModelSpec("llama", str(llama_folder), None, str(text_file), limit=2)
    points = plan_points([spec], [], [], baselines=("int8_per_tensor",), recipes=(RECIPES["lossless"],))
    records = Sweep(tmp_path / "sweep", progress=False).run(points)
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    assert records[1]["recipe_name"] == "lossless" and records[1]["task"] == "language_model"
    # The same int8 symbols either way: lossless video rebuilds what raw int8 does.
    assert records[0]["perplexity"] == records[1]["perplexity"]
