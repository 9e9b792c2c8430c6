"""How a model under test is scored against its original, by task.

An image classifier is scored on labelled images (top-1, top-5, agreement of predictions and KL against the
original's); a language model on windows of a text (perplexity, its change, next-token agreement); a text
encoder on a text's lines (cosine of its sentence embeddings to the original's). Each scoring computes the
original's outputs once, scores reconstructions against them, and gives the fields a sweep record holds.
What counts as close enough to the original, per task, is `BARS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..eval.classification import EvalResult, evaluate
from ..eval.datasets import Dataset
from ..eval.text import TextReference, TextResult
from ..models.registry import Preprocessing

IMAGE_CLASSIFICATION = "image_classification"
LANGUAGE_MODEL = "language_model"
TEXT_ENCODER = "text_encoder"


@dataclass(frozen=True)
class Bar:
    """A record is close enough to the original when its `field` is within `limit`, each way `higher` says."""

    field: str
    limit: float
    higher: bool  # True: at least `limit` (a cosine); False: at most `limit` (a loss)
    text: str

    def met(self, record: dict) -> bool:
        value = record.get(self.field)
        if value is None:
            return False
        return value >= self.limit - 1e-9 if self.higher else value <= self.limit + 1e-9


# Per task, the two bars of a sweep report (marks `a` and `b`), the stricter first.
BARS = {
    IMAGE_CLASSIFICATION: (
        Bar("top1_change", -0.5, True, "within 0.5 points of the original top-1"),
        Bar("top1_change", -1.0, True, "within 1 point of the original top-1"),
    ),
    LANGUAGE_MODEL: (
        Bar("perplexity_change", 1.0, False, "perplexity within 1% of the original's"),
        Bar("perplexity_change", 2.0, False, "perplexity within 2% of the original's"),
    ),
    TEXT_ENCODER: (
        Bar("mean_cosine", 0.995, True, "mean cosine to the original's embeddings >= 0.995"),
        Bar("mean_cosine", 0.99, True, "mean cosine to the original's embeddings >= 0.99"),
    ),
}


def task_of(record: dict) -> str:
    """A record's task; records written before text models could be swept are image classifiers'."""
    return record.get("task") or IMAGE_CLASSIFICATION


def agreement_of(record: dict) -> float | None:
    """How far a record's outputs agree with the original's, in percent, for --screen's knee: top-1
    predictions of images, next-token predictions of a language model, 100 x the mean embedding cosine of
    an encoder."""
    task = task_of(record)
    if task == LANGUAGE_MODEL:
        return record.get("next_token_agreement")
    if task == TEXT_ENCODER:
        return None if record.get("mean_cosine") is None else 100.0 * record["mean_cosine"]
    return record.get("agreement")


class ImageScoring:
    """Top-1, top-5, agreement and KL on labelled images, against the original's logits."""

    task = IMAGE_CLASSIFICATION

    def __init__(self, module: nn.Module, dataset: Dataset, preprocess: Preprocessing, progress: bool = False):
        self.dataset, self.preprocess, self.progress = dataset, preprocess, progress
        self.original = evaluate(module, dataset, preprocess, progress=progress)
        self.original.agreement, self.original.mean_kl = 100.0, 0.0  # the reference agrees with itself

    @property
    def context(self) -> str:
        """What a score depends on besides the weights and the architecture."""
        return f"{self.dataset.source}|{len(self.dataset)}|{self.original.top1!r}"

    def score(self, module: nn.Module) -> EvalResult:
        return evaluate(
            module, self.dataset, self.preprocess, progress=self.progress, reference_logits=self.original.logits
        )

    @staticmethod
    def result(stored: dict) -> EvalResult:
        return EvalResult(**stored)

    def fields(self, result: EvalResult) -> dict:
        return {
            "task": self.task,
            "top1": result.top1,
            "top5": result.top5,
            "top1_change": result.top1 - self.original.top1,
            "agreement": result.agreement,
            "mean_kl": result.mean_kl,
            "eval_images": result.n_images,
        }

    def original_fields(self) -> dict:
        return {"original_top1": self.original.top1, "original_top5": self.original.top5}


@dataclass
class TextData:
    """A text to score a text model on, the tokenizer that cuts it, and how many windows or lines to use."""

    text: str
    tokenizer: object  # a `tokenizers.Tokenizer`
    source: str
    limit: int | None = None


class TextScoring:
    """A language model's perplexity and next-token agreement, or a text encoder's embedding cosine, on a
    text, against the original's outputs (vcwc.eval.text)."""

    def __init__(self, module: nn.Module, data: TextData, progress: bool = False):
        self.progress = progress
        self.reference = TextReference(module, data.text, data.tokenizer, data.source, data.limit, progress)
        self.task = self.reference.task
        if self.task == LANGUAGE_MODEL:
            self.original = self.reference.original_perplexity()
            self.original.reference_perplexity = self.original.perplexity
            self.original.perplexity_change, self.original.next_token_agreement = 0.0, 100.0
        else:
            samples, tokens = self.reference.samples, self.reference.tokens
            self.original = TextResult(self.task, samples, tokens, mean_cosine=1.0, min_cosine=1.0)

    @property
    def context(self) -> str:
        reference = self.reference
        return (
            f"{reference.source}|{reference.task}|{reference.samples}|{reference.tokens}|{self.original.perplexity!r}"
        )

    def score(self, module: nn.Module) -> TextResult:
        return self.reference.score(module, self.progress)

    @staticmethod
    def result(stored: dict) -> TextResult:
        return TextResult(**stored)

    def fields(self, result: TextResult) -> dict:
        return {
            "task": self.task,
            "perplexity": result.perplexity,
            "perplexity_change": result.perplexity_change,
            "next_token_agreement": result.next_token_agreement,
            "mean_cosine": result.mean_cosine,
            "min_cosine": result.min_cosine,
            "eval_samples": result.samples,
            "eval_tokens": result.tokens,
        }

    def original_fields(self) -> dict:
        return {"original_perplexity": self.original.perplexity}
