"""`serve` through click's CliRunner: help and the errors raised before a server starts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from packager.cli import main


def test_serve_help_documents_every_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in (
        "--host",
        "--http-port",
        "--grpc-port",
        "--metrics-port",
        "--model-control-mode",
        "--load-model",
        "--log-verbose",
        "--show-log",
        "--startup-timeout",
    ):
        assert option in result.output
    assert "none|explicit|poll" in result.output
    assert "Ctrl-C" in result.output


def test_serve_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "error: model repository" in result.output
    assert "is not a directory" in result.output
    assert "triton-packager build" in result.output


def test_serve_load_model_needs_explicit_mode(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--load-model", "mlp"])
    assert result.exit_code == 1
    assert "--load-model" in result.output and "explicit" in result.output


def test_serve_rejects_unknown_control_mode(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--model-control-mode", "lazy"])
    assert result.exit_code == 2
    assert "'lazy' is not one of" in result.output
