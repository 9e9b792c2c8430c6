"""The generality suite's real models: how to build each, read its weights, and measure it on real data.

Prepared by scripts/prepare_models.py into the model cache ($VCWC_MODELS, else ~/.cache/vcwc/models):

| model | what | measure (real data, ../shared/data or $VCWC_DATA) |
|---|---|---|
| mobilenet_v2 | ImageNet CNN with depthwise convolutions (torchvision IMAGENET1K_V1) | top-1 and agreement on imagenet-sample (750 images) |
| all-mpnet-base-v2 | MPNet sentence embedder (transformer, LayerNorm, no BatchNorm) | mean cosine of sentence embeddings to the original's, 512 lines of tinyshakespeare |
| smollm2-135m | SmolLM2-135M-Instruct causal LM (from a Q4_1 gguf: its weights sit on 4-bit grids) | perplexity on the first 8,192 tokens of tinyshakespeare, 16 windows of 512 |

The text models' callables (`mpnet`, `smollm2`) take no arguments and return the module, so they also
serve `vcwc compress --arch scripts.suite_models:mpnet` from the repository root. Needs `pip install -e
".[bench]"` (transformers, tokenizers). This module imports nothing of the scripts folder.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vcwc.eval.text import next_token_scores, sentence_embeddings
from vcwc.models.build import Architecture, build_model

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
MPNET_CONFIG = dict(
    vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=514,
    initializer_range=0.02, layer_norm_eps=1e-05, relative_attention_num_buckets=32, pad_token_id=1,
    bos_token_id=0, eos_token_id=2,
)  # fmt: skip
SMOL_CONFIG = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, head_dim=64, hidden_act="silu", max_position_embeddings=8192, initializer_range=0.02,
    rms_norm_eps=1e-05, rope_parameters={"rope_theta": 100000.0, "rope_type": "default"}, attention_bias=False,
    attention_dropout=0.0, mlp_bias=False, pretraining_tp=1, tie_word_embeddings=True, use_cache=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=2, unk_token_id=0,
)  # fmt: skip
MPNET_LINES, MPNET_MAX_LENGTH = 512, 128
SMOL_TOKENS, SMOL_WINDOW = 8192, 512
# Real inputs for `--calibration`, from text the measures never read: 64 lines after line 2,000 (the
# sentence embedder reads the first 512), padded to the longest as a tokenizer pads a batch; 16 sequences of
# 128 tokens from token 20,000 on (the perplexity reads the first 8,192).
CALIBRATION_LINES, CALIBRATION_FIRST_LINE = 64, 2000
CALIBRATION_SEQUENCES, CALIBRATION_TOKENS, CALIBRATION_FIRST_TOKEN = 16, 128, 20000
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def cache_dir() -> Path:
    return Path(os.environ.get("VCWC_MODELS") or "~/.cache/vcwc/models").expanduser()


def data_dir() -> Path:
    return Path(os.environ.get("VCWC_DATA") or ROOT.parent / "shared" / "data")


def mpnet() -> nn.Module:
    """transformers' MPNetModel with its pooler, as the checkpoint holds it (and as a user would write it:
    vcwc accepts the file's int64 `embeddings.position_ids`, a buffer transformers 5 keeps out of the state
    dict)."""
    from transformers import MPNetConfig, MPNetModel

    return MPNetModel(MPNetConfig(**MPNET_CONFIG), add_pooling_layer=True)


def smollm2() -> nn.Module:
    """transformers' LlamaForCausalLM with lm_head tied to the embedding (one Parameter), which the
    checkpoint stores once, as model.embed_tokens.weight."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**SMOL_CONFIG))


def mobilenet_v2() -> nn.Module:
    from vcwc.models.imagenet import MobileNetV2

    return MobileNetV2()


@functools.lru_cache(maxsize=1)
def shakespeare() -> str:
    raw = (data_dir() / "text" / "tinyshakespeare.txt").read_bytes()
    if hashlib.sha256(raw).hexdigest() != SHAKESPEARE_SHA256:
        raise ValueError("tinyshakespeare.txt is not the expected file (sha256 mismatch)")
    return raw.decode("utf-8")


