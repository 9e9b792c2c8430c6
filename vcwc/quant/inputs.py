"""What drives a model for the data-free methods' statistics: noise, random tokens, or real inputs.

- `GaussianNoise`: images of fixed Gaussian noise, run with every BatchNorm normalizing by the batch
  (vcwc.quant.noise), for models whose input is a float tensor.
- `RandomTokens`: token ids drawn uniformly from the vocabulary of the model's input embedding, for models
  whose input is token ids (each token's embedding is real; only the sequence is random).
- `CalibrationInputs`: real model inputs from a file (`.npz`, `.pt` or `.safetensors`): one array is the
  positional input, several named arrays (e.g. `input_ids` and `attention_mask`) are keyword arguments.

`driver_for` picks one: real inputs where given, else random tokens where the model starts with an
embedding, else Gaussian noise of the input shape.
"""

from __future__ import annotations

import math
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import InputError, first_line

SEED = 0  # the inputs are fixed: the same model gives the same statistics
# Input elements per batch: 32 images of 3x64x64. Larger inputs get smaller batches rather than smaller
# images, so deep feature maps keep the size the model was built for.
BATCH_ELEMENTS = 32 * 3 * 64 * 64
MAX_BATCH = 32
MIN_BATCH = 2
BATCHES = 2
# 16 sequences of random tokens, two at a time: a language model's activations (kept for the sensitivity
# pass's backward) scale with the tokens in flight, and on billion-weight models they would rival the weights.
TOKEN_BATCH = 2
TOKEN_BATCHES = 8
DEFAULT_TOKENS = 128  # sequence length for token models when no input shape is given
ATTENTION_MASK = "attention_mask"  # the keyword Hugging Face models take it by: 1 for a token, 0 for padding


@dataclass(frozen=True)
class Batch:
    args: tuple
    kwargs: dict


class GaussianNoise:
    kind = "gaussian_noise"
    remedy = "give one input's shape with --input-shape, or real inputs with --calibration"
    normalize_batchnorm = True  # noise carries no statistics of its own: BatchNorms use the batch's

    def __init__(self, input_shape: tuple[int, ...], batches: int = BATCHES):
        self.input_shape = tuple(input_shape)
        self.batches = batches
        self.batch_size = max(MIN_BATCH, min(MAX_BATCH, BATCH_ELEMENTS // max(1, math.prod(self.input_shape))))

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(self.batches):
            yield Batch((torch.randn(self.batch_size, *self.input_shape, generator=generator),), {})

    def describe(self) -> dict:
        return {"kind": self.kind, "shape": [self.batch_size, *self.input_shape], "batches": self.batches}


class RandomTokens:
    kind = "random_tokens"
    remedy = "give the sequence length the model takes with --input-shape, or real inputs with --calibration"
    normalize_batchnorm = False

    def __init__(self, vocabulary: int, input_shape: tuple[int, ...] | None = None, batches: int = TOKEN_BATCHES):
        self.vocabulary = vocabulary
        self.input_shape = tuple(input_shape or (DEFAULT_TOKENS,))
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(self.batches):
            yield Batch((torch.randint(0, self.vocabulary, (TOKEN_BATCH, *self.input_shape), generator=generator),), {})

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "shape": [TOKEN_BATCH, *self.input_shape],
            "batches": self.batches,
            "vocabulary": self.vocabulary,
        }


class CalibrationInputs:
    kind = "calibration_inputs"
    remedy = "check the --calibration file's arrays against the model's forward"
    normalize_batchnorm = False  # real inputs: BatchNorms keep their running statistics

    def __init__(self, arrays: dict[str, np.ndarray], source: str, batch_size: int = 8, limit: int | None = None):
        lengths = {name: len(array) for name, array in arrays.items()}
        if not arrays or len(set(lengths.values())) != 1:
            raise InputError(f"{source}: calibration arrays must share their first dimension, got {lengths}")
        self.arrays, self.source, self.batch_size = arrays, source, batch_size
        self.count = min(next(iter(lengths.values())), limit or 1 << 62)

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.count, self.batch_size):
            end = min(start + self.batch_size, self.count)
            tensors = {
                name: torch.from_numpy(np.ascontiguousarray(array[start:end])) for name, array in self.arrays.items()
            }
            if list(tensors) == [""]:
                yield Batch((tensors[""],), {})
            else:
                yield Batch((), tensors)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "file": self.source,
            "inputs": self.count,
            "arrays": {name or "(positional)": list(a.shape[1:]) for name, a in self.arrays.items()},
        }


