"""Validated means it loads in NVIDIA's 24.10 container: ONNX artifacts are checked against the
container's ONNX Runtime (1.19.2, from its wheel, in a subprocess), the native backend links that
same runtime, and ``--opset`` converts a too-new model into one it serves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from packager.builder import build
from packager.client import Client
from packager.errors import SpecError
from packager.releases import TARGET
from packager.serve import native
from packager.sources import onnx_target
from packager.validation import validate
from tests.support.onnx_models import opset_onnx
from tests.support.tree import snapshot

pytestmark = pytest.mark.integration

X = np.random.default_rng(11).standard_normal((5, 4), dtype=np.float32)


def _existing_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    build(str(opset_onnx(tmp_path / "ok.onnx", 17)), name="ok", output=repo)
    return repo


def test_an_opset_23_model_is_refused_naming_the_target_and_the_way_out(tmp_path: Path) -> None:
    repo = _existing_repo(tmp_path)
    before = snapshot(repo)
    with pytest.raises(SpecError) as caught:
        build(str(opset_onnx(tmp_path / "m23.onnx", 23)), name="m23", output=repo)
    text = str(caught.value)
    for fact in ("Triton 24.10", "ONNX Runtime 1.19", "opset 21", "--opset 21"):
        assert fact in text
    assert snapshot(repo) == before  # nothing written


@pytest.mark.parametrize(
    ("op", "domain", "named"),
    [("Frobnicate", "", "op Frobnicate"), ("Swish", "acme.ops", "op acme.ops::Swish")],
)
def test_unknown_op_or_custom_domain_fails_build_and_validate(
    tmp_path: Path, op: str, domain: str, named: str
) -> None:
    model = opset_onnx(tmp_path / "bad.onnx", 21, op=op, domain=domain)
    repo = _existing_repo(tmp_path)
    before = snapshot(repo)
    with pytest.raises(SpecError, match=named.replace(".", r"\.")):
        build(str(model), name="bad", output=repo)
    assert snapshot(repo) == before
    # The same file placed by hand as a second version: validate names the op.
    (repo / "ok" / "2").mkdir()
    (repo / "ok" / "2" / "model.onnx").write_bytes(model.read_bytes())
    report = validate(repo, checksums=False)
    assert not report.ok
    assert any(named in p and p.startswith("2/model.onnx") for p in report.models[0].problems)


def test_the_containers_runtime_loads_the_artifact_in_a_session(tmp_path: Path) -> None:
    # Operators of ONNX Runtime's own domains (com.microsoft) have no ONNX schema to check
    # statically: only a session of the container's runtime tells whether it has them.
    path = opset_onnx(tmp_path / "m.onnx", 21, op="NotAnOp", domain="com.microsoft")
    found = onnx_target.check(path, "m.onnx")
    assert found.runtime == f"onnxruntime {TARGET.onnxruntime}", found.unchecked
    assert any("ONNX Runtime 1.19.2" in p and "NotAnOp" in p for p in found.problems)
    good = onnx_target.check(opset_onnx(tmp_path / "g.onnx", 21), "g.onnx")
    assert good.problems == [] and good.runtime == f"onnxruntime {TARGET.onnxruntime}"


def test_with_opset_21_it_builds_serves_on_the_containers_runtime_and_answers_equal(
    tmp_path: Path, start_server
) -> None:
    st = native.status(native.BACKENDS["onnx"])
    if not native.missing_tools(native.BACKENDS["onnx"]):
        assert st.ready, st.reason
    src = opset_onnx(tmp_path / "m23.onnx", 23)
    repo = tmp_path / "repo"
    result = build(str(src), name="m23", output=repo, opset=21)
    converted = result.record["onnx"]["converted"]
    assert converted["from_opset"] == 23 and converted["to_opset"] == 21
    assert converted["verification"]["passed"] is True
    assert result.record["target"] == {"triton": "24.10", "onnxruntime": TARGET.onnxruntime}
    loaded = onnx_target.check(repo / "m23" / "1" / "model.onnx")
    assert loaded.problems == [] and loaded.runtime == f"onnxruntime {TARGET.onnxruntime}"
    assert validate(repo).ok
    server = start_server(repo, native=True)
    # serve names the ONNX Runtime each native model runs on: the container's.
    assert any("m23" in line and "ONNX Runtime 1.19.2" in line for line in server.native), (
        server.native,
        server.shadowed,
    )
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": X})
    with Client(server.http_url) as client:
        got = client.infer("m23", {"x": X})["y"]
    np.testing.assert_allclose(got, want[0], atol=1e-5, rtol=0)


def test_the_native_backend_links_the_containers_onnx_runtime() -> None:
    st = native.status(native.BACKENDS["onnx"])
    if native.missing_tools(native.BACKENDS["onnx"]):
        pytest.skip("no compiler here: the native backend cannot be built")
    assert st.ready, st.reason
    assert st.path is not None
    assert st.runtime_version == TARGET.onnxruntime
    lib = (st.path / "libonnxruntime.so.1").resolve()
    assert lib.name == f"libonnxruntime.so.{TARGET.onnxruntime}"
    assert lib.is_relative_to(onnx_target.runtime_folder())


def test_what_only_onnxs_checker_refuses_is_a_note_when_the_runtime_loads_it(
    tmp_path: Path,
) -> None:
    import onnx

    path = opset_onnx(tmp_path / "m.onnx", 21)
    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))  # not topologically sorted: ORT sorts it itself
    onnx.save(model, str(path))
    found = onnx_target.check(path, "m.onnx")
    assert found.problems == []
    assert "ONNX's checker refuses it" in found.unchecked
    assert f"ONNX Runtime {TARGET.onnxruntime} loads it" in found.unchecked
