"""`vcwc eval` on text: a language model's perplexity and next-token agreement, a text encoder's sentence
embeddings against the original's; the architecture and tokenizer come from the Hugging Face folder of the
model or of the reference."""

import json
from pathlib import Path

import pytest
import torch

from vcwc import cli


def evaluate(capsys, *args) -> dict:
    code = cli.main(["eval", *map(str, args), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def compressed(capsys, folder: Path, step_qp: int) -> Path:
    output = folder.parent / f"{folder.name}{step_qp}.vcwc"
    code = cli.main(
        ["compress", str(folder / "model.safetensors"), "-o", str(output), "--recipe", "smallest"]
        + [f"--step-qp={step_qp}", "--arch", "none"]
    )
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return output


def test_a_language_model_is_scored_by_perplexity_against_the_original(llama_folder, text_file, capsys):
    original = llama_folder / "model.safetensors"
    itself = evaluate(capsys, original, "--data", text_file, "--reference", original)
    assert itself["task"] == "language_model" and itself["arch"] == "LlamaForCausalLM"
    # The window follows the config's 64 positions; the text holds more than 16 of them.
    assert itself["samples"] == 16 and itself["tokens"] == 16 * 64
    assert itself["perplexity_change"] == 0.0 and itself["next_token_agreement"] == 100.0
    coarse = evaluate(
        capsys, compressed(capsys, llama_folder, -12), "--data", text_file, "--reference", original, "--limit", "4"
    )
    assert coarse["samples"] == 4 and coarse["perplexity"] != coarse["reference_perplexity"]
    assert coarse["perplexity_change"] != 0.0 and coarse["next_token_agreement"] < 100.0


def test_a_text_encoder_is_compared_by_its_sentence_embeddings(bert_folder, text_file, capsys):
    original = bert_folder / "model.safetensors"
    itself = evaluate(capsys, original, "--data", text_file, "--reference", original, "--limit", "40")
    assert itself["task"] == "text_encoder" and itself["samples"] == 40
    assert itself["mean_cosine"] == pytest.approx(1.0) and itself["perplexity"] is None
    fine, coarse = (
        evaluate(capsys, compressed(capsys, bert_folder, qp), "--data", text_file, "--reference", original)
        for qp in (-28, -20)
    )
    assert 1.0 > fine["mean_cosine"] > coarse["mean_cosine"] and coarse["min_cosine"] <= coarse["mean_cosine"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--reference", "{model}", "--limit", "0"], "--limit must be at least 1"),
        ([], "give --reference"),
        (["--tokenizer", "{tmp}/none.json"], "no such tokenizer file"),
    ],
)
def test_text_evaluation_errors_are_one_line(bert_folder, text_file, tmp_path, capsys, arguments, message):
    model = bert_folder / "model.safetensors"
    arguments = [a.format(model=model, tmp=tmp_path) for a in arguments]
    assert cli.main(["eval", str(model), "--data", str(text_file), *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_text_without_an_architecture_or_its_folder(tmp_path, text_file, capsys):
    from safetensors.torch import save_file

    model = tmp_path / "alone" / "model.safetensors"
    model.parent.mkdir()
    save_file({"linear.weight": torch.ones(4, 4)}, model)
    assert cli.main(["eval", str(model), "--data", str(text_file)]) == 1
    assert "needs the model's architecture: --arch" in capsys.readouterr().err
    assert cli.main(["eval", str(model), "--data", str(tmp_path)]) == 1
    assert "image evaluation needs the model's architecture" in capsys.readouterr().err


def test_a_model_that_does_not_take_token_ids(bert_folder, text_file, capsys):
    model = Path(__file__).resolve().parents[1] / "models" / "digits_resnet.safetensors"
    arguments = ["--arch", "digits_resnet", "--data", str(text_file), "--tokenizer", str(bert_folder)]
    assert cli.main(["eval", str(model), *arguments]) == 1
    error = capsys.readouterr().err
    assert "failed on token ids" in error and len(error.strip().splitlines()) == 1


def test_a_plain_module_returning_hidden_states_is_an_encoder(bert_folder, text_file, tmp_path, monkeypatch, capsys):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "plain_encoder.py").write_text(
        "import transformers\n"
        "from torch import nn\n"
        f"CONFIG = transformers.BertConfig.from_pretrained({str(bert_folder)!r})\n"
        "class Plain(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.bert = transformers.BertModel(CONFIG)\n"
        "    def forward(self, input_ids, attention_mask=None):\n"
        "        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state\n"
        "def build():\n"
        "    return Plain()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from safetensors.torch import load_file, save_file

    plain_folder = tmp_path / "plain"
    plain_folder.mkdir()
    model = plain_folder / "model.safetensors"
    save_file({f"bert.{k}": v for k, v in load_file(bert_folder / "model.safetensors").items()}, model)
    # The same weights coded the same way (weight-only: names change nothing), measured through either module.
    arguments = ["--data", text_file, "--limit", "40"]
    plain = evaluate(
        capsys, compressed(capsys, plain_folder, -22), "--reference", model, *arguments,
        "--arch", "plain_encoder:build", "--tokenizer", bert_folder,
    )  # fmt: skip
    folder = evaluate(
        capsys, compressed(capsys, bert_folder, -22), "--reference", bert_folder / "model.safetensors", *arguments
    )
    assert transformers and plain["task"] == "text_encoder" and plain["samples"] == 40
    assert plain["mean_cosine"] < 1.0 and plain["mean_cosine"] == pytest.approx(folder["mean_cosine"], abs=1e-6)


def test_a_plain_module_returning_logits_is_a_language_model(llama_folder, text_file, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    (tmp_path / "plain_lm.py").write_text(
        "import transformers\n"
        "from torch import nn\n"
        f"CONFIG = transformers.LlamaConfig.from_pretrained({str(llama_folder)!r})\n"
        "class Plain(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lm = transformers.LlamaForCausalLM(CONFIG)\n"
        "        self.config = CONFIG  # the window follows its positions\n"
        "    def forward(self, input_ids):\n"
        "        return self.lm(input_ids).logits\n"
        "def build():\n"
        "    return Plain()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from safetensors.torch import load_file, save_file

    model = tmp_path / "plain_lm.safetensors"
    save_file({f"lm.{k}": v for k, v in load_file(llama_folder / "model.safetensors").items()}, model)
    plain = evaluate(
        capsys, model, "--data", text_file, "--arch", "plain_lm:build", "--tokenizer", llama_folder, "--limit", "4"
    )
    folder = evaluate(capsys, llama_folder / "model.safetensors", "--data", text_file, "--limit", "4")
    assert plain["task"] == "language_model" and plain["perplexity"] == pytest.approx(folder["perplexity"])
