"""Small ResNets: the CIFAR-10 ResNets of akamaster/pytorch_resnet_cifar10 and the bundled digits model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .imagenet import BasicBlock, conv3x3

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
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = BatchNormWithoutCounter(planes)
        self.conv2 = conv3x3(planes, planes)
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
        self.conv1 = conv3x3(3, 16)
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
        self.conv1 = conv3x3(1, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(BasicBlock(channels, channels), BasicBlock(channels, channels))
        self.fc1 = nn.Linear(channels * 8 * 8, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.fc1(out.flatten(1)))
        return self.fc2(out)
