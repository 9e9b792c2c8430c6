"""Architectures for scripts/check_breadth.py's models, as `--arch scripts.breadth_models:NAME` takes them
from the repository root. Parameter names are those of the checkpoints; this module imports only torch."""

from __future__ import annotations

import torch
from torch import nn


class SpeakerEncoder(nn.Module):
    """Resemblyzer's speaker encoder: 40 mel channels through a 3-layer LSTM of 256, a linear layer of 256
    with ReLU, L2-normalized (resemblyzer/voice_encoder.py; the similarity scalars serve only training)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embedding = torch.relu(self.linear(hidden[-1]))
        return embedding / torch.norm(embedding, dim=1, keepdim=True).clamp_min(1e-12)


def speaker_encoder() -> nn.Module:
    return SpeakerEncoder()
