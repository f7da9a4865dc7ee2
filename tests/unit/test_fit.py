"""Memory estimates: weights and peak-liveness activations of real ONNX graphs (sizes worked out
by hand from the shapes), instances placed per GPU from instance groups, verdicts, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.deploy import fit
from packager.deploy.fit import MiB, estimate, format_report
from packager.deploy.footprint import parse_size
from packager.deploy.onnx_memory import graph_memory
from packager.errors import PackagerError
from tests.support.deploy import write_model
from tests.support.onnx_models import affine_onnx, mlp_onnx

F32 = 4


def chain_onnx(path: Path, width: int, depth: int) -> Path:
    """x [batch, seq, width] -> depth Relus in a chain -> y; no weights. Every tensor dies once
    the next is made, so the peak is two tensors while the sum of all is depth + 1."""
    nodes = [
        helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i < depth - 1 else "y"])
        for i in range(depth)
    ]
    dims: list[str | int] = ["batch", "seq", width]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- one graph


def test_affine_weights_and_activations_by_hand(tmp_path: Path) -> None:
    g = graph_memory(affine_onnx(tmp_path / "a.onnx"), {"x": [8, 4]})
    assert g.weight_bytes == (4 * 3 + 3) * F32  # W [4, 3] and b [3]
    # MatMul: x [8,4] and xw [8,3] live; then Add: xw and y [8,3] (x is dead): peak at MatMul.
    assert g.activation_bytes == (8 * 4 + 8 * 3) * F32
    assert not g.lower_bound


def test_mlp_peak_by_hand_scales_with_the_batch(tmp_path: Path) -> None:
    path = mlp_onnx(tmp_path / "m.onnx", (16, 64, 8))
    assert graph_memory(path, {"input": [1, 16]}).weight_bytes == (16 * 64 + 64 + 64 * 8 + 8) * F32
    # Nodes: MatMul m0, Add a0, Relu r0, MatMul m1, Add a1, Identity logits. The widest step
    # holds two [B, 64] tensors (m0 + a0 at the Add, or a0 + r0 at the Relu).
    for batch in (1, 32):
        assert graph_memory(path, {"input": [batch, 16]}).activation_bytes == 2 * batch * 64 * F32


def test_peak_liveness_not_the_sum_of_every_tensor(tmp_path: Path) -> None:
    path = chain_onnx(tmp_path / "c.onnx", width=100, depth=6)
    g = graph_memory(path, {"x": [4, 10, 100]})
    one = 4 * 10 * 100 * F32
    assert g.activation_bytes == 2 * one  # the sum of all seven tensors would be 7 * one
    assert g.weight_bytes == 0


def test_dynamic_dims_are_reported_not_guessed(tmp_path: Path) -> None:
    path = chain_onnx(tmp_path / "c.onnx", width=100, depth=3)
    g = graph_memory(path, {"x": [4, -1, 100]})  # the batch only: seq stays unknown
    assert g.unresolved == ("x",) and g.lower_bound
    assert g.activation_bytes == 0 and set(g.unknown) == {"x", "t1", "t2", "y"}
    sized = graph_memory(path, {"x": [4, 7, 100]})
    assert sized.activation_bytes == 2 * 4 * 7 * 100 * F32 and not sized.lower_bound


def test_a_symbol_fixed_by_one_input_sizes_the_others(tmp_path: Path) -> None:
    seq: list[str | int] = ["batch", "seq"]
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, seq) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, seq)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    g = graph_memory(tmp_path / "two.onnx", {"a": [2, 50], "b": [2, -1]})
    assert g.activation_bytes == 3 * 2 * 50 * F32 and not g.lower_bound


def test_external_data_weights_count_without_loading_them(tmp_path: Path) -> None:
    inline = mlp_onnx(tmp_path / "m.onnx", (32, 256, 4))
    model = onnx.load(str(inline))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)  # fmt: skip
    assert (tmp_path / "ext.onnx").stat().st_size < 2000  # the weights really are outside
    a = graph_memory(inline, {"input": [8, 32]})
    b = graph_memory(tmp_path / "ext.onnx", {"input": [8, 32]})
    assert a == b and a.weight_bytes == (32 * 256 + 256 + 256 * 4 + 4) * F32


def test_constant_nodes_are_weights(tmp_path: Path) -> None:
    k = numpy_helper.from_array(np.ones((10, 10), np.float32), "k")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], value=k),
            helper.make_node("Add", ["x", "k"], ["y"]),
        ],
        "const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "k.onnx"))
    g = graph_memory(tmp_path / "k.onnx")
    assert g.weight_bytes == 100 * F32 and g.activation_bytes == 2 * 100 * F32


# --------------------------------------------------------------------------- a repository


def onnx_model(repo: Path, name: str, groups: str = "", extra: str = "") -> Path:
    model = write_model(repo, name, 'platform: "onnxruntime_onnx"', instance_groups=groups,
                        extra=extra)  # fmt: skip
    for version in model.iterdir():
        if version.is_dir():
            affine_onnx(version / "model.onnx")
    return model


AFFINE = (4 * 3 + 3) * F32
AFFINE_ACT = (8 * 4 + 8 * 3) * F32  # at max_batch_size 8


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    onnx_model(
        repo, "spread", "{ kind: KIND_GPU count: 2 gpus: [ 0, 1 ] }, { kind: KIND_CPU count: 1 }"
    )
    onnx_model(repo, "one", "{ kind: KIND_GPU count: 3 gpus: [ 1 ] }")
    write_model(repo, "ts", 'platform: "pytorch_libtorch"', instance_groups="{ kind: KIND_CPU }",
                files={1: {"model.pt": 5 * MiB}})  # fmt: skip
    write_model(repo, "ens", 'platform: "ensemble"')
    return repo


def test_instances_are_placed_per_gpu_and_summed(repo: Path) -> None:
    report = estimate(repo)  # the groups name GPUs 0 and 1: two GPUs by default
    assert report.gpus == 2
    m = {e.name: e for e in report.models}
    assert m["spread"].gpu_placement == ((0, 2), (1, 2)) and m["spread"].cpu_instances == 1
    assert m["one"].gpu_placement == ((1, 3),)
    assert m["ens"].weight_bytes == 0 and m["ens"].cpu_instances == 0 and not m["ens"].versions
    assert m["spread"].weight_bytes == AFFINE and m["spread"].activation_bytes == AFFINE_ACT
    assert m["ts"].weight_bytes == 5 * MiB and m["ts"].lower_bound  # TorchScript: file size
    native_gpu = AFFINE + 2 * AFFINE_ACT + fit.GPU_INSTANCE_BYTES
    server_gpu = fit.CUDA_CONTEXT_BYTES + fit.TRITON_GPU_POOL_BYTES
    dev = {d.device: d for d in report.devices}
    assert dev["GPU 0"].instances == 2 and dev["GPU 0"].bytes == server_gpu + 2 * native_gpu
    assert dev["GPU 1"].instances == 5 and dev["GPU 1"].bytes == server_gpu + 5 * native_gpu
    host = fit.SERVER_HOST_BYTES + fit.TRITON_PINNED_POOL_BYTES
    host += AFFINE + 2 * AFFINE_ACT + fit.NATIVE_INSTANCE_HOST_BYTES  # spread's CPU instance
    host += 5 * MiB + fit.NATIVE_INSTANCE_HOST_BYTES  # ts
    assert dev["host"].instances == 2 and dev["host"].bytes == host
    assert dev["host"].lower_bound and not dev["GPU 0"].lower_bound  # TorchScript is on the host


def test_more_gpus_than_named_spread_unpinned_groups(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    onnx_model(repo, "auto")  # no instance_group: one instance per GPU
    onnx_model(repo, "gpu", "{ kind: KIND_GPU count: 2 }")
    report = estimate(repo, gpus=3)
    assert [d.instances for d in report.devices] == [3, 3, 3, 0]


def test_cpu_only_python_stub_and_gpu_rules(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    model = write_model(repo, "py", 'backend: "python"\nparameters { key: "artifact" value { '
                        'string_value: "model.onnx" } }', instance_groups="{ kind: KIND_GPU count: 2 }")  # fmt: skip
    affine_onnx(model / "1" / "model.onnx")
    report = estimate(repo, gpus=1)
    (py,) = report.models
    assert py.weight_bytes == AFFINE and py.host_overhead == fit.STUB_HOST_BYTES["onnx"]
    # Each Python-backend instance is a process: its own CUDA context on the GPU, and its
    # interpreter on the host.
    assert py.gpu_overhead == fit.GPU_INSTANCE_BYTES + fit.CUDA_CONTEXT_BYTES
    gpu, host = report.devices
    assert gpu.bytes == fit.CUDA_CONTEXT_BYTES + fit.TRITON_GPU_POOL_BYTES + 2 * py.per_instance(
        True
    )
    assert host.bytes == (fit.SERVER_HOST_BYTES + fit.TRITON_PINNED_POOL_BYTES
                          + 2 * fit.STUB_HOST_BYTES["onnx"])  # fmt: skip


def test_served_versions_each_hold_their_instances(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "v", 'platform: "onnxruntime_onnx"', instance_groups="{ kind: KIND_CPU count: 2 }",
                extra="version_policy { latest { num_versions: 2 } }\n", files={1: {}, 2: {}, 3: {}})  # fmt: skip
    for v in (1, 2, 3):
        affine_onnx(repo / "v" / str(v) / "model.onnx")
    (m,) = estimate(repo, gpus=0).models
    assert m.versions == (2, 3) and m.weight_bytes == 2 * AFFINE
    assert m.per_instance(False) == 2 * (AFFINE + 2 * AFFINE_ACT + fit.NATIVE_INSTANCE_HOST_BYTES)
    assert estimate(repo, gpus=0).devices[-1].instances == 4
    assert "v (v2,3)" in format_report(estimate(repo, gpus=0))


def test_max_batch_size_override_and_shapes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    onnx_model(repo, "a", "{ kind: KIND_CPU }")
    (m,) = estimate(repo, gpus=0, max_batch_size=100).models
    assert m.batch_size == 100 and m.activation_bytes == (100 * 4 + 100 * 3) * F32
    with pytest.raises(PackagerError, match=r"--shape nope: no model of .* has an input"):
        estimate(repo, gpus=0, shapes={"nope": (3,)})
    with pytest.raises(PackagerError, match=r"--shape x:4,4 has 2 dims but input 'x'"):
        estimate(repo, gpus=0, shapes={"x": (4, 4)})
    with pytest.raises(PackagerError, match="--max-batch-size 0"):
        estimate(repo, gpus=0, max_batch_size=0)


def test_verdicts_fit_tight_and_short(repo: Path) -> None:
    report = estimate(repo, gpu_memory=[parse_size("16g"), parse_size("960m")],
                      host_memory=parse_size("1g"))  # fmt: skip
    gpu1 = next(d for d in report.devices if d.device == "GPU 1")  # 576 MiB server + 5 x 64 MiB
    big, small = gpu1.verdicts
    assert big.verdict == fit.FITS and big.free == 16 * 1024 * MiB - gpu1.bytes
    assert small.verdict == fit.TIGHT  # 896 <= 960 MiB, but within the 10 % margin
    assert report.fits
    short = estimate(repo, gpu_memory=[parse_size("700m")])
    assert not short.fits and {v.verdict for d in short.devices for v in d.verdicts} == {fit.NO_FIT}
    assert (
        estimate(repo, gpu_memory=[parse_size("960m")], margin=0.0).devices[1].verdicts[0].verdict
        == fit.FITS
    )
    text = format_report(short)
    assert "700 MiB GPU" in text and "no (" in text and "short)" in text


def test_clear_errors(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagerError, match="no models in"):
        estimate(tmp_path / "empty")
    with pytest.raises(PackagerError, match="pins GPU 1 but --gpu-count gives 1 GPU"):
        estimate(repo, gpus=1)
    with pytest.raises(PackagerError, match="KIND_GPU instances but --gpu-count gives no GPU"):
        estimate(repo, gpus=0)
    with pytest.raises(PackagerError, match="--gpu-memory '16 GB' is not a size"):
        parse_size("16 GB", "--gpu-memory")
    assert parse_size("16GiB") == parse_size("16g") == parse_size("16Gi") == 16 << 30
    broken = onnx_model(tmp_path / "r2", "broken")
    (broken / "1" / "model.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(PackagerError, match=r"cannot read .* as ONNX"):
        estimate(tmp_path / "r2", gpus=0)


def test_human_sizes() -> None:
    assert [fit.human(n) for n in (60, 1536, 68 * MiB + MiB // 5, 1000 * MiB, -3 * MiB)] == [
        "60 B", "1.50 KiB", "68.2 MiB", "0.98 GiB", "-3.00 MiB"]  # fmt: skip


def test_the_repository_is_not_written(repo: Path, tmp_path: Path) -> None:
    before = sorted((p.relative_to(repo), p.stat().st_mtime_ns) for p in repo.rglob("*"))
    estimate(repo)
    assert sorted((p.relative_to(repo), p.stat().st_mtime_ns) for p in repo.rglob("*")) == before
    shutil.rmtree(repo)


def _relu_model(repo: Path, name: str, dims: list[int]) -> None:
    """A one-Relu ONNX model whose input x has ``dims`` (batch excluded, -1 dynamic)."""
    folder = repo / name / "1"
    folder.mkdir(parents=True)
    shape: list[str | int] = ["batch", *(f"d{i}" if d < 0 else d for i, d in enumerate(dims))]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    io = ", ".join(map(str, dims))
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2\n'
        f'input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {io} ] }} ]\n'
        f'output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {io} ] }} ]\n'
    )


def test_shape_per_model_when_models_share_an_input_name_at_other_ranks(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _relu_model(repo, "seq", [-1, 100])
    _relu_model(repo, "img", [3, -1, -1])
    report = estimate(repo, gpus=0)
    notes = "\n".join(report.notes)
    # The note's example has the input's full rank, and is accepted as written.
    assert "--shape img.x:3,128,128" in notes and "--shape seq.x:128,100" in notes
    sized = estimate(repo, gpus=0, shapes={"seq.x": (128, 100), "img.x": (3, 128, 128)})
    by_name = {m.name: m for m in sized.models}
    assert by_name["seq"].activation_bytes == 2 * 2 * 128 * 100 * F32  # x and y at batch 2
    assert by_name["img"].activation_bytes == 2 * 2 * 3 * 128 * 128 * F32
    assert not any(m.unresolved for m in sized.models)
    with pytest.raises(
        PackagerError,
        match=r"--shape x:7 has 1 dims but input 'x' of model 'img'.*--shape img.x:3,128,128",
    ):
        estimate(repo, gpus=0, shapes={"x": (7,)})
    with pytest.raises(PackagerError, match=r"--shape other.x: no model"):
        estimate(repo, gpus=0, shapes={"other.x": (7,)})
