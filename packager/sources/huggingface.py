"""Hugging Face model folders: ``config.json`` + weights (+ tokenizer files) as a source.

A local folder, as ``save_pretrained`` or a sentence-transformers model writes it, becomes a
verified ONNX or TorchScript model with dynamic batch and sequence axes:

- ``feature-extraction`` (a base model, e.g. BERT): ``input_ids``, ``attention_mask`` ->
  ``embedding``, pooled as the folder says (``1_Pooling/config.json``: mean or CLS tokens) and
  L2-normalised when its ``modules.json`` lists a Normalize module;
- ``sequence-classification`` (``*ForSequenceClassification``): -> ``logits``; the labels of
  ``config.json``'s ``id2label`` are recorded (and used by the text pipeline).

Weights are read by transformers from the folder only (``local_files_only``: no hub access);
``.bin`` checkpoints load with ``weights_only``. Sharded checkpoints (an index naming the shard
of each tensor, as ``save_pretrained(max_shard_size=...)`` writes) load the same way, once every
shard the index names is found in the folder. :mod:`packager.planners.text` plans the
text-in ensemble (tokenizer step -> model -> post-processing) on top of this source.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import SourceError
from packager.sources import LoadedModel, SourceOptions, register
from packager.sources.progress import slow_step

TASKS = ("feature-extraction", "sequence-classification")  # exported by this source
GENERATION_TASK = "text-generation"  # a causal LM served by packager.generate (Optimum's name)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# save_pretrained(max_shard_size=...) writes shards and an index naming the file of each tensor.
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
EXAMPLE_TEXTS = ("A short sentence.", "Another sentence, somewhat longer than the first one is.")


@dataclass(frozen=True)
class FolderInfo:
    """What a Hugging Face folder says about serving it."""

    folder: Path
    model_type: str
    task: str
    pooling: str  # "mean" | "cls" (feature extraction)
    normalize: bool
    labels: tuple[str, ...]  # id2label in id order (classification)
    max_length: int  # tokens: the model's limit, and the folder's own if lower
    tokenizer: Path | None  # tokenizer.json


def is_hf_folder(ref: Any) -> bool:
    if not isinstance(ref, (str, Path)) or not Path(ref).is_dir():
        return False
    folder = Path(ref)
    if not (folder / "config.json").is_file():
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "model_type" in config


def describe(folder: Path, task: str | None = None) -> FolderInfo:
    """Read the folder's JSON files (no model is loaded)."""
    config = _json(folder / "config.json")
    weights = [w for w in WEIGHT_FILES if (folder / w).is_file()]
    indexes = [i for i in SHARD_INDEXES if (folder / i).is_file()]
    if not weights and not indexes:
        raise SourceError(
            f"{folder} has a config.json but no weights ({' or '.join(WEIGHT_FILES)}, or the "
            f"shards of {' or '.join(SHARD_INDEXES)}); save the model with save_pretrained() "
            "into that folder"
        )
    if not weights:
        _check_shards(folder, indexes[0])
    architectures = [str(a) for a in config.get("architectures") or ()]
    guessed = (
        "sequence-classification"
        if any(a.endswith("ForSequenceClassification") for a in architectures)
        else "feature-extraction"
    )
    task = task or guessed
    if task not in TASKS:
        raise SourceError(f"task {task!r} is not supported; choose from: {', '.join(TASKS)}")
    pooling_cfg = _json(folder / "1_Pooling" / "config.json", missing={})
    pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") else "mean"
    modules = _json(folder / "modules.json", missing=[])
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if id2label else ()
    limits = [int(config.get("max_position_embeddings") or 512)]
    for name, key in (
        ("tokenizer_config.json", "model_max_length"),
        ("sentence_bert_config.json", "max_seq_length"),
    ):
        value = _json(folder / name, missing={}).get(key)
        if isinstance(value, int) and 0 < value < 10**6:  # HF writes 1e30 for "no limit"
            limits.append(value)
    tokenizer = folder / "tokenizer.json"
    return FolderInfo(
        folder,
        str(config["model_type"]),
        task,
        pooling,
        normalize,
        labels,
        min(limits),
        tokenizer if tokenizer.is_file() else None,
    )


