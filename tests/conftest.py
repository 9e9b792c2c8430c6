import os
from pathlib import Path

import pytest
import torch

from vcwc.bench.experiment import ModelUnderTest
from vcwc.eval.datasets import load_dataset
from vcwc.io import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "VCWC_DATA"


def shared_data_dir() -> Path:
    """The shared data: $VCWC_DATA, else ../shared/data beside the repository (as on the team's machines and CI)."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory ($VCWC_DATA, else <repo root>/../shared/data); skips when absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} not found (set VCWC_DATA to point at it)")
    return path


@pytest.fixture(scope="session")
def cifar10_dir(data_dir: Path) -> Path:
    path = data_dir / "cifar10"
    if not path.is_dir():
        pytest.skip(f"{path} not found: the CIFAR-10 models and images are not available")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The repository's models/ folder with the bundled digits model and its test set."""
    return REPO_ROOT / "models"


@pytest.fixture(scope="session")
def digits_subject(models_dir):
    """The bundled digits model scored on its held-out images: a real model with BatchNorm, in seconds."""
    loaded = load_model(models_dir / "digits_resnet.safetensors")
    return ModelUnderTest("digits", loaded, "digits_resnet", load_dataset(models_dir / "digits_test.npz"))


@pytest.fixture(autouse=True, scope="session")
def probe_cache_dir(tmp_path_factory) -> Path:
    """Encoder probe results go to a fresh folder: no test reads or writes the user's ~/.cache/vcwc."""
    path = tmp_path_factory.mktemp("vcwc-cache")
    previous = os.environ.get("VCWC_CACHE_DIR")
    os.environ["VCWC_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("VCWC_CACHE_DIR", None)
    else:
        os.environ["VCWC_CACHE_DIR"] = previous


# Tiny Hugging Face text models with a word-level tokenizer, and a text of their words: real transformers
# (random weights) that compress, decompress and score in seconds.
WORDS = "the king is dead long live queen and of to my lord you not".split()
TEXT = "\n".join(" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6 + i % 5)) for i in range(300)) + "\n"


def save_tokenizer(folder: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    vocabulary = {word: index for index, word in enumerate(["[PAD]", "[UNK]", *WORDS])}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def folder_of(tmp_path, name: str, model) -> Path:
    folder = tmp_path / name
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return folder


@pytest.fixture
def llama_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=len(WORDS) + 2, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return folder_of(tmp_path, "llama", transformers.LlamaForCausalLM(config))


@pytest.fixture
def bert_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    return folder_of(tmp_path, "bert", transformers.BertModel(config))
