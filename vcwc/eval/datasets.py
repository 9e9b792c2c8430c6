"""Evaluation images: loading from .npz or class folders, balanced subsets, and model input tensors."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.registry import Preprocessing

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


class DatasetError(InputError):
    """An evaluation data set cannot be read or is inconsistent; the message names the file at fault."""


@dataclass
class Dataset:
    images: np.ndarray  # uint8, N x H x W x C
    labels: np.ndarray  # int64, N
    source: str
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def is_image_data(path: str | os.PathLike) -> bool:
    """Labelled images: a class-folder tree or a .npz (anything else an evaluation takes is a text)."""
    return Path(path).is_dir() or Path(path).suffix == ".npz"


def load_dataset(path: str | os.PathLike, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load labelled uint8 images from a ``.npz`` (``x``, ``y``, optional ``classes``) or a class-folder tree.

    ``limit`` keeps a class-balanced subset of that many images, chosen with ``seed``, in original order.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    dataset = _load_folder(path) if path.is_dir() else _load_npz(path)
    if limit is not None:
        keep = balanced_subset(dataset.labels, limit, seed)
        dataset = Dataset(dataset.images[keep], dataset.labels[keep], dataset.source, dataset.class_names)
    return dataset


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .npz file ({error})") from error
    missing = [name for name in ("x", "y") if name not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(arrays) or 'none'}")
    images, labels = arrays["x"], arrays["y"]
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: x must be uint8 pixels, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise DatasetError(f"{path}: x must be N x H x W x C (or N x H x W), got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: y must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{path}: x has {len(images)} images but y has {len(labels)} labels")
    class_names = tuple(str(name) for name in arrays["classes"]) if "classes" in arrays else None
    labels = labels.astype(np.int64)
    _check_label_range(path, labels, len(class_names) if class_names else None)
    return Dataset(images, labels, str(path), class_names)


def _check_label_range(path: Path, labels: np.ndarray, num_classes: int | None) -> None:
    if len(labels) == 0:
        return
    if labels.min() < 0:
        raise DatasetError(f"{path}: negative label {labels.min()}")
    if num_classes is not None and labels.max() >= num_classes:
        raise DatasetError(f"{path}: label {labels.max()} out of range for {num_classes} classes")


def _load_folder(path: Path) -> Dataset:
    class_dirs = sorted(entry for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{path}: expected one subfolder per class, found none")
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    first_file: Path | None = None
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{class_dir}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for file in files:
            image = _read_image(file)
            if first_file is None:
                first_file = file
            elif image.shape[:2] != pixels[0].shape[:2]:
                raise DatasetError(
                    f"{file}: image is {_size(image)} but {first_file} is {_size(pixels[0])}; "
                    "all images must share one size, resize them first"
                )
            pixels.append(image)
            labels.append(label)
    # Mixed grayscale and colour folders become colour, as a viewer would show them.
    if any(image.ndim == 3 for image in pixels):
        pixels = [np.repeat(image[..., np.newaxis], 3, axis=2) if image.ndim == 2 else image for image in pixels]
    images = np.stack(pixels)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    return Dataset(images, np.asarray(labels, dtype=np.int64), str(path), tuple(d.name for d in class_dirs))


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _read_image(file: Path) -> np.ndarray:
    # Imported here: pillow is only needed for image folders, not for .npz files.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            mode = "L" if image.mode in _GRAYSCALE_MODES else "RGB"
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        # Truncated files raise OSError, some malformed headers SyntaxError.
        raise DatasetError(f"{file}: cannot read image ({error})") from error


def balanced_subset(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of ``limit`` images with per-class counts as equal as possible, sorted in original order.

    Every class gets ``level`` images (or all it has, if fewer); the few left over go one each to
    classes chosen at random among those with images to spare. Deterministic for a given seed.
    """
    if limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Highest level whose capped total fits; the total grows with the level, so search it.
    low, high = 0, int(counts.max())
    while low < high:
        middle = (low + high + 1) // 2
        if np.minimum(counts, middle).sum() <= limit:
            low = middle
        else:
            high = middle - 1
    take = np.minimum(counts, low)
    spare = np.flatnonzero(counts > low)
    extra = limit - int(take.sum())
    take[rng.choice(spare, size=extra, replace=False)] += 1
    chosen = [rng.choice(np.flatnonzero(labels == cls), size=int(n), replace=False) for cls, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def to_tensor(images: np.ndarray, preprocess: Preprocessing) -> torch.Tensor:
    """uint8 N x H x W x C images -> normalized float32 N x C x H' x W' model input."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DatasetError(f"expected uint8 N x H x W x C images, got {images.dtype} {images.shape}")
    channels = images.shape[3]
    if len(preprocess.mean) not in (1, channels):
        raise DatasetError(f"images have {channels} channel(s) but the model expects {len(preprocess.mean)}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() * preprocess.scale
    if preprocess.resize is not None:
        x = _resize_shorter_side(x, preprocess.resize)
    if preprocess.center_crop is not None:
        x = _center_crop(x, preprocess.center_crop)
    mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


def _resize_shorter_side(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    # Same rounding as torchvision's Resize(int): the longer side is truncated.
    if height <= width:
        new_size = (size, int(size * width / height))
    else:
        new_size = (int(size * height / width), size)
    if new_size == (height, width):
        return x
    return F.interpolate(x, size=new_size, mode="bilinear", align_corners=False, antialias=True)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise DatasetError(f"cannot center-crop {size}x{size} from {width}x{height} images")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return x[..., top : top + size, left : left + size]
