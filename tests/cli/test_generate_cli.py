"""``triton-packager generate`` without a server: help, usage errors before any request, and an
unreachable server in one line (the served runs are in tests/integration/test_generate.py)."""

from __future__ import annotations

from click.testing import CliRunner

from packager.cli import main
from packager.serve.embedded import free_port


def test_help_names_the_sampling_options() -> None:
    result = CliRunner().invoke(main, ["generate", "--help"])
    assert result.exit_code == 0
    for option in ("--stream", "--max-tokens", "--temperature", "--top-p", "--seed", "--param"):
        assert option in result.output


def test_usage_errors_come_before_any_request() -> None:
    port = free_port()  # nothing listens there: a request would fail differently
    url = f"127.0.0.1:{port}"
    result = CliRunner().invoke(main, ["generate", "m", "hi", "--param", "oops", "--url", url])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    result = CliRunner().invoke(
        main, ["generate", "m", "hi", "--stream", "--include-prompt", "--url", url]
    )
    assert result.exit_code == 2 and "--include-prompt does not combine" in result.output


def test_unreachable_server_is_one_clear_line() -> None:
    url = f"127.0.0.1:{free_port()}"
    for extra in ([], ["--stream"], ["--protocol", "grpc", "--timeout", "3"]):
        result = CliRunner().invoke(main, ["generate", "m", "hi", "--url", url, *extra])
        assert result.exit_code == 1, result.output
        assert "cannot reach the server" in result.output
        assert "Traceback" not in result.output
