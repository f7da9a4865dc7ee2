"""The modules exported for Hugging Face folders: named outputs over a transformers model.

Kept apart from :mod:`packager.sources.huggingface` so that torch is imported only when a
folder is actually exported (the registry imports the source module eagerly).
"""

from __future__ import annotations

from typing import Any

import torch


class Embedder(torch.nn.Module):
    """``input_ids``, ``attention_mask`` -> ``embedding``: pooled (mean over real tokens, or
    the first token), optionally L2-normalised, as sentence-transformers computes it."""

    def __init__(self, model: Any, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return {"embedding": pooled}


class Classifier(torch.nn.Module):
    """``input_ids``, ``attention_mask`` -> ``logits``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
        return {"logits": self.model(input_ids=input_ids, attention_mask=attention_mask).logits}
