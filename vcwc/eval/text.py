"""How well a (reconstructed) text model does on real text, against the original.

A language model (its output has `logits`, or is a tensor of one value per token of its vocabulary) is scored by perplexity over windows of the text, and against the
original by the change in perplexity and how often both predict the same next token. A text encoder (its
output is hidden states) has no task of its own here: its sentence embeddings, mean-pooled over each line's
tokens and normalized as sentence-transformers makes them, are compared with the original's by cosine.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import InputError, first_line
from ..models.build import Architecture, resolve
from ..models.huggingface import folder_architecture
from ..quant.inputs import input_embedding

TOKENIZER_FILE = "tokenizer.json"
# Defaults of `vcwc eval` on a text: 16 windows of 512 tokens for a language model; the first 512 lines, at
# most 128 tokens each, for an encoder (what the generality suite measures).
WINDOWS, WINDOW_TOKENS, WINDOW_BATCH = 16, 512, 2
LINES, LINE_TOKENS, LINE_BATCH = 512, 128, 64


class TextEvaluationError(InputError):
    """The text, tokenizer or model of a text evaluation do not fit together."""


@dataclass
class TextResult:
    task: str  # "language_model" or "text_encoder"
    samples: int  # windows of tokens, or lines
    tokens: int
    perplexity: float | None = None
    reference_perplexity: float | None = None
    perplexity_change: float | None = None  # percent
    next_token_agreement: float | None = None  # percent of positions whose top prediction is the reference's
    mean_cosine: float | None = None  # of the sentence embeddings to the reference's
    min_cosine: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def text_architecture(arch: str | None, shapes: dict[str, tuple[int, ...]], folders: list[str]) -> Architecture:
    """The architecture given, else the class the config.json of the first of `folders` (a model file's
    folder, or a folder) names that takes these tensors."""
    if arch:
        return resolve(arch)
    notes: list[str] = []
    for folder in folders:
        found = folder_architecture(folder, shapes, notes)
        if found is not None:
            return found
    why = f" ({notes[-1]})" if notes else ""
    raise TextEvaluationError(
        "a text evaluation needs the model's architecture: --arch MODULE:CALLABLE, or a model or --reference "
        f"in a Hugging Face folder with its config.json{why}"
    )


def tokenizer_beside(folders: list[str]) -> Path:
    """The tokenizer.json in the first of `folders` (a model file's folder, or a folder) that has one."""
    for folder in map(Path, folders):
        candidate = (folder if folder.is_dir() else folder.parent) / TOKENIZER_FILE
        if candidate.is_file():
            return candidate
    raise TextEvaluationError("no tokenizer.json beside the model or the reference: give --tokenizer PATH")


def load_tokenizer(path: str | Path):
    """A `tokenizers` tokenizer from a tokenizer.json, or from the one in a folder."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TextEvaluationError(f"{file}: no such tokenizer file (give --tokenizer PATH/tokenizer.json)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TextEvaluationError("text evaluation needs the tokenizers package (pip install 'vcwc[hf]')") from None
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the library's own errors for a file it cannot parse
        raise TextEvaluationError(f"{file}: not a tokenizer.json the tokenizers package reads ({exc})") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def read_text(path: str | Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TextEvaluationError(f"{path}: not a readable UTF-8 text file ({type(exc).__name__})") from None
    if not text.strip():
        raise TextEvaluationError(f"{path}: the text is empty")
    return text


def token_windows(tokenizer, text: str, source: str, count: int = WINDOWS, length: int = WINDOW_TOKENS):
    """The text's first `count` whole windows of `length` token ids (no special tokens), (windows, length)."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    windows = min(count, len(ids) // length)
    if windows == 0:
        raise TextEvaluationError(f"{source}: {len(ids)} tokens, fewer than one window of {length}")
    return torch.tensor(ids[: windows * length]).view(windows, length)


def text_lines(text: str, count: int = LINES) -> list[str]:
    """The text's first `count` lines that are not blank."""
    return [line.strip() for line in text.splitlines() if line.strip()][:count]


def encode_lines(tokenizer, lines: list[str], pad_id: int, max_length: int = LINE_TOKENS) -> dict[str, torch.Tensor]:
    """Token ids (with the tokenizer's special tokens, cut at max_length) and attention masks, padded with
    `pad_id` to the longest line, as a tokenizer pads a batch."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=pad_id)
    try:
        encoded = tokenizer.encode_batch(lines)
    finally:
        tokenizer.no_truncation()
        tokenizer.no_padding()
    return {
        "input_ids": torch.tensor([item.ids for item in encoded]),
        "attention_mask": torch.tensor([item.attention_mask for item in encoded]),
    }


def is_language_model(model: nn.Module, token_id: int = 0) -> bool:
    """Whether the model's output is next-token logits: `logits`, or a tensor with one value per token of its
    input embedding's vocabulary (else it is taken for an encoder of hidden states)."""
    with torch.inference_mode():
        output = _forward(model, torch.tensor([[token_id, token_id]]))
    if hasattr(output, "logits"):
        return True
    embedding = input_embedding(model)
    return isinstance(output, torch.Tensor) and embedding is not None and output.shape[-1] == embedding.num_embeddings


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _forward(model: nn.Module, *args, **kwargs):
    """The model's output; its failure (the user's model) as a one-line error."""
    try:
        return model(*args, **kwargs)
    except Exception as exc:
        raise TextEvaluationError(
            f"{type(model).__name__} failed on token ids ({type(exc).__name__}: {first_line(exc, 200)})"
        ) from None


@torch.inference_mode()
def next_token_scores(
    model: nn.Module, windows: torch.Tensor, batch_size: int = WINDOW_BATCH, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's next-token losses (nats) and top predictions, flattened over windows and positions."""
    losses, predictions = [], []
    for start in tqdm(range(0, len(windows), batch_size), desc="scoring", file=sys.stderr, disable=not progress):
        ids = windows[start : start + batch_size]
        logits = _logits(_forward(model, ids)).float()[:, :-1]
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"))
        predictions.append(logits.argmax(-1).reshape(-1))
    return torch.cat(losses), torch.cat(predictions)


@torch.inference_mode()
def sentence_embeddings(
    model: nn.Module, inputs: dict[str, torch.Tensor], batch_size: int = LINE_BATCH, progress: bool = False
) -> torch.Tensor:
    """Mean pooling of the last hidden states over each line's tokens, L2-normalized (sentence-transformers')."""
    embeddings = []
    ids_all, mask_all = inputs["input_ids"], inputs["attention_mask"]
    for start in tqdm(range(0, len(ids_all), batch_size), desc="embedding", file=sys.stderr, disable=not progress):
        mask = mask_all[start : start + batch_size]
        keep = int(mask.sum(1).max())
        ids, mask = ids_all[start : start + batch_size, :keep], mask[:, :keep]
        output = _forward(model, input_ids=ids, attention_mask=mask)
        hidden = _hidden_states(output).float()
        weights = mask.unsqueeze(-1).float()
        embeddings.append(F.normalize((hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9), dim=1))
    return torch.cat(embeddings)


def _hidden_states(output) -> torch.Tensor:
    """(batch, tokens, features) from a model's output: `last_hidden_state`, the tensor itself, or the first
    item of a tuple, as Hugging Face and plain modules return them."""
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    hidden = output if isinstance(output, torch.Tensor) else output[0]
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise TextEvaluationError(
            f"the model's output is not hidden states of shape (batch, tokens, features): got "
            f"{tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else type(hidden).__name__}"
        )
    return hidden


class TextReference:
    """The text prepared for one model, with the original model's outputs on it computed once: each
    reconstruction is then scored against them (`score`), as a sweep scores many.

    A language model's text is windows of token ids; an encoder's, its first lines, tokenized and padded.
    """

    def __init__(
        self, original: nn.Module, text: str, tokenizer, source: str, limit: int | None = None, progress: bool = False
    ):
        self.source = source
        if is_language_model(original):
            self.task = "language_model"
            self.inputs = token_windows(tokenizer, text, source, limit or WINDOWS, _window_length(original))
            self.samples, self.tokens = len(self.inputs), self.inputs.numel()
        else:
            self.task = "text_encoder"
            pad_id = _config_value(original, "pad_token_id", 0)
            self.inputs = encode_lines(tokenizer, text_lines(text, limit or LINES), pad_id)
            self.samples, self.tokens = len(self.inputs["input_ids"]), int(self.inputs["attention_mask"].sum())
        self.outputs = self._outputs(original, progress)

    def _outputs(self, model: nn.Module, progress: bool):
        if self.task == "language_model":
            return next_token_scores(model, self.inputs, progress=progress)
        return sentence_embeddings(model, self.inputs, progress=progress)

    def original_perplexity(self) -> TextResult:
        """The original language model's own perplexity on the windows."""
        losses, _ = self.outputs
        return TextResult(self.task, self.samples, self.tokens, perplexity=math.exp(losses.mean().item()))

    def score(self, model: nn.Module, progress: bool = False) -> TextResult:
        """`model` (the reconstruction) against the original's outputs."""
        if self.task == "language_model":
            (losses, predictions), (reference_losses, reference_predictions) = (
                self._outputs(model, progress),
                self.outputs,
            )
            perplexity, reference = math.exp(losses.mean().item()), math.exp(reference_losses.mean().item())
            return TextResult(
                self.task,
                self.samples,
                self.tokens,
                perplexity=perplexity,
                reference_perplexity=reference,
                perplexity_change=100.0 * (perplexity / reference - 1),
                next_token_agreement=100.0 * (predictions == reference_predictions).double().mean().item(),
            )
        cosine = (self._outputs(model, progress) * self.outputs).sum(1)
        return TextResult(
            self.task, self.samples, self.tokens, mean_cosine=cosine.mean().item(), min_cosine=cosine.min().item()
        )


def evaluate_text(
    model: nn.Module,
    text: str,
    tokenizer,
    source: str,
    *,
    reference: nn.Module | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> TextResult:
    """Perplexity (and agreement with the reference) of a language model, or the cosine of a text encoder's
    sentence embeddings to the reference's, on `text`; `limit` windows or lines instead of the defaults."""
    if reference is None:
        if not is_language_model(model):
            raise TextEvaluationError(
                "a text encoder is measured against the original model: give --reference (the uncompressed model)"
            )
        return TextReference(model, text, tokenizer, source, limit, progress).original_perplexity()
    return TextReference(reference, text, tokenizer, source, limit, progress).score(model, progress)


def _window_length(model: nn.Module) -> int:
    """WINDOW_TOKENS, or fewer where the model's config allows fewer positions."""
    return max(2, min(WINDOW_TOKENS, _config_value(model, "max_position_embeddings", WINDOW_TOKENS)))


def _config_value(model: nn.Module, name: str, default: int) -> int:
    """A Hugging Face model's config field, where it is a usable integer."""
    value = getattr(getattr(model, "config", None), name, None)
    return value if isinstance(value, int) and value >= 0 else default
