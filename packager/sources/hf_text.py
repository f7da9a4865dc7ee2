"""The text-in deployment of a Hugging Face folder: one ensemble that takes sentences.

``build FOLDER --name NAME --text`` writes, in one atomic build (a deploy manifest, built by
:mod:`packager.manifest.builder`)::

    NAME            ensemble: TEXT (BYTES [1]) -> embedding, or LABEL + PROBS
    NAME_tokenizer  Python step: the folder's tokenizer.json (truncation to the model's limit)
    NAME_model      the exported model (packager.sources.huggingface)
    NAME_labels     Python step, classification only: softmax and config.json's id2label

so that ``Client.infer("NAME", ["a sentence", ...])`` returns embeddings or labels. The steps
are ``packager/sources/hf_steps.py``; the server's Python needs the ``tokenizers`` library.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from packager.errors import SourceError
from packager.sources.huggingface import describe

if TYPE_CHECKING:
    from packager.builder import BuildOptions
    from packager.manifest.builder import ManifestResult

STEPS_FILE = Path(__file__).with_name("hf_steps.py")


def _target_pin(dist: str) -> str:
    """``dist==version`` as the target image installs it (packager.releases): pinned, so an image
    rebuilt later tokenizes the same, and chosen for the image's Python, not ours."""
    from packager.releases import GENERATION_PACKAGES

    return next(r for r in GENERATION_PACKAGES if r.partition("==")[0] == dist)


def text_manifest(folder: Path, options: BuildOptions, work: Path) -> dict[str, Any]:
    """The deploy manifest of the text pipeline; its files are written into ``work``."""
    from packager.builder import DEFAULT_MAX_BATCH_SIZE  # one default for every build

    info = describe(folder, options.source.to_mapping().get("task"))
    if info.tokenizer is None:
        raise SourceError(f"{folder} has no tokenizer.json: a text pipeline needs the tokenizer")
    name = options.name
    mbs = options.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    batching = {"max_queue_delay_us": options.batching.max_queue_delay_us}
    shutil.copyfile(STEPS_FILE, work / "hf_steps.py")
    ids = [{"name": "input_ids", "dtype": "INT64", "dims": [-1]}]
    mask = [{"name": "attention_mask", "dtype": "INT64", "dims": [-1]}]
    model: dict[str, Any] = {
        "name": f"{name}_model",
        "source": str(folder),
        "format": options.format if options.format in ("onnx", "torchscript") else "auto",
        "backend": options.backend,
        "max_batch_size": mbs,
        "dynamic_batching": batching,
    }
    steps: list[dict[str, Any]] = [
        {
            "name": f"{name}_tokenizer",
            "file": str(work / "hf_steps.py"),
            "class": "Tokenize",
            "max_batch_size": mbs,
            "dynamic_batching": batching,
            "parameters": {"max_length": str(info.max_length)},
            "files": [str(info.tokenizer)],
            "requires": [_target_pin("tokenizers")],
            "inputs": [{"name": "TEXT", "dtype": "BYTES", "dims": [1]}],
            "outputs": ids + mask,
        }
    ]
    flow = [
        {
            "model": f"{name}_tokenizer",
            "inputs": {"TEXT": "TEXT"},
            "outputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        }
    ]
    if info.task == "sequence-classification":
        if not info.labels:
            raise SourceError(f"{folder}/config.json has no id2label: the labels are unknown")
        (work / "labels.txt").write_text("\n".join(info.labels) + "\n", encoding="utf-8")
        n = len(info.labels)
        steps.append(
            {
                "name": f"{name}_labels",
                "file": str(work / "hf_steps.py"),
                "class": "Labels",
                "max_batch_size": mbs,
                "labels": {"PROBS": str(work / "labels.txt")},
                "inputs": [{"name": "logits", "dtype": "FP32", "dims": [n]}],
                "outputs": [
                    {"name": "LABEL", "dtype": "BYTES", "dims": [1]},
                    {"name": "PROBS", "dtype": "FP32", "dims": [n]},
                ],
            }
        )
        flow.append(
            {
                "model": f"{name}_model",
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                "outputs": {"logits": "logits"},
            }
        )
        flow.append(
            {
                "model": f"{name}_labels",
                "inputs": {"logits": "logits"},
                "outputs": {"LABEL": "LABEL", "PROBS": "PROBS"},
            }
        )
        outputs = ["LABEL", "PROBS"]
    else:
        flow.append(
            {
                "model": f"{name}_model",
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                "outputs": {"embedding": "embedding"},
            }
        )
        outputs = ["embedding"]
    return {
        "models": [model],
        "python_steps": steps,
        "ensembles": [{"name": name, "inputs": ["TEXT"], "outputs": outputs, "steps": flow}],
    }


def build_text_pipeline(folder: str | Path, options: BuildOptions) -> ManifestResult:
    """Build the text pipeline of ``folder`` into ``options.output`` (all or nothing)."""
    from packager.manifest.builder import build_manifest

    with tempfile.TemporaryDirectory(prefix="tp-hf-text-") as tmp:
        work = Path(tmp)
        manifest = text_manifest(Path(folder).resolve(), options, work)
        path = work / f"{options.name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        return build_manifest(path, options.output, force=options.force, dry_run=options.dry_run)
