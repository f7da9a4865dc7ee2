"""Tiny PyTorch models for the export tests (seconds to export, not minutes)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, d_in: int = 16, hidden: int = 32, d_out: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Conv + BatchNorm + Dropout: eval mode must use running stats and no dropout."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(8, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


class TextClassifier(nn.Module):
    """Token ids (int64) + attention mask (bool or int; 1/True = real token), any sequence length."""

    def __init__(self, vocab: int = 50, d_model: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 2, 32, dropout=0.1, batch_first=True)
        # Nested tensors (the fast path for padded batches) cannot be exported; plain tensors can.
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask != 0  # works for bool and int masks, and scripts
        h = self.encoder(self.embed(input_ids), src_key_padding_mask=~keep)
        w = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(pooled)


class Scaled(nn.Module):
    """A per-sample scalar input (like a diffusion timestep): ``t`` is ``[batch]``, rank 0 per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * t[:, None]


class TwoInTwoOut(nn.Module):
    """Two inputs (one fp16-free float, one int64) and a dict of two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 4)
        self.b = nn.Embedding(10, 4)

    def forward(self, features: torch.Tensor, category: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.a(features) + self.b(category).sum(1)
        return {"logits": h, "probs": torch.softmax(h, dim=-1)}


class NumpyInForward(nn.Module):
    """Leaves torch for numpy inside forward(): nothing an exporter can capture faithfully."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.tanh(x.detach().numpy()) * x.shape[0])


class BranchOnValues(nn.Module):
    """Python control flow on tensor values: torch.export refuses it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


class Noisy(nn.Module):
    """Random noise in eval mode: two runs on the same input differ."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + torch.rand(x.shape[0], 2)


def text_inputs(
    batch: int = 2, length: int = 7, mask_dtype: type = np.bool_
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=(batch, length)).astype(np.int64)
    mask: np.ndarray = np.ones((batch, length), dtype=mask_dtype)
    mask[0, length - 2 :] = 0  # padding at the end of the first sequence
    return {"input_ids": ids, "attention_mask": mask}
