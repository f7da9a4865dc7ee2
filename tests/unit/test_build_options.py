"""BuildOptions: one typed, immutable object for the CLI, the Python API and manifests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from packager.builder import BuildOptions, SourceOptions, build
from packager.compress import CompressOptions
from packager.spec import DynamicBatching, GpuOptimization, QueuePolicy, VersionPolicy
from tests.support.onnx_models import affine_onnx


def test_flat_keywords_land_in_their_groups() -> None:
    policy = QueuePolicy("DELAY", 100, max_queue_size=4)
    o = BuildOptions.from_kwargs(
        name="m",
        output="repo",
        gpus=[0, 1],
        preferred_batch_sizes=[4, 8],
        max_queue_delay_us=200,
        queue_policy=policy,
        tensorrt=True,
        quantize="dynamic-int8",
        weights="w.pt",
        output_names=["y"],
        version_policy="latest:2",
        parameters={"k": "v"},
    )
    assert o.output == Path("repo") and o.gpus == (0, 1)
    assert o.batching == DynamicBatching((4, 8), 200, default_queue_policy=policy)
    assert o.gpu_optimization == GpuOptimization(tensorrt=True)
    assert o.compress == CompressOptions(quantize="dynamic-int8")
    assert o.source == SourceOptions(weights="w.pt", output_names=("y",))
    assert o.version_policy == VersionPolicy("latest", 2)
    assert BuildOptions.from_kwargs(name="m", tensorrt=False).gpu_optimization is None


def test_options_are_immutable_and_unknown_keywords_are_refused() -> None:
    o = BuildOptions("m", parameters={"k": "v"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.parameters["k"] = "w"  # type: ignore[index]
    assert o.replace(name="n").name == "n" and o.name == "m"
    with pytest.raises(TypeError, match=r"unknown option 'max_batch'.*max_batch_size"):
        BuildOptions.from_kwargs(name="m", max_batch=4)


def test_source_options_hand_over_only_what_is_set() -> None:
    assert SourceOptions().to_mapping() == {}
    assert SourceOptions(opset=17, verify=False, atol=1e-3).to_mapping() == {
        "opset": 17,
        "verify": False,
        "atol": 1e-3,
    }


def test_build_takes_the_object_or_the_keywords_alike(tmp_path: Path) -> None:
    model = affine_onnx(tmp_path / "affine.onnx")
    typed = BuildOptions(
        "affine",
        output=tmp_path / "a",
        max_batch_size=16,
        batching=DynamicBatching((4,), 100),
        dry_run=True,
    )
    flat = build(
        model,
        name="affine",
        output=tmp_path / "b",
        max_batch_size=16,
        preferred_batch_sizes=[4],
        max_queue_delay_us=100,
        dry_run=True,
    )
    assert build(model, typed).config == flat.config
    assert "preferred_batch_size: [ 4 ]" in flat.config
    assert "max_queue_delay_microseconds: 100" in flat.config
    with pytest.raises(TypeError, match="not both"):
        build(model, typed, name="x")
