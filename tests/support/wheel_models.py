"""Faithful copies of PyTorch architectures whose weights ship in PyPI wheels (issue 29).

The wheels are installed with ``--no-deps`` (scripts/setup.sh), so their own modules cannot be
imported here (facenet-pytorch needs torchvision, resemblyzer librosa and webrtcvad): these
classes repeat their layers and forward() line for line, and the weights are the wheels' files.

- :class:`PNet` / :class:`ONet`: facenet-pytorch 2.6.0's MTCNN face detector cascade
  (``facenet_pytorch/models/mtcnn.py``). PNet is fully convolutional; ONet pools with
  ``ceil_mode=True`` and ends in a Linear layer sized for 48x48 crops.
- :class:`VoiceEncoder`: resemblyzer 0.1.4's LSTM speaker encoder
  (``resemblyzer/voice_encoder.py``); its ``pretrained.pt`` keeps the weights under
  ``model_state`` beside training-only parameters (``similarity_weight``/``similarity_bias``).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch
from torch import nn


def wheel_file(dist: str, path: str) -> Path:
    found = Path(str(importlib.metadata.distribution(dist).locate_file(path)))
    assert found.is_file(), f"{path} missing from the {dist} wheel (scripts/setup.sh installs it)"
    return found


def mtcnn_weights(net: str) -> Path:
    return wheel_file("facenet-pytorch", f"facenet_pytorch/data/{net}.pt")


def resemblyzer_weights() -> Path:
    return wheel_file("resemblyzer", "resemblyzer/pretrained.pt")


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        a = self.softmax4_1(self.conv4_1(x))
        b = self.conv4_2(x)
        return b, a


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        a = self.softmax6_1(self.dense6_1(x))
        b = self.dense6_2(x)
        c = self.dense6_3(x)
        return b, c, a


class VoiceEncoder(nn.Module):
    """mels [batch, frames, 40] -> L2-normalised 256-d speaker embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embeds_raw = self.relu(self.linear(hidden[-1]))
        return embeds_raw / torch.norm(embeds_raw, dim=1, keepdim=True)
