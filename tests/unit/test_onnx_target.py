"""ONNX artifacts against the target container's ONNX Runtime: the static checks and --opset.

The session with the container's ONNX Runtime (a subprocess, the wheel in the cache) is
exercised by tests/integration/test_target_parity.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from packager.releases import TARGET
from packager.sources import onnx_target
from tests.support.onnx_models import opset_onnx


def _problems(path: Path) -> list[str]:
    return onnx_target.static_problems(onnx.load(str(path)), path.name)


def test_a_model_the_target_reads_has_no_problem(tmp_path: Path) -> None:
    assert _problems(opset_onnx(tmp_path / "m.onnx", TARGET.onnx_opset)) == []


def test_too_new_opset_and_ir_name_the_target_and_the_way_out(tmp_path: Path) -> None:
    problems = _problems(opset_onnx(tmp_path / "m.onnx", 23))
    text = "\n".join(problems)
    assert "uses ONNX opset 23" in text and "has IR version 11" in text
    for fact in ("24.10", "ONNX Runtime 1.19", "opset 21", "--opset 21"):
        assert fact in text


def test_unknown_op_and_custom_domain_are_named(tmp_path: Path) -> None:
    unknown = "\n".join(_problems(opset_onnx(tmp_path / "u.onnx", 21, op="Frobnicate")))
    assert "op Frobnicate is not an ONNX operator" in unknown
    custom = "\n".join(
        _problems(opset_onnx(tmp_path / "c.onnx", 21, op="Swish", domain="acme.ops"))
    )
    assert "op acme.ops::Swish is in the custom domain 'acme.ops'" in custom
    # An op that exists, but only from a later opset than the model's.
    assert _problems(opset_onnx(tmp_path / "ok.onnx", 18, op="Mish")) == []  # Mish: opset 18
    late = "\n".join(_problems(opset_onnx(tmp_path / "l.onnx", 17, op="Mish")))
    assert "op Mish does not exist at opset 17" in late


def test_convert_lowers_opset_and_ir_and_keeps_the_answers(tmp_path: Path) -> None:
    src = opset_onnx(tmp_path / "m.onnx", 23)
    converted = onnx_target.convert(onnx.load(str(src)), 21, "m.onnx")
    assert converted.ir_version == 10
    assert {d.domain: d.version for d in converted.opset_import}[""] == 21
    assert onnx_target.static_problems(converted, "m.onnx") == []
    out = tmp_path / "c.onnx"
    onnx.save(converted, str(out))
    x = np.random.default_rng(0).standard_normal((5, 4), dtype=np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)


def test_convert_refuses_opsets_no_runtime_reads() -> None:
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    with pytest.raises(Exception, match="opset 7 and later"):
        onnx_target.convert(model, 5, "m.onnx")


def test_a_session_process_that_cannot_run_refuses_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "site" / "onnxruntime"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('broken wheel')\n")
    monkeypatch.setattr(onnx_target, "runtime_site", lambda **_: (tmp_path / "site", ""))
    monkeypatch.setenv("TRITON_PACKAGER_CACHE", str(tmp_path / "cache"))
    found = onnx_target.check(opset_onnx(tmp_path / "m.onnx", 21), "m.onnx")
    assert found.problems == []
    assert "the session process failed" in found.unchecked and "broken wheel" in found.unchecked
