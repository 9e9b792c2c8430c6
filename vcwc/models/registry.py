"""The registered architectures, by name: how to build each, its input and its preprocessing.

Pure data (no torch): the command line lists these names without loading torch. Each builder is named
as "module:function" and imported only when a model is built (vcwc.models.build).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Computed by scripts/train_default_model.py from its training split (pixels scaled to 0..255, then /255);
# the script checks these values and refuses to save a model trained with different ones.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3758,)


NO_ARCHITECTURE = "none"  # compress weight-only, even where the model's folder says what it is


class UnknownArchitectureError(InputError):
    """The architecture name is not in the registry."""


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 images become model input: scale, optional resize and center crop, then normalize.

    ``resize`` is the length of the shorter side after resizing (aspect ratio kept), as in the
    usual ImageNet evaluation recipe "resize 256, center crop 224".
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255
    resize: int | None = None
    center_crop: int | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} channels but std has {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    builder: str  # "module:function", called with `arguments`
    num_classes: int
    preprocess: Preprocessing
    description: str
    input_shape: tuple[int, ...] = (3, 224, 224)  # one input image, channels first
    arguments: tuple = ()


IMAGENET_PREPROCESS = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, resize=256, center_crop=224)
# Images of an architecture the registry does not know (MODULE:CALLABLE): taken at their size, normalized
# with ImageNet's mean and spread, the convention of most pretrained image models.
DEFAULT_PREPROCESS = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)
# The akamaster models were trained with the ImageNet mean/std, not CIFAR-10's own statistics.
CIFAR_PREPROCESS = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)
DIGITS_PREPROCESS = Preprocessing(DIGITS_MEAN, DIGITS_STD)


def _registry() -> dict[str, ArchitectureSpec]:
    specs = [
        ArchitectureSpec(
            name, f"vcwc.models.imagenet:{name}", 1000, IMAGENET_PREPROCESS, f"ImageNet {label} (torchvision layout)"
        )
        for name, label in [
            ("resnet18", "ResNet-18"),
            ("resnet34", "ResNet-34"),
            ("resnet50", "ResNet-50"),
            ("resnet101", "ResNet-101"),
            ("resnet152", "ResNet-152"),
        ]
    ]
    specs.append(
        ArchitectureSpec(
            "mobilenet_v2",
            "vcwc.models.imagenet:MobileNetV2",
            1000,
            IMAGENET_PREPROCESS,
            "ImageNet MobileNetV2 with depthwise convolutions (torchvision layout)",
        )
    )
    specs += [
        ArchitectureSpec(
            f"cifar_resnet{depth}",
            "vcwc.models.cifar:CifarResNet",
            10,
            CIFAR_PREPROCESS,
            f"CIFAR-10 ResNet-{depth} (akamaster/pytorch_resnet_cifar10 layout)",
            (3, 32, 32),
            (depth,),
        )
        for depth in (20, 32, 44, 56, 110)
    ]
    specs.append(
        ArchitectureSpec(
            "digits_resnet",
            "vcwc.models.cifar:DigitsResNet",
            10,
            DIGITS_PREPROCESS,
            "small ResNet for scikit-learn's 8x8 digits (the bundled default model)",
            (1, 8, 8),
        )
    )
    return {spec.name: spec for spec in specs}


ARCHITECTURES: dict[str, ArchitectureSpec] = _registry()


def get_architecture(name: str) -> ArchitectureSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; registered: {', '.join(ARCHITECTURES)}, or MODULE:CALLABLE for any other"
        ) from None
