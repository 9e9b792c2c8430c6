"""A Hugging Face model folder drives the data-free methods without --arch: its config.json names the class,
which vcwc builds with transformers where the file's tensors fit it exactly; every reason it cannot is a
note, and the file is then weight-only."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vcwc import cli


def compress_json(capsys, model, *extra) -> tuple[dict, str]:
    output = model.parent / "out.vcwc"
    code = cli.main(
        ["compress", str(model), "-o", str(output), "--force", "--recipe", "smallest", "--step-qp=-20"]
        + ["--json", *extra]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


@pytest.fixture
def bert_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_a_folder_with_a_config_gets_the_methods_without_arch(bert_folder, capsys):
    report, err = compress_json(capsys, bert_folder / "model.safetensors")
    assert report["methods"]["architecture"] == {"name": "BertModel"}
    assert "architecture: BertModel from" in err and "config.json" in err
    assert report["methods"]["inputs"]["kind"] == "random_tokens"
    assert report["methods"]["step_allocation"]["step_qp_offsets"]
    assert cli.main(["info", str(bert_folder / "out.vcwc")]) == 0
    shown = capsys.readouterr().out
    assert "data-free methods ran BertModel on random tokens" in shown and "allocated by sensitivity" in shown
    weight_only, _ = compress_json(capsys, bert_folder / "model.safetensors", "--arch", "none")
    assert "architecture" not in (weight_only.get("methods") or {})


@pytest.mark.slow
def test_a_tied_causal_language_model_folder(tmp_path, capsys):
    """save_pretrained stores the tied output layer once, under the embedding's name."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    report, _ = compress_json(capsys, tmp_path, "--rounding", "gptq")
    assert report["methods"]["architecture"] == {"name": "LlamaForCausalLM"}
    assert report["methods"]["gptq_rounding"]["served"]


def weights_folder(tmp_path, config) -> Path:
    save_file({"layer.weight": torch.randn(16, 16), "layer.bias": torch.zeros(16)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return tmp_path / "model.safetensors"


@pytest.mark.parametrize(
    "config, reason",
    [
        ("{not json", "not readable JSON"),
        ({"name": "no model type"}, "names no Hugging Face model_type"),
        ({"model_type": "bert", "auto_map": {"AutoModel": "modeling.MyModel"}}, "code shipped in the folder"),
    ],
)
def test_a_config_that_cannot_serve_is_a_note_and_the_file_weight_only(tmp_path, capsys, config, reason):
    report, err = compress_json(capsys, weights_folder(tmp_path, config))
    assert "is not used (weight-only)" in err and reason in err
    assert "architecture" not in (report.get("methods") or {})
    assert report["recipe"]["quantizer"]["allocation"] == "uniform"


def test_without_transformers_the_note_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    _, err = compress_json(capsys, weights_folder(tmp_path, {"model_type": "bert"}))
    assert "needs transformers" in err


def test_weights_that_fit_no_class_the_config_names(tmp_path, capsys):
    pytest.importorskip("transformers")
    _, err = compress_json(capsys, weights_folder(tmp_path, {"model_type": "bert", "architectures": ["BertModel"]}))
    assert "no transformers class it names takes the file's tensors" in err


def test_a_method_asked_for_by_name_says_why_the_folder_did_not_serve(tmp_path, capsys):
    model = weights_folder(tmp_path, {"model_type": "bert", "auto_map": {}})
    code = cli.main(["compress", str(model), "-o", str(tmp_path / "o.vcwc"), "--rounding", "gptq", "--step-qp=-20"])
    err = capsys.readouterr().err
    assert code != 0 and "gptq rounding needs the model's architecture" in err and "auto_map" in err
    assert not (tmp_path / "o.vcwc").exists()


@pytest.mark.slow
def test_a_folder_model_that_token_ids_alone_cannot_run_is_weight_only_with_the_reason(tmp_path, capsys):
    """T5's forward needs decoder inputs too: the folder's guess falls back; asked by name, it is an error."""
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    transformers.T5Model(config).save_pretrained(tmp_path)
    report, err = compress_json(capsys, tmp_path)
    assert "T5Model from the folder's config.json is not used (weight-only)" in err and "forward pass" in err
    assert "architecture" not in (report.get("methods") or {})
    assert "gptq rounding and bias correction stay off" not in err  # the failed attempt's notes are dropped
    code = cli.main(["compress", str(tmp_path), "-o", str(tmp_path / "o.vcwc"), "--allocation", "sensitivity"])
    assert code != 0 and "forward pass of T5Model failed" in capsys.readouterr().err
    assert not (tmp_path / "o.vcwc").exists()


def test_an_older_folder_with_pytorch_model_bin(bert_folder, capsys):
    from safetensors.torch import load_file

    torch.save(load_file(bert_folder / "model.safetensors"), bert_folder / "pytorch_model.bin")
    (bert_folder / "model.safetensors").unlink()
    output = bert_folder / "out.vcwc"
    args = ["compress", str(bert_folder), "-o", str(output), "--recipe", "smallest", "--step-qp=-20", "--json"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["methods"]["architecture"] == {"name": "BertModel"}
    (bert_folder / "pytorch_model.bin").unlink()
    assert cli.main([*args, "--force"]) == 1
    assert "needs model.safetensors.index.json, model.safetensors or pytorch_model.bin" in capsys.readouterr().err
