"""How well a (reconstructed) image classifier does: top-1/top-5, and agreement and KL against the original."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import InputError
from ..models.registry import Preprocessing
from .datasets import Dataset, to_tensor


class EvaluationError(InputError):
    """The inputs to an evaluation do not fit together."""


@dataclass
class EvalResult:
    top1: float  # percent
    top5: float  # percent; top-k with k = min(5, number of classes)
    n_images: int
    agreement: float | None = None  # percent of top-1 predictions equal to the reference's
    mean_kl: float | None = None  # mean KL(reference || model) of the softmax outputs, in nats
    logits: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, float | int | None]:
        result = asdict(self)
        del result["logits"]
        return result


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocessing,
    *,
    batch_size: int = 256,
    reference: nn.Module | None = None,
    reference_logits: torch.Tensor | None = None,
    progress: bool = True,
) -> EvalResult:
    """Top-1/top-5 accuracy of ``model`` on ``dataset``, and agreement/KL with a reference when given.

    Pass the original model as ``reference``, or its logits from an earlier run (``EvalResult.logits``)
    as ``reference_logits`` to avoid recomputing them. Models run in eval mode and are put back in the
    mode they were in.
    """
    if reference is not None and reference_logits is not None:
        raise EvaluationError("give either reference or reference_logits, not both")
    n_images = len(dataset.labels)
    if n_images == 0:
        raise EvaluationError(f"{dataset.source}: no images to evaluate")
    if reference_logits is not None and reference_logits.shape[0] != n_images:
        raise EvaluationError(
            f"reference_logits hold {reference_logits.shape[0]} rows but {dataset.source} has {n_images} images"
        )

    logits, computed_reference = [], []
    with _eval_mode(model, reference), torch.inference_mode():
        with tqdm(total=n_images, unit="img", desc="evaluate", file=sys.stderr, disable=not progress) as bar:
            for start in range(0, n_images, batch_size):
                x = to_tensor(dataset.images[start : start + batch_size], preprocess)
                logits.append(model(x).float())
                if reference is not None:
                    computed_reference.append(reference(x).float())
                bar.update(len(x))
    model_logits = torch.cat(logits)
    if reference is not None:
        reference_logits = torch.cat(computed_reference)

    labels = torch.from_numpy(dataset.labels)
    k = min(5, model_logits.shape[1])
    top_k = model_logits.topk(k, dim=1).indices
    result = EvalResult(
        top1=_percent(top_k[:, 0] == labels),
        top5=_percent((top_k == labels[:, None]).any(dim=1)),
        n_images=n_images,
        logits=model_logits,
    )
    if reference_logits is not None:
        reference_logits = reference_logits.float()
        if reference_logits.shape != model_logits.shape:
            raise EvaluationError(
                f"reference logits have shape {tuple(reference_logits.shape)}, model's {tuple(model_logits.shape)}"
            )
        result.agreement = _percent(reference_logits.argmax(1) == model_logits.argmax(1))
        result.mean_kl = mean_kl_divergence(reference_logits, model_logits)
    return result


@contextmanager
def _eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode for the block (batch statistics would make results depend on batching), then restore."""
    present = [module for module in modules if module is not None]
    was_training = [module.training for module in present]
    try:
        for module in present:
            module.eval()
        yield
    finally:
        for module, training in zip(present, was_training):
            module.train(training)


def _percent(hits: torch.Tensor) -> float:
    return 100.0 * hits.double().mean().item()


def mean_kl_divergence(reference_logits: torch.Tensor, model_logits: torch.Tensor) -> float:
    """Mean over images of KL(softmax(reference) || softmax(model)), in nats."""
    log_p = F.log_softmax(reference_logits.double(), dim=1)
    log_q = F.log_softmax(model_logits.double(), dim=1)
    per_image = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    # Rounding can leave tiny negative values for near-identical outputs; KL itself is never negative.
    return max(per_image.mean().item(), 0.0)
