from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcwc.eval.datasets import DatasetError, balanced_subset, load_dataset, to_tensor
from vcwc.models.registry import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, get_architecture


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_npz_loads_images_labels_and_class_names(tmp_path):
    x = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    path = write_npz(tmp_path / "set.npz", x=x, y=np.array([0, 1, 1, 0], dtype=np.int32), classes=np.array(["a", "b"]))
    dataset = load_dataset(path)
    assert np.array_equal(dataset.images, x)
    assert dataset.labels.dtype == np.int64 and dataset.labels.tolist() == [0, 1, 1, 0]
    assert dataset.class_names == ("a", "b")
    assert dataset.source == str(path) and len(dataset) == 4


def test_npz_grayscale_gets_a_channel_axis(tmp_path):
    path = write_npz(tmp_path / "gray.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.zeros(3, np.int64))
    assert load_dataset(path).images.shape == (3, 8, 8, 1)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.zeros(2, np.int64)}, "3 images but y has 2 labels"),
        ({"x": np.zeros((3, 4, 4, 3), np.uint8)}, "missing array"),
        ({"x": np.zeros((3, 4, 4, 3), np.float32), "y": np.zeros(3, np.int64)}, "must be uint8"),
        (
            {"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, 2]), "classes": np.array(["a", "b"])},
            "label 2 out of range for 2 classes",
        ),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, -1])}, "negative label"),
    ],
)
def test_inconsistent_npz_names_the_file(tmp_path, arrays, message):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_missing_or_unreadable_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="garbage.npz: not a readable .npz"):
        load_dataset(garbage)


def make_image_folder(root: Path, size=(6, 5), per_class=(2, 3)) -> Path:
    rng = np.random.default_rng(0)
    for name, count in zip(("cat", "ant"), per_class):
        for i in range(count):
            write_png(root / name / f"{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    (root / "ant" / "notes.txt").write_text("not an image, ignored")
    return root


def test_image_folder_loads_with_sorted_class_names(tmp_path):
    root = make_image_folder(tmp_path / "images")
    dataset = load_dataset(root)
    assert dataset.class_names == ("ant", "cat")
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1]
    assert dataset.images.shape == (5, 6, 5, 3) and dataset.images.dtype == np.uint8
    first = np.asarray(Image.open(root / "ant" / "0.png"))
    assert np.array_equal(dataset.images[0], first)


def test_grayscale_image_folder_stays_one_channel_and_mixed_becomes_rgb(tmp_path):
    write_png(tmp_path / "gray" / "a" / "0.png", np.full((4, 4), 7, np.uint8))
    write_png(tmp_path / "gray" / "b" / "0.png", np.full((4, 4), 9, np.uint8))
    assert load_dataset(tmp_path / "gray").images.shape == (2, 4, 4, 1)
    write_png(tmp_path / "gray" / "b" / "1.png", np.zeros((4, 4, 3), np.uint8))
    images = load_dataset(tmp_path / "gray").images
    assert images.shape == (3, 4, 4, 3) and (images[0] == 7).all()


def test_corrupted_image_names_the_file(tmp_path):
    root = make_image_folder(tmp_path / "images")
    broken = root / "cat" / "1.png"
    broken.write_bytes(broken.read_bytes()[:20])
    with pytest.raises(DatasetError, match="cannot read image") as error:
        load_dataset(root)
    assert str(broken) in str(error.value)


def test_empty_class_folder_and_mixed_sizes_are_named(tmp_path):
    root = make_image_folder(tmp_path / "images")
    (root / "dog").mkdir()
    with pytest.raises(DatasetError, match="dog: class folder holds no images"):
        load_dataset(root)
    (root / "dog").rmdir()
    write_png(root / "cat" / "9.png", np.zeros((7, 7, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"9.png: image is 7x7 but .*0.png is 5x6"):
        load_dataset(root)


def test_limit_takes_a_balanced_deterministic_subset_in_original_order():
    labels = np.repeat(np.arange(10), 100)
    np.random.default_rng(1).shuffle(labels)
    chosen = balanced_subset(labels, 95, seed=0)
    counts = np.bincount(labels[chosen], minlength=10)
    assert counts.sum() == 95 and counts.max() - counts.min() <= 1
    assert np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, balanced_subset(labels, 95, seed=0))
    assert not np.array_equal(chosen, balanced_subset(labels, 95, seed=1))
    assert not np.array_equal(chosen, np.arange(95))


def test_limit_gives_small_classes_everything_and_shares_the_rest():
    labels = np.array([0] * 3 + [1] * 50 + [2] * 50)
    counts = np.bincount(labels[balanced_subset(labels, 40)], minlength=3)
    assert counts.tolist() in ([3, 19, 18], [3, 18, 19])
    assert len(balanced_subset(labels, 500)) == len(labels)
    with pytest.raises(DatasetError):
        balanced_subset(labels, 0)


def test_load_dataset_applies_limit(tmp_path):
    x = np.arange(30, dtype=np.uint8).reshape(30, 1, 1, 1)
    path = write_npz(tmp_path / "set.npz", x=x, y=np.arange(30) % 3)
    dataset = load_dataset(path, limit=7, seed=3)
    assert len(dataset) == 7 and dataset.images.shape == (7, 1, 1, 1)
    assert np.array_equal(dataset.labels, dataset.images[:, 0, 0, 0] % 3)
    assert np.bincount(dataset.labels).max() - np.bincount(dataset.labels).min() <= 1


def test_to_tensor_scales_and_normalizes_cifar_images():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1] = 255
    x = to_tensor(images, get_architecture("cifar_resnet20").preprocess)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected_white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[1, :, 5, 5], expected_white)
    assert torch.allclose(x[0, :, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))


def test_to_tensor_resizes_shorter_side_and_center_crops_for_imagenet():
    images = np.random.default_rng(0).integers(0, 256, (1, 300, 400, 3), dtype=np.uint8)
    x = to_tensor(images, get_architecture("resnet18").preprocess)
    assert x.shape == (1, 3, 224, 224)
    flat = np.full((1, 300, 400, 3), 128, np.uint8)
    y = to_tensor(flat, Preprocessing((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize=256, center_crop=224))
    assert torch.allclose(y, torch.full_like(y, 128 / 255))


def test_to_tensor_keeps_grayscale_and_rejects_channel_mismatch():
    gray = np.zeros((2, 8, 8, 1), np.uint8)
    assert to_tensor(gray, get_architecture("digits_resnet").preprocess).shape == (2, 1, 8, 8)
    with pytest.raises(DatasetError, match="1 channel"):
        to_tensor(gray, get_architecture("cifar_resnet20").preprocess)