def _check_shards(folder: Path, index: str) -> None:
    """Every shard a sharded checkpoint's index names is in the folder (transformers would
    otherwise reach for the hub, or fail with a traceback)."""
    weight_map = _json(folder / index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise SourceError(f"{folder / index} has no weight_map; save the model again")
    shards = sorted({str(f) for f in weight_map.values()})
    missing = [s for s in shards if "/" in s or "\\" in s or not (folder / s).is_file()]
    if missing:
        raise SourceError(
            f"{folder} is a sharded checkpoint ({index}) but shard(s) {', '.join(missing)} are "
            f"missing; copy all {len(shards)} shard files into the folder"
        )


def _json(path: Path, missing: Any = None) -> Any:
    if not path.is_file():
        if missing is not None:
            return missing
        raise SourceError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SourceError(f"{path} is not valid JSON: {exc}") from exc


def example_inputs(info: FolderInfo, texts: tuple[str, ...] = EXAMPLE_TEXTS) -> dict[str, Any]:
    """Tokenized example sentences of different lengths, padded: real ids and a real mask."""
    if info.tokenizer is None:
        raise SourceError(
            f"{info.folder} has no tokenizer.json; give --example-input FILE.npz with "
            "input_ids and attention_mask"
        )
    tok = load_tokenizer(info.tokenizer, info.max_length)
    encoded = tok.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


def load_tokenizer(path: Path, max_length: int) -> Any:
    """The folder's fast tokenizer, padding to the longest text and truncating to the limit."""
    from tokenizers import Tokenizer  # the huggingface extra (a missing one names it)

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length)
    if tok.padding is None:
        tok.enable_padding()
    return tok


def hf_module(info: FolderInfo) -> Any:
    """The model as transformers builds it from the folder, wrapped to name its outputs."""
    import torch

    from packager.sources import hf_modules

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    with slow_step(f"loading the Hugging Face model in {info.folder.name} (transformers)"):
        import transformers

        transformers.utils.logging.disable_progress_bar()  # build prints its own progress
        transformers.utils.logging.set_verbosity_error()

        auto = (
            transformers.AutoModelForSequenceClassification
            if info.task == "sequence-classification"
            else transformers.AutoModel
        )
        try:
            model = auto.from_pretrained(str(info.folder), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds for unreadable folders
            raise SourceError(
                f"transformers cannot build the model in {info.folder}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
            ) from exc
    model.eval()
    wrapped: torch.nn.Module
    if info.task == "sequence-classification":
        wrapped = hf_modules.Classifier(model)
    else:
        wrapped = hf_modules.Embedder(model, info.pooling, info.normalize)
    return wrapped.eval()


class HuggingFaceSource:
    name = "huggingface"
    description = (
        "Hugging Face model folder (config.json + weights), exported to ONNX or TorchScript"
    )

    def sniff(self, ref: Any) -> bool:
        return is_hf_folder(ref)

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        from packager.sources.pytorch.export import export_module
        from packager.sources.verify import DEFAULT_ATOL, DEFAULT_RTOL

        info = describe(Path(ref), options.task)
        module = hf_module(info)
        examples = options.example or example_inputs(info)
        fmt = options.format
        return export_module(
            module,
            format="onnx" if fmt in (None, "", "auto", self.name) else str(fmt),
            example_inputs=examples,
            opset=options.opset,
            verify=options.verify,
            atol=DEFAULT_ATOL if options.atol is None else float(options.atol),
            rtol=DEFAULT_RTOL if options.rtol is None else float(options.rtol),
            record={
                "source": {"format": self.name, "folder": info.folder.name},
                "huggingface": {
                    "model_type": info.model_type,
                    "task": info.task,
                    "pooling": info.pooling if info.task == "feature-extraction" else None,
                    "normalize": info.normalize,
                    "labels": list(info.labels),
                    "max_length": info.max_length,
                },
            },
        )


register("huggingface", HuggingFaceSource)
