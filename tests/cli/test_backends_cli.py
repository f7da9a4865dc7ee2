"""``triton-packager backends``: status table, --json, and a clear exit when a build cannot happen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.serve import native


def test_help() -> None:
    result = CliRunner().invoke(main, ["backends", "--help"])
    assert result.exit_code == 0
    assert "--build" in result.output and "--json" in result.output


def test_json_lists_both_backends() -> None:
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [b["backend"] for b in report["backends"]] == ["onnxruntime", "pytorch"]
    for row in report["backends"]:
        assert row["source"] == "r24.10"
        assert row["ready"] == (row["path"] is not None)
        assert row["ready"] or row["reason"]


def test_build_without_tools_exits_1_naming_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRITON_PACKAGER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no compiler
    result = CliRunner().invoke(main, ["backends", "--build"])
    assert result.exit_code == 1
    assert "not ready: cannot compile it here: missing cmake >= 3.17" in result.output
    assert "Traceback" not in result.output


def test_the_off_switch_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    assert "TRITON_PACKAGER_NATIVE=0" in result.output
