"""Model definitions whose state-dict layouts match published checkpoints, and a name registry.

Parameter and buffer names are part of the contract: a checkpoint trained elsewhere must load with
``strict=True`` so that no tensor is silently left at its random initial value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Computed by scripts/train_default_model.py from its training split (pixels scaled to 0..255, then /255);
# the script checks these values and refuses to save a model trained with different ones.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3758,)


class UnknownArchitectureError(InputError):
    """The architecture name is not in the registry."""


class StateDictMismatchError(InputError):
    """A state dict does not fit the model: missing, unexpected or wrongly shaped entries."""


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
    build: Callable[[], nn.Module]
    num_classes: int
    preprocess: Preprocessing
    description: str
    input_shape: tuple[int, ...] = (3, 224, 224)  # one input image, channels first


# ImageNet ResNets (He et al. 2016), laid out like torchvision's resnetXX() ("v1.5": in Bottleneck the
# stride sits on the 3x3 convolution).


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], blocks_per_stage: list[int], num_classes: int = 1000
    ):
        super().__init__()
        self._in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, blocks_per_stage[0], stride=1)
        self.layer2 = self._make_stage(block, 128, blocks_per_stage[1], stride=2)
        self.layer3 = self._make_stage(block, 256, blocks_per_stage[2], stride=2)
        self.layer4 = self._make_stage(block, 512, blocks_per_stage[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        # Same initialisation as torchvision, so a freshly built model behaves like theirs.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_stage(self, block, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._in_planes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self._in_planes, planes, stride, downsample)]
        self._in_planes = planes * block.expansion
        layers += [block(self._in_planes, planes) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ImageNetResNet:
    return ImageNetResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 1000) -> ImageNetResNet:
    return ImageNetResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def resnet50(num_classes: int = 1000) -> ImageNetResNet:
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def resnet101(num_classes: int = 1000) -> ImageNetResNet:
    return ImageNetResNet(Bottleneck, [3, 4, 23, 3], num_classes)


def resnet152(num_classes: int = 1000) -> ImageNetResNet:
    return ImageNetResNet(Bottleneck, [3, 8, 36, 3], num_classes)


# CIFAR ResNets as in github.com/akamaster/pytorch_resnet_cifar10.


class BatchNormWithoutCounter(nn.BatchNorm2d):
    """BatchNorm2d without the ``num_batches_tracked`` buffer.

    The akamaster checkpoints have no such entry. The counter is only read when ``momentum`` is None,
    which it never is here, so dropping it changes nothing but the state-dict layout: the shipped files
    and state dicts saved from these models both load strictly.
    """

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.register_buffer("num_batches_tracked", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Skip _NormBase's hook: for state dicts without version metadata it inserts a
        # num_batches_tracked entry, which strict loading would then reject as unexpected.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)


class CifarBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = BatchNormWithoutCounter(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = BatchNormWithoutCounter(planes)
        # "Option A": a parameter-free shortcut, so the layout has no shortcut tensors.
        self._pad_channels = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self._pad_channels:
            return x
        pad = self._pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self._in_planes = 16
        self.conv1 = _conv3x3(3, 16)
        self.bn1 = BatchNormWithoutCounter(16)
        self.layer1 = self._make_stage(16, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(32, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(64, blocks_per_stage, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def _make_stage(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(CifarBasicBlock(self._in_planes, planes, block_stride))
            self._in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class DigitsResNet(nn.Module):
    """A small ResNet for 8x8 grayscale digits.

    It stays at 8x8 resolution throughout; ``fc1`` (1024 -> 64, 65,536 weights) gives the codecs
    one fully-connected matrix large enough to fill a 256x256 frame.
    """

    def __init__(self, channels: int = 16, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.conv1 = _conv3x3(1, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(BasicBlock(channels, channels), BasicBlock(channels, channels))
        self.fc1 = nn.Linear(channels * 8 * 8, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.fc1(out.flatten(1)))
        return self.fc2(out)


_IMAGENET_PREPROCESS = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, resize=256, center_crop=224)
# The akamaster models were trained with the ImageNet mean/std, not CIFAR-10's own statistics.
_CIFAR_PREPROCESS = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)
_DIGITS_PREPROCESS = Preprocessing(DIGITS_MEAN, DIGITS_STD)


def _registry() -> dict[str, ArchitectureSpec]:
    specs = [
        ArchitectureSpec(name, build, 1000, _IMAGENET_PREPROCESS, f"ImageNet {label} (torchvision layout)")
        for name, build, label in [
            ("resnet18", resnet18, "ResNet-18"),
            ("resnet34", resnet34, "ResNet-34"),
            ("resnet50", resnet50, "ResNet-50"),
            ("resnet101", resnet101, "ResNet-101"),
            ("resnet152", resnet152, "ResNet-152"),
        ]
    ]
    for depth in (20, 32, 44, 56, 110):
        specs.append(
            ArchitectureSpec(
                f"cifar_resnet{depth}",
                lambda depth=depth: CifarResNet(depth),
                10,
                _CIFAR_PREPROCESS,
                f"CIFAR-10 ResNet-{depth} (akamaster/pytorch_resnet_cifar10 layout)",
                (3, 32, 32),
            )
        )
    specs.append(
        ArchitectureSpec(
            "digits_resnet",
            DigitsResNet,
            10,
            _DIGITS_PREPROCESS,
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
        known = ", ".join(ARCHITECTURES)
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {known}") from None


def _list_keys(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise StateDictMismatchError naming every missing, unexpected or wrongly shaped key."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list_keys(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_list_keys(wrong_shape)}")
    if problems:
        raise StateDictMismatchError(f"state dict does not fit {type(model).__name__}: " + "; ".join(problems))


def build_model(name_or_module: str | nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Build a registered architecture (or take a module), load ``state_dict`` strictly, set eval mode."""
    if isinstance(name_or_module, str):
        model = get_architecture(name_or_module).build()
    else:
        model = name_or_module
    if state_dict is not None:
        check_state_dict(model, state_dict)
        model.load_state_dict(dict(state_dict), strict=True)
    return model.eval()
