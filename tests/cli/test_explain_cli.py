"""explain's command line without a server: --help and the mistakes caught before any call.
(Against a real server: tests/integration/test_explain.py.)"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from packager.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["explain", *args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_help_names_every_choice() -> None:
    code, out = run("--help")
    assert code == 0
    for option in (
        "--input-file", "--input-text", "--select-output", "--target", "--method", "kernelshap", "occlusion",
        "--samples", "--seed", "--baseline", "--patch", "--channels", "--batch-size", "--plot",
        "--html", "--json", "--url", "--protocol",
    ):  # fmt: skip
        assert option in out, option


def test_usage_errors_come_before_any_request(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    x.write_bytes(b"")  # never read: each case fails before loading or connecting
    unreachable = ["--url", "127.0.0.1:9", "--timeout", "1"]
    cases = {
        ("m", *unreachable): "give the sample to explain",
        ("m", "--input-file", "nosuch.npy", *unreachable): "nosuch.npy: no such file",
        ("m", "--input-text", "hi", "--html", str(tmp_path / "no" / "a.html"), *unreachable): (
            "does not exist"
        ),
        ("m", "--input-text", "hi", "--method", "lime", *unreachable): "'lime' is not one of",
        ("m", "--input-text", "hi", "--samples", "0", *unreachable): "0 is not in the range",
    }
    for args, message in cases.items():
        code, out = run(*args)
        assert code == 2 and message in out, (args, out)


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    code, out = run("m", "--input-text", "hi", "--url", "127.0.0.1:9", "--timeout", "1")
    assert code == 1 and out.startswith("error: ") and len(out.strip().splitlines()) == 1
