"""TLS: grpcs:// to a tritonserver serving gRPC over TLS (a self-signed certificate made with
the openssl command), and the errors when the scheme and the server disagree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.client import AsyncClient, Client, TLSOptions
from packager.errors import ServerUnavailable
from tests.support.client_models import write_repository

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

X = np.ones((1, 2), np.float32)


@pytest.fixture(scope="module")
def tls_server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = start_server(
        write_repository(tmp / "repo", ("spare",)),
        extra_args=[
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={cert}",
            f"--grpc-server-key={key}",
        ],
    )
    return server, cert


def test_grpcs_with_the_servers_certificate(tls_server: tuple[Any, Path]) -> None:
    server, cert = tls_server
    url = f"grpcs://localhost:{server.grpc_port}"
    with Client(url, tls=TLSOptions(ca_file=str(cert))) as client:
        assert client.infer("spare", X)["y"].tolist() == [[2, 2]]

    async def call() -> Any:
        async with AsyncClient(url, tls=TLSOptions(ca_file=str(cert))) as client:
            return await client.infer("spare", X)

    import asyncio

    assert asyncio.run(call())["y"].tolist() == [[2, 2]]


def test_untrusted_certificate_or_plain_grpc_is_server_unavailable(
    tls_server: tuple[Any, Path],
) -> None:
    server, _ = tls_server
    # The self-signed certificate is not among the system CAs; plain gRPC cannot talk to TLS.
    for url in (f"grpcs://localhost:{server.grpc_port}", f"grpc://127.0.0.1:{server.grpc_port}"):
        client = Client(url, retries=0, timeout_s=10)
        with client, pytest.raises(ServerUnavailable):
            client.infer("spare", X)


def test_https_to_a_plain_http_port_names_tls(tls_server: tuple[Any, Path]) -> None:
    server, _ = tls_server
    client = Client(f"https://{server.http_url}", retries=0, timeout_s=10)
    with client, pytest.raises(ServerUnavailable, match="TLS handshake"):
        client.metadata("spare")
