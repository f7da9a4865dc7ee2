"""packager.sources.verify: per-output closeness report between a reference and a candidate runner."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from packager.errors import ExportError, VerificationError
from packager.sources.verify import VerificationReport, compare, verify


def test_compare_reports_max_errors_and_worst_index() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    got = ref.copy()
    got[1, 2] += 0.5  # the worst element
    got[0, 0] += 1e-6  # within tolerance
    check = compare("case", "y", ref, got, atol=1e-4, rtol=1e-3)
    assert not check.passed
    assert check.worst_index == (1, 2)
    assert check.max_abs_err == pytest.approx(0.5)
    assert check.max_rel_err == pytest.approx(0.5 / 6.0)
    assert check.shape == (2, 3)


def test_compare_uses_allclose_rule() -> None:
    ref = np.array([1000.0, 0.0])
    # 1000 * rtol(1e-3) = 1.0 allowed on the first element; atol 1e-4 on the second.
    assert compare("c", "y", ref, ref + np.array([0.9, 5e-5]), 1e-4, 1e-3).passed
    assert not compare("c", "y", ref, ref + np.array([1.2, 0.0]), 1e-4, 1e-3).passed
    assert not compare("c", "y", ref, ref + np.array([0.0, 2e-4]), 1e-4, 1e-3).passed


def test_compare_shape_mismatch_and_nan() -> None:
    bad_shape = compare("c", "y", np.zeros((2, 3)), np.zeros((3, 3)), 1e-4, 1e-3)
    assert not bad_shape.passed and "shape [3, 3], expected [2, 3]" in bad_shape.problem
    both_nan = compare("c", "y", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), 1e-4, 1e-3)
    assert both_nan.passed
    one_nan = compare("c", "y", np.array([0.5, 1.0]), np.array([np.nan, 1.0]), 1e-4, 1e-3)
    assert not one_nan.passed and one_nan.worst_index == (0,) and "NaN" in one_nan.problem


def test_compare_integer_and_bool_outputs() -> None:
    assert compare("c", "ids", np.array([1, 2, 3]), np.array([1, 2, 3]), 0, 0).passed
    check = compare("c", "mask", np.array([True, False]), np.array([True, True]), 0, 0)
    assert not check.passed and check.worst_index == (1,)


def test_verify_raises_with_table_naming_failed_output() -> None:
    cases = [("example (batch 2)", {"x": np.ones((2, 3), np.float32)})]

    def reference(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"a": inputs["x"] * 2, "b": inputs["x"] + 1}

    def candidate(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"a": inputs["x"] * 2, "b": inputs["x"] + 1.01}

    with pytest.raises(VerificationError) as info:
        verify(reference, candidate, cases, atol=1e-4, rtol=1e-3)
    err = info.value
    assert isinstance(err, ExportError)  # callers catching ExportError also see verification
    assert "for output(s) b" in str(err)
    report = err.report
    assert isinstance(report, VerificationReport)
    assert [c.output for c in report.failures] == ["b"]
    table = report.table()
    assert "max abs err" in table and "FAIL" in table and "ok" in table
    row_b = next(line for line in table.splitlines() if " b " in line)
    assert "0.01" in row_b


def test_verify_missing_output_and_record() -> None:
    cases = [("c1", {"x": np.zeros(2)})]
    report = verify(
        lambda i: {"y": i["x"], "z": i["x"]},
        lambda i: {"y": i["x"]},
        cases,
        raise_on_failure=False,
    )
    assert not report.passed
    assert "missing" in report.failures[0].problem
    record = report.to_record()
    assert record["passed"] is False
    assert record["checks"][0]["output"] == "y" and record["checks"][0]["passed"] is True
    assert record["atol"] == 1e-4 and record["rtol"] == 1e-3
