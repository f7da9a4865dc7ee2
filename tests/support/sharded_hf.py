"""Hugging Face folders with sharded checkpoints, as ``save_pretrained(max_shard_size=...)``
writes them, and the same model saved whole, for comparing the two.

transformers 5 writes only safetensors shards; the ``.bin`` flavour (``pytorch_model.bin.index.json``
+ ``pytorch_model-0000N-of-0000M.bin``, what older transformers wrote) is made from them with
``torch.save`` of each shard's tensors, the index rewritten to name the new files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, BertModel

from tests.support.hf_models import LABELS, minilm_folder

SHARD_SIZE = "1MB"  # the tiny BERT below holds ~4.4 MB of weights: several shards


def tiny_bert(task: str) -> torch.nn.Module:
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
    if task == "sequence-classification":
        return BertForSequenceClassification(config).eval()
    config.architectures = ["BertModel"]
    return BertModel(config).eval()


def save(model: torch.nn.Module, target: Path, kind: str) -> Path:
    """``kind``: "whole" (one model.safetensors), "safetensors" or "bin" shards. Tokenizer
    files from MiniLM's folder go beside."""
    if kind == "whole":
        model.save_pretrained(str(target), max_shard_size="1GB")  # type: ignore[attr-defined]
    else:
        model.save_pretrained(str(target), max_shard_size=SHARD_SIZE)  # type: ignore[attr-defined]
    if kind == "bin":
        _to_bin_shards(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(minilm_folder() / name, target / name)
    return target


def _to_bin_shards(folder: Path) -> None:
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    renamed = {}
    for shard in sorted(set(index["weight_map"].values())):
        new = shard.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        torch.save(load_file(str(folder / shard)), folder / new)
        (folder / shard).unlink()
        renamed[shard] = new
    index["weight_map"] = {k: renamed[v] for k, v in index["weight_map"].items()}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    index_path.unlink()


def shards(folder: Path) -> list[str]:
    """The shard files of a sharded folder, sorted."""
    [index] = [p for p in folder.glob("*.index.json")]
    return sorted(set(json.loads(index.read_text())["weight_map"].values()))
