"""TLS for gRPC, with a certificate authority and certificates made in the test (openssl).

The embedded tritonserver serves gRPC over TLS with ``--grpc-use-ssl`` (and checks client
certificates with ``--grpc-use-ssl-mutual``); the client connects with ``grpcs://`` and
:class:`packager.client.TLSOptions`. A client that does not trust the server's certificate, or
speaks plaintext to it, or (mutual TLS) brings no certificate of its own, gets a prompt
ServerUnavailable, never an answer and never a hang. Triton's HTTP endpoint has no TLS of its
own: docs/reliability.md says to put a TLS-terminating proxy in front of it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from packager.client import Client, TLSOptions
from packager.errors import ServerUnavailable
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.client_models import write_repository

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]
X = np.array([[1.0, -2.5]], np.float32)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all
    signed by the CA; plus a second CA that signed nothing of ours."""
    f = {
        n: folder / n
        for n in (
            "ca.key", "ca.crt", "other_ca.key", "other_ca.crt", "server.key", "server.csr",
            "server.crt", "client.key", "client.csr", "client.crt", "san.ext",
        )
    }  # fmt: skip
    for ca in ("ca", "other_ca"):
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(f[f"{ca}.key"]), "-out", str(f[f"{ca}.crt"]),
            "-subj", f"/CN=triton-packager test {ca}",
        )  # fmt: skip
    f["san.ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(f[f"{who}.key"]),
            "-out", str(f[f"{who}.csr"]), "-subj", f"/CN={who}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(f[f"{who}.csr"]), "-CA", str(f["ca.crt"]),
            "-CAkey", str(f["ca.key"]), "-CAcreateserial", "-days", "2",
            "-out", str(f[f"{who}.crt"]), "-extfile", str(f["san.ext"]),
        )  # fmt: skip
    return f


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repository(tmp_path_factory.mktemp("tls") / "repo", ("spare",))


def tls_args(pki: dict[str, Path], mutual: bool) -> list[str]:
    return [
        "--grpc-use-ssl-mutual=true" if mutual else "--grpc-use-ssl=true",
        f"--grpc-server-cert={pki['server.crt']}",
        f"--grpc-server-key={pki['server.key']}",
        f"--grpc-root-cert={pki['ca.crt']}",
    ]


@contextmanager
def refused_quickly(needle: str, timeout_s: float) -> Iterator[None]:
    """The block raises ServerUnavailable naming ``needle``, before the client's ``timeout_s``:
    refused by the handshake, not left to time out (a loaded machine can delay a refusal by
    seconds, so the bound is the timeout itself, not a figure for an idle machine)."""
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable) as info:
        yield
    assert time.monotonic() - t0 < timeout_s
    assert needle in str(info.value), info.value


def test_grpc_over_tls_with_a_certificate_made_here(
    start_server: StartServer, tls_repo: Path, pki: dict[str, Path]
) -> None:
    server: LocalServer = start_server(tls_repo, extra_args=tls_args(pki, mutual=False))
    url = f"grpcs://{server.grpc_url}"
    with Client(url, tls=TLSOptions(ca_file=str(pki["ca.crt"])), timeout_s=10) as c:
        assert c.infer("spare", X)["y"].tolist() == [[2.0, -5.0]]
        assert c.endpoint.tls
    # A client that trusts another CA (or only the system's) does not get an answer.
    for tls in (TLSOptions(ca_file=str(pki["other_ca.crt"])), None):
        with Client(url, tls=tls, timeout_s=10, retries=0) as c, refused_quickly("handshake", 10):
            c.infer("spare", X)
    # Plaintext gRPC to a TLS port: refused, promptly.
    plain = f"grpc://{server.grpc_url}"
    with Client(plain, timeout_s=10, retries=0) as c, refused_quickly("expect TLS", 10):
        c.infer("spare", X)


def test_mutual_tls_needs_a_client_certificate(
    start_server: StartServer, tls_repo: Path, pki: dict[str, Path]
) -> None:
    server: LocalServer = start_server(tls_repo, extra_args=tls_args(pki, mutual=True))
    url = f"grpcs://{server.grpc_url}"
    with (
        Client(url, tls=TLSOptions(ca_file=str(pki["ca.crt"])), timeout_s=10, retries=0) as c,
        refused_quickly("client certificate", 10),
    ):
        c.infer("spare", X)
    signed = TLSOptions(
        ca_file=str(pki["ca.crt"]),
        cert_file=str(pki["client.crt"]),
        key_file=str(pki["client.key"]),
    )
    with Client(url, tls=signed, timeout_s=10) as c:
        assert c.infer("spare", X)["y"].tolist() == [[2.0, -5.0]]
