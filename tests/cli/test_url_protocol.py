"""The URL follows the protocol in every command that calls a server (issue 32).

``--protocol grpc`` without ``--url`` calls the gRPC port (not the HTTP one); a URL whose scheme
disagrees with ``--protocol`` is refused before any call; the default ports are one fact
(``packager.releases.TRITON_PORTS``) that serve, docker, k8s and the client all read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from packager import releases
from packager.cli import main
from packager.client import Client
from packager.client.core import parse_url
from packager.serve.server import LocalServer
from tests.support.client_models import mlp_reference, write_repository

CALLERS = {
    "infer": ["infer", "m", "--input-file", "x=X"],
    "bench": ["bench", "m"],
    "explain": ["explain", "m", "--input-file", "x=X"],
    "generate": ["generate", "m", "hi"],
    "evaluate": ["evaluate", "m", "--data", "X"],
}


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def args_for(command: str, x: Path) -> list[str]:
    return [a.replace("X", str(x)) for a in CALLERS[command]]


def test_no_url_means_the_protocols_default_port() -> None:
    assert str(parse_url(None)) == "http://localhost:8000"
    assert str(parse_url(None, "grpc")) == "grpc://localhost:8001"
    assert str(parse_url("", "grpc")) == "grpc://localhost:8001"
    assert Client(protocol="grpc").url == "grpc://localhost:8001"
    assert releases.TRITON_PORTS == {"http": 8000, "grpc": 8001, "metrics": 8002}


@pytest.mark.parametrize("command", sorted(CALLERS))
def test_a_scheme_that_disagrees_with_protocol_is_refused(command: str, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 16), np.float32))
    for url, protocol in (("http://localhost:8000", "grpc"), ("grpc://localhost:8001", "http")):
        result = run(*args_for(command, x), "--url", url, "--protocol", protocol)
        assert result.exit_code == 1, result.output
        assert f"is {'http' if protocol == 'grpc' else 'grpc'} but protocol" in result.output
        assert "make them agree" in result.output


def test_serve_defaults_to_the_same_ports() -> None:
    from packager.commands.serve import serve

    defaults = {p.name: p.default for p in serve.params}
    assert {k: defaults[f"{k}_port"] for k in releases.TRITON_PORTS} == releases.TRITON_PORTS


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, Path]]:
    repo = write_repository(tmp_path_factory.mktemp("urls") / "repo", ("mlp",))
    with LocalServer(repo, startup_timeout_s=120) as server:
        yield server, repo


@pytest.mark.integration
def test_protocol_grpc_alone_calls_the_grpc_port(
    served: tuple[LocalServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server listens on free ports: point the default ports at them (the one home of
    # the numbers), so that "no --url" reaches it the way it reaches localhost:8001 for users.
    server, repo = served
    monkeypatch.setitem(releases.TRITON_PORTS, "http", server.http_port)
    monkeypatch.setitem(releases.TRITON_PORTS, "grpc", server.grpc_port)
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("infer", "mlp", "--input-file", f"input={tmp_path / 'x.npy'}", "--protocol", "grpc",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = np.array(json.loads(result.stdout)["outputs"]["output"]["data"]).reshape(2, 4)
    np.testing.assert_allclose(out, mlp_reference(repo, x), rtol=1e-6)

    result = run("bench", "mlp", "--protocol", "grpc", "--concurrency", "1", "--duration-s", "0.5",
                 "--warmup-s", "0", "--json")  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc["url"] == f"grpc://localhost:{server.grpc_port}"
    # bench's first request (before measuring) reached the server over gRPC; how many more
    # finish inside the window depends on the machine's load, so only errors are counted.
    assert doc["levels"][0]["errors"] == 0 and "cannot reach" not in result.output