class WithProgress:
    """A driver whose batches count on a progress bar on stderr: on a large model one pass of them takes
    minutes, before any encoding starts."""

    def __init__(self, driver, description: str):
        self.driver, self.description = driver, description

    def __getattr__(self, name: str):
        return getattr(self.driver, name)

    def __len__(self) -> int:
        return len(self.driver)

    def __iter__(self) -> Iterator[Batch]:
        # Shown on a terminal only, as the encoding's bar: logs and pipes get no carriage-return lines.
        bar = tqdm(
            self.driver,
            total=len(self.driver),
            desc=self.description,
            unit="batch",
            leave=False,
            file=sys.stderr,
            disable=None,
        )
        yield from bar


def load_calibration(path: str | Path, limit: int | None = None) -> CalibrationInputs:
    """Real model inputs from .npz, .pt or .safetensors: one array (positional) or named arrays (keywords)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            arrays = load_file(str(path))
        elif path.suffix in (".pt", ".pth"):
            loaded = torch.load(path, weights_only=True, map_location="cpu")
            loaded = {"": loaded} if isinstance(loaded, torch.Tensor) else loaded
            if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
                raise InputError(f"{path}: expected a tensor or a dict of tensors")
            arrays = {name: tensor.numpy() for name, tensor in loaded.items()}
        else:
            raise InputError(f"calibration file {str(path)!r}: use .npz, .pt or .safetensors")
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable calibration file ({type(exc).__name__}: {exc})") from None
    if len(arrays) == 1:
        arrays = {"": next(iter(arrays.values()))}
    return CalibrationInputs(arrays, str(path), limit=limit)


def input_embedding(module: nn.Module) -> nn.Embedding | None:
    """The embedding that takes the model's input, if the model starts with one (token ids in)."""
    getter = getattr(module, "get_input_embeddings", None)
    if callable(getter):
        try:
            embedding = getter()
        except (NotImplementedError, AttributeError):
            embedding = None
        if isinstance(embedding, nn.Embedding):
            return embedding
    first = next(
        (
            layer
            for layer in module.modules()
            if isinstance(layer, (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        ),
        None,
    )
    return first if isinstance(first, nn.Embedding) else None


def driver_for(module: nn.Module, input_shape: tuple[int, ...] | None, calibration: CalibrationInputs | None = None):
    """Real inputs where given, random tokens for a model that starts with an embedding, else Gaussian noise."""
    if calibration is not None:
        return calibration
    embedding = input_embedding(module)
    if embedding is not None:
        return RandomTokens(embedding.num_embeddings, input_shape)
    if input_shape is None:
        raise InputError(
            f"the noise pass through {type(module).__name__} needs one input's shape (input_shape, "
            f"e.g. (3, 224, 224)), or real inputs (calibration)"
        )
    return GaussianNoise(input_shape)


def attended_positions(kwargs: dict) -> torch.Tensor | None:
    """The token positions a batch's 0/1 `attention_mask` (batch, tokens) keeps, where it drops any: padding
    is not the model's data, and a calibration file of short texts padded to one length is mostly padding,
    so it counts in no statistic. None where there is no such mask, or it keeps every position or none."""
    mask = kwargs.get(ATTENTION_MASK)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or not bool(((mask == 0) | (mask == 1)).all()):
        return None
    keep = mask != 0
    return None if bool(keep.all()) or not bool(keep.any()) else keep


def kept_positions(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The rows of a (batch, tokens, ...) tensor at the kept positions, (kept, ...); `x` itself where its
    leading dimensions are not the mask's (a layer that does not work per token)."""
    if keep is None or x.dim() < 3 or tuple(x.shape[:2]) != tuple(keep.shape):
        return x
    return x[keep]


def pass_failed(module: nn.Module, driver, batch, exc: Exception, what: str = "forward pass") -> InputError:
    """The one-line error for the user's model failing on the inputs that drive a method."""
    shapes = [tuple(t.shape) for t in (*batch.args, *batch.kwargs.values()) if isinstance(t, torch.Tensor)]
    detail = first_line(exc, 200)
    return InputError(
        f"the {what} of {type(module).__name__} failed on {driver.kind.replace('_', ' ')} "
        f"of shape {', '.join(map(str, shapes))} ({type(exc).__name__}: {detail}); {driver.remedy}"
    )
