"""Train the bundled default model: ``digits_resnet`` on scikit-learn's 8x8 digits (no download).

Writes models/digits_resnet.safetensors and models/digits_test.npz (the held-out quarter of the
digits, stratified, random_state=0). Run from the repository root with the package importable:

    python scripts/train_default_model.py

Deterministic for a given machine and torch version (fixed seeds, two threads).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from vcwc.eval.classification import evaluate
from vcwc.eval.datasets import Dataset, to_tensor
from vcwc.files import atomic_write
from vcwc.models.build import build_model, resolve
from vcwc.models.registry import get_architecture

ARCH = "digits_resnet"
SEED = 0
TEST_FRACTION = 0.25
EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 5e-4
MIN_ACCURACY = 97.0


def digits_as_uint8() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Digits as uint8 N x 8 x 8 x 1 images: the 0..16 intensities scaled to 0..255."""
    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    return images, digits.target.astype(np.int64), tuple(str(name) for name in digits.target_names)


def check_registry_normalisation(train_images: np.ndarray) -> None:
    """The registry hard-codes mean/std; fail loudly if they no longer match the training split."""
    pixels = train_images.astype(np.float64) / 255
    mean, std = round(pixels.mean(), 4), round(pixels.std(), 4)
    print(f"training split: mean {mean:.4f}, std {std:.4f}")
    preprocess = get_architecture(ARCH).preprocess
    if (mean,) != preprocess.mean or (std,) != preprocess.std:
        raise SystemExit(
            f"vcwc/models/registry.py has DIGITS_MEAN={preprocess.mean}, DIGITS_STD={preprocess.std}; "
            f"set them to ({mean},) and ({std},)"
        )


def shift_randomly(x: torch.Tensor, background: float, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to one pixel each way, filling with background: cheap augmentation for 8x8 digits."""
    padded = F.pad(x, (1, 1, 1, 1), value=background)
    offsets = torch.randint(0, 3, (len(x), 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + 8, dx : dx + 8] for i, (dy, dx) in enumerate(offsets.tolist())])


def train(train_set: Dataset) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(SEED)
    spec = get_architecture(ARCH)
    model = resolve(ARCH).build()
    inputs = to_tensor(train_set.images, spec.preprocess)
    background = -spec.preprocess.mean[0] / spec.preprocess.std[0]  # a black pixel after normalisation
    labels = torch.from_numpy(train_set.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(labels) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        total_loss = 0.0
        for start in range(0, len(labels), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            loss = F.cross_entropy(model(shift_randomly(inputs[batch], background, generator)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: training loss {total_loss / len(labels):.4f}")
    return model.eval()


def save_test_set(path: Path, test_set: Dataset) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as file:
            np.savez_compressed(file, x=test_set.images, y=test_set.labels, classes=np.array(test_set.class_names))

    atomic_write(path, write, force=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    args = parser.parse_args(argv)

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    images, labels, class_names = digits_as_uint8()
    train_index, test_index = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SEED
    )
    # Sorted so the saved test set keeps sklearn's original order.
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    train_set = Dataset(images[train_index], labels[train_index], "sklearn digits (train)", class_names)
    test_set = Dataset(images[test_index], labels[test_index], "sklearn digits (held out)", class_names)
    print(f"{len(train_set)} training images, {len(test_set)} held out")
    check_registry_normalisation(train_set.images)

    started = time.perf_counter()
    model = train(train_set)
    print(f"training took {time.perf_counter() - started:.1f} s")

    result = evaluate(model, test_set, get_architecture(ARCH).preprocess, progress=False)
    print(f"held-out top-1: {result.top1:.2f}% ({len(test_set)} images)")
    if result.top1 < MIN_ACCURACY:
        raise SystemExit(f"held-out top-1 {result.top1:.2f}% is below the {MIN_ACCURACY}% target; not saving")

    state_dict = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    build_model(ARCH, state_dict)  # the saved layout must load back strictly
    metadata = {
        "arch": ARCH,
        "accuracy": f"{result.top1:.2f}",
        "test_set": "digits_test.npz",
        "split": f"sklearn load_digits, train_test_split(test_size={TEST_FRACTION}, stratify=y, random_state={SEED})",
        "epochs": str(EPOCHS),
        "seed": str(SEED),
        "torch": torch.__version__,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.output_dir / f"{ARCH}.safetensors"
    test_path = args.output_dir / "digits_test.npz"
    atomic_write(model_path, lambda temporary: save_file(state_dict, temporary, metadata=metadata), force=True)
    save_test_set(test_path, test_set)
    print(f"wrote {model_path} and {test_path}")


if __name__ == "__main__":
    main()
