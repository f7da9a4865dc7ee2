"""Hugging Face folders with sharded checkpoints (issue 22): every task loads them, and a
folder with a shard missing is refused by name before transformers runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from packager.errors import SourceError
from packager.sources.huggingface import describe, hf_module
from tests.support import sharded_hf

IDS = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


@pytest.mark.parametrize("task", ["feature-extraction", "sequence-classification"])
@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_folders_load_the_same_weights_for_every_task(
    tmp_path: Path, task: str, kind: str
) -> None:
    model = sharded_hf.tiny_bert(task)
    whole = describe(sharded_hf.save(model, tmp_path / "whole", "whole"))
    sharded = describe(sharded_hf.save(model, tmp_path / "sharded", kind))
    assert len(sharded_hf.shards(sharded.folder)) >= 2
    assert not (sharded.folder / "model.safetensors").exists()
    assert sharded.task == task
    with torch.no_grad():
        want = hf_module(whole)(IDS, MASK)
        got = hf_module(sharded)(IDS, MASK)
    assert (
        list(got) == list(want) == (["logits"] if task != "feature-extraction" else ["embedding"])
    )
    for key in want:  # the same tensors, not a randomly initialised model
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    folder = sharded_hf.save(sharded_hf.tiny_bert("feature-extraction"), tmp_path / "m", "bin")
    gone = sharded_hf.shards(folder)[-1]
    (folder / gone).unlink()
    with pytest.raises(SourceError, match=rf"shard\(s\) {gone} are missing; copy all \d+ shard"):
        describe(folder)


def test_an_index_without_a_weight_map_is_refused(tmp_path: Path) -> None:
    folder = sharded_hf.save(
        sharded_hf.tiny_bert("feature-extraction"), tmp_path / "m", "safetensors"
    )
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(SourceError, match="has no weight_map"):
        describe(folder)
