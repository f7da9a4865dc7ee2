"""BuildOptions: one typed, immutable object for the CLI, the Python API and manifests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import numpy as np
import pytest
import yaml

from packager.builder import BuildOptions, SourceOptions, build
from packager.commands.build import build as build_cmd
from packager.compress import CompressOptions
from packager.errors import SpecError
from packager.manifest.schema import MODEL_KEYS, check_manifest
from packager.options import OPTIONS, cli_values, value_of
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
        queue_timeout_us=100,
        timeout_action="DELAY",
        max_queue_size=4,
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
    assert o.source.example_inputs == ()
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


def test_example_inputs_are_example_sets() -> None:
    assert SourceOptions(example_inputs="a.npz").example_inputs == ("a.npz",)
    several = SourceOptions(example_inputs=["a.npz", "b.npz"])
    assert several.example == "a.npz" and several.more_examples == ("b.npz",)
    arrays = [np.zeros((2, 3)), np.ones((2, 3))]  # one set of positional inputs
    assert len(SourceOptions(example_inputs=arrays).example_inputs) == 1


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


# ---------------------------------------------------------------- one declaration, three spellings

# A value for every option, as the CLI, a manifest and Python each spell it.
SAMPLES: dict[str, tuple[list[str], object, object]] = {
    # name: (CLI arguments, manifest YAML value, Python keyword value)
    "format": (["--format", "onnx"], "onnx", "onnx"),
    "backend": (["--backend", "python"], "python", "python"),
    "max_batch_size": (["--max-batch-size", "0"], 0, 0),
    "kind": (["--kind", "gpu"], "gpu", "gpu"),
    "gpus": (["--gpus", "0,1"], [0, 1], [0, 1]),
    "instances": (["--instances", "2"], 2, 2),
    "dynamic_batching": (["--no-dynamic-batching"], False, False),
    "preferred_batch_sizes": (["--preferred-batch-size", "4"], [4], [4]),
    "max_queue_delay_us": (["--max-queue-delay-us", "100"], 100, 100),
    "preserve_ordering": (["--preserve-ordering"], True, True),
    "priority_levels": (["--priority-levels", "2"], 2, 2),
    "default_priority_level": (["--default-priority-level", "1"], 1, 1),
    "queue_timeout_us": (["--queue-timeout-us", "500"], 500, 500),
    "timeout_action": (["--timeout-action", "DELAY"], "DELAY", "DELAY"),
    "max_queue_size": (["--max-queue-size", "8"], 8, 8),
    "version": (["--version", "3"], 3, 3),
    "version_policy": (["--version-policy", "latest:2"], "latest:2", "latest:2"),
    "warmup": (["--warmup", "2"], 2, 2),
    "parameters": (["--parameter", "k=v"], {"k": "v"}, {"k": "v"}),
    "labels": (["--label-file", "y=FILE"], {"y": "FILE"}, {"y": "FILE"}),
    "tensorrt": (["--tensorrt"], True, True),
    "tensorrt_precision": (["--tensorrt-precision", "FP32"], "FP32", "FP32"),
    "cuda_graphs": (["--cuda-graphs"], True, True),
    "input_specs": (["--input", "x:FP32:4"], [{"name": "x", "dtype": "FP32", "dims": [4]}], None),
    "example_inputs": (["--example-input", "FILE"], "FILE", ["FILE"]),
    "weights": (["--weights", "FILE"], "FILE", "FILE"),
    "output_names": (["--output-name", "y"], ["y"], ["y"]),
    "dynamic_axes": (["--dynamic-axis", "x:2"], {"x": [2]}, {"x": [2]}),
    "fixed_axes": (["--fixed-axis", "x:1"], {"x": [1]}, {"x": [1]}),
    "opset": (["--opset", "17"], 17, 17),
    "torchscript_mode": (["--torchscript-mode", "script"], "script", "script"),
    "verify": (["--no-verify"], False, False),
    "atol": (["--atol", "0.5"], 0.5, 0.5),
    "rtol": (["--rtol", "0.25"], 0.25, 0.25),
    "quantize": (["--quantize", "dynamic-int8"], "dynamic-int8", "dynamic-int8"),
    "calibration_data": (["--calibration-data", "FILE"], "FILE", "FILE"),
    "per_channel": (["--per-channel"], True, True),
    "fp16": (["--fp16"], True, True),
    "fp16_io": (["--fp16-io"], True, True),
    "prune": (["--prune", "0.5"], 0.5, 0.5),
    "prune_structured": (["--prune-structured"], True, True),
    "eval_data": (["--eval-data", "FILE"], "FILE", "FILE"),
    "eval_metric": (["--eval-metric", "top5"], "top5", "top5"),
    "task": (
        ["--task", "sequence-classification"],
        "sequence-classification",
        "sequence-classification",
    ),
    "text": (["--text"], True, True),
    "instance_groups": ([], [{"kind": "gpu", "count": 2, "gpus": [0]}], None),
    "priority_queue_policies": (
        ["--priority-queue-policy", "2:5000:DELAY"],
        ["2:5000:DELAY"],
        ["2:5000:DELAY"],
    ),
    "stateful": (["--stateful"], True, True),
    "states": (["--state", "h_in:h_out"], ["h_in:h_out"], ["h_in:h_out"]),
    "sequence_batching": (["--sequence-batching"], True, True),
    "sequence_strategy": (["--sequence-strategy", "direct"], "direct", "direct"),
    "max_candidate_sequences": (["--max-candidate-sequences", "4"], 4, 4),
    "sequence_idle_us": (["--sequence-idle-us", "500"], 500, 500),
    "sequence_controls": (["--sequence-control", "start=S"], ["start=S"], ["start=S"]),
    "response_cache": (["--response-cache"], True, True),
    "rate_limit_resources": (["--rate-limit-resource", "R:2"], ["R:2"], ["R:2"]),
    "rate_limit_priority": (["--rate-limit-priority", "3"], 3, 3),
}
RUN_LEVEL = {"name", "output", "force", "dry_run"}  # the entry's own, or about the run


def _cli_options(args: list[str]) -> BuildOptions:
    ctx = build_cmd.make_context("build", ["m", "--name", "m", *args])
    return BuildOptions.from_kwargs(**cli_values(ctx.params, lambda o, why: ValueError(why)))


def _manifest_options(tmp_path: Path, key: str, value: object) -> BuildOptions:
    entry: dict[str, object] = {"name": "m", "source": "a.onnx"}
    head, _, sub = key.partition(".")
    entry[head] = {sub: value} if sub else value
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}).replace("FILE", str(tmp_path / "f.npz")))
    (tmp_path / "a.onnx").write_bytes(b"")
    (tmp_path / "f.npz").write_bytes(b"")
    entries, _ = check_manifest(path)
    e = entries[0]  # name and version are the entry's own (version 1 unless given)
    return BuildOptions.from_kwargs(name=e.name, version=e.version, **e.options["build"])


def test_every_option_is_the_same_on_the_cli_in_a_manifest_and_in_python(
    tmp_path: Path,
) -> None:
    """The option-drift test: one declaration, three spellings, one typed value."""
    declared = {o.name for o in OPTIONS} - RUN_LEVEL
    assert set(SAMPLES) == declared, "give every declared option a sample here"
    for o in OPTIONS:
        if o.name in RUN_LEVEL:
            continue
        cli_args, yaml_value, py_value = SAMPLES[o.name]
        assert o.manifest is not None and o.manifest.partition(".")[0] in MODEL_KEYS
        from_manifest = value_of(_manifest_options(tmp_path, o.manifest, yaml_value), o)
        assert o.is_set(from_manifest), o.name
        if py_value is None:  # tensors and groups: Python passes the manifest's typed value
            py_value = from_manifest
        py = _fill(py_value, str(tmp_path / "f.npz"))
        from_python = value_of(BuildOptions.from_kwargs(name="m", **{o.name: py}), o)
        assert from_python == from_manifest or _same_text(from_python, from_manifest), o.name
        if o.flag is None:
            assert not cli_args  # manifest and Python only (instance_groups)
            continue
        args = [a.replace("FILE", str(tmp_path / "f.npz")) for a in cli_args]
        from_cli = value_of(_cli_options(args), o)
        if o.name == "input_specs":  # the CLI's NAME:DTYPE:DIMS text, parsed by the source
            assert from_cli == ("x:FP32:4",)
            continue
        assert from_cli == from_python or _same_text(from_cli, from_python), o.name


def _fill(value: object, file: str) -> object:
    """``value`` with the placeholder FILE replaced by a real file."""
    if value == "FILE":
        return file
    if isinstance(value, list):
        return [_fill(v, file) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, file) for k, v in value.items()}
    return value


def _same_text(a: object, b: object) -> bool:
    """Paths given as text and as Path are the same file."""
    return str(a).replace("PosixPath(", "").replace("'", "").replace(")", "") == str(b).replace(
        "PosixPath(", ""
    ).replace("'", "").replace(")", "")


def test_cli_flags_are_the_declared_ones() -> None:
    flags = {p.name for p in build_cmd.params if isinstance(p, click.Option)}
    assert flags - {"manifest", "as_json"} == {o.name for o in OPTIONS if o.flag}


def test_an_option_the_kind_of_build_ignores_is_refused_by_name(tmp_path: Path) -> None:
    model = affine_onnx(tmp_path / "affine.onnx")
    with pytest.raises(SpecError) as err:
        build(model, name="affine", output=tmp_path / "r", weights="w.pt", prune=0.5)
    text = str(err.value)
    assert "--weights does not apply to an ONNX file" in text
    assert "--prune does not apply to an ONNX file" in text
    assert not (tmp_path / "r").exists()


def test_every_manifest_key_is_documented() -> None:
    """docs/manifest.md names every key a model entry takes (generated from the declaration)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "manifest.md").read_text()
    keys = {o.manifest.split(".")[-1] for o in OPTIONS if o.manifest}
    assert sorted(k for k in keys if not re.search(rf"\b{k}\b", text)) == []