@functools.lru_cache(maxsize=1)
def imagenet_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 224, 224) in labels.csv order, and their ILSVRC-1k labels."""
    from PIL import Image

    folder = data_dir() / "imagenet-sample"
    with open(folder / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    images = np.empty((len(rows), 224, 224, 3), np.uint8)
    for index, row in enumerate(rows):
        with Image.open(folder / row["file"]) as image:
            images[index] = np.asarray(image.convert("RGB"))  # already 224 center crops
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor([int(r["index"]) for r in rows])


@torch.inference_mode()
def measure_mobilenet(model: nn.Module, reference: dict | None = None) -> dict:
    images, labels = imagenet_sample()
    logits = []
    for start in range(0, len(images), 16):
        x = (images[start : start + 16].float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        logits.append(model(x.contiguous(memory_format=torch.channels_last)).float())
    logits = torch.cat(logits)
    top1 = 100.0 * (logits.argmax(1) == labels).double().mean().item()
    result = {"top1": top1, "logits": logits}
    if reference is not None:
        result["agreement"] = 100.0 * (logits.argmax(1) == reference["logits"].argmax(1)).double().mean().item()
    return result


@functools.lru_cache(maxsize=1)
def text_lines() -> list[str]:
    """The lines of tinyshakespeare that are not empty and not speaker tags ("Name:")."""
    lines = [line.strip() for line in shakespeare().splitlines()]
    return [line for line in lines if line and not line.endswith(":")]


def mpnet_tokens(lines: list[str]) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cache_dir() / "all-mpnet-base-v2")
    encoded = tokenizer(lines, padding=True, truncation=True, max_length=MPNET_MAX_LENGTH, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@functools.lru_cache(maxsize=1)
def mpnet_inputs() -> dict[str, torch.Tensor]:
    """The first 512 lines of the text, tokenized."""
    return mpnet_tokens(text_lines()[:MPNET_LINES])


def mpnet_calibration() -> dict[str, np.ndarray]:
    lines = text_lines()[CALIBRATION_FIRST_LINE : CALIBRATION_FIRST_LINE + CALIBRATION_LINES]
    return {name: tensor.numpy() for name, tensor in mpnet_tokens(lines).items()}


def measure_mpnet(model: nn.Module, reference: dict | None = None) -> dict:
    """Sentence embeddings as sentence-transformers makes them (mean pooling over the mask, L2 norm)."""
    result = {"embeddings": sentence_embeddings(model, mpnet_inputs())}
    if reference is not None:
        cosine = (result["embeddings"] * reference["embeddings"]).sum(1)
        result.update(mean_cosine=cosine.mean().item(), min_cosine=cosine.min().item())
    return result


@functools.lru_cache(maxsize=1)
def smollm2_tokens() -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m")
    ids = tokenizer(shakespeare(), add_special_tokens=False)["input_ids"][:SMOL_TOKENS]
    return torch.tensor(ids).view(-1, SMOL_WINDOW)


def smollm2_calibration() -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m")
    ids = tokenizer(shakespeare(), add_special_tokens=False)["input_ids"]
    count = CALIBRATION_SEQUENCES * CALIBRATION_TOKENS
    chosen = ids[CALIBRATION_FIRST_TOKEN : CALIBRATION_FIRST_TOKEN + count]
    return {"input_ids": np.array(chosen, dtype=np.int64).reshape(CALIBRATION_SEQUENCES, CALIBRATION_TOKENS)}


def measure_smollm2(model: nn.Module, reference: dict | None = None) -> dict:
    """Perplexity over 16 windows of 512 tokens (each scores its 511 next-token predictions)."""
    nll = next_token_scores(model, smollm2_tokens())[0].mean().item()
    result = {"perplexity": math.exp(nll), "nll": nll}
    if reference is not None:
        result["perplexity_change"] = 100.0 * (result["perplexity"] / reference["perplexity"] - 1)
    return result


@dataclass(frozen=True)
class SuiteModel:
    name: str
    arch: str  # as `vcwc compress --arch` takes it
    input_shape: tuple[int, ...] | None
    folder: str  # in the model cache
    build: Callable[[], nn.Module]
    measure: Callable[..., dict]
    quality: str  # the key of `measure`'s result that the bar applies to
    bar: Callable[[dict, dict], bool]  # does a result meet the bar, given the original's?
    bar_text: str
    calibration: Callable[[], dict[str, np.ndarray]] | None = None  # real inputs the measure never reads

    def calibration_file(self) -> Path:
        """The model's calibration inputs as an .npz for `vcwc compress --calibration`, in the model cache."""
        path = cache_dir() / "calibration" / f"{self.name}.npz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **self.calibration())
        return path

    def path(self) -> Path:
        folder = cache_dir() / self.folder
        single = folder / "model.safetensors"
        return single if single.is_file() else folder

    def load(self, state_dict: dict[str, torch.Tensor]) -> nn.Module:
        return build_model(Architecture(self.name, self.build), state_dict).float()


SUITE = {
    "mobilenet_v2": SuiteModel("mobilenet_v2", "mobilenet_v2", (3, 224, 224), "mobilenet_v2", mobilenet_v2,
                               measure_mobilenet, "top1", lambda r, ref: r["top1"] >= ref["top1"] - 1.0,
                               "top-1 within 1 point"),
    "all-mpnet-base-v2": SuiteModel("all-mpnet-base-v2", "scripts.suite_models:mpnet", (128,), "all-mpnet-base-v2",
                                    mpnet, measure_mpnet, "mean_cosine", lambda r, ref: r["mean_cosine"] >= 0.99,
                                    "mean cosine >= 0.99", mpnet_calibration),
    "smollm2-135m": SuiteModel("smollm2-135m", "scripts.suite_models:smollm2", (128,), "smollm2-135m", smollm2,
                               measure_smollm2, "perplexity", lambda r, ref: r["perplexity_change"] <= 2.0,
                               "perplexity within 2%", smollm2_calibration),
}  # fmt: skip


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file or sharded folder, as stored (bf16 stays bf16)."""
    from vcwc.io import load_model

    return load_model(path).state_dict()


def index_json(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())
