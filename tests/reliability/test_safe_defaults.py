"""Safe defaults: what a server started without options exposes, and what ``serve`` refuses.

- ``LocalServer`` and ``serve`` bind loopback only unless told otherwise (checked in the
  kernel's socket table, not in our own arguments);
- model control is "none" unless asked: a client cannot unload (or load) models;
- ``serve`` verifies every SHA256SUMS before starting and refuses a repository whose files
  changed since the build, unless ``--no-checksums``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from packager.builder import build
from packager.cli import main
from packager.client import Client
from packager.errors import InferenceServerError
from packager.repository import verify_repository
from packager.serve.server import LocalServer

ROOT = Path(__file__).resolve().parents[2]


def listening(ports: set[int]) -> dict[int, set[str]]:
    """Port -> local addresses of the TCP sockets listening on it (from /proc/net/tcp{,6})."""
    found: dict[int, set[str]] = {p: set() for p in ports}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port = local.split(":")
            if state != "0A" or int(port, 16) not in ports:  # 0A = LISTEN
                continue
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, len(addr), 8))
            ip_obj = ipaddress.ip_address(raw)
            mapped = getattr(ip_obj, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
            ip = str(mapped or ip_obj)
            found[int(port, 16)].add(ip)
    return found


@pytest.fixture
def built(tmp_path: Path, model_files: dict[str, Path]) -> Path:
    repo = tmp_path / "repo"
    build(str(model_files["mlp"]), name="mlp", output=repo, backend="python")
    return repo


TAMPERING = {
    "changed artifact": lambda v: v.joinpath("model.onnx").write_bytes(
        v.joinpath("model.onnx").read_bytes()[:-1] + b"\0"
    ),
    "removed file": lambda v: v.joinpath("build.json").unlink(),
    "added file": lambda v: v.joinpath("extra.py").write_text("print('hello')\n"),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_serve_refuses_a_repository_changed_since_the_build(built: Path, how: str) -> None:
    TAMPERING[how](built / "mlp" / "1")
    result = CliRunner().invoke(main, ["serve", str(built), "--http-port", "0"])
    assert result.exit_code == 1, result.output
    assert "changed since it was built" in result.output
    assert {"changed artifact": "checksum mismatch", "removed file": "missing",
            "added file": "not listed"}[how] in result.output  # fmt: skip
    assert "--no-checksums" in result.output
    assert "starting tritonserver" not in result.output  # refused before any server


def test_verification_covers_only_what_will_be_loaded(built: Path, tmp_path: Path) -> None:
    (built / "mlp" / "1" / "extra.py").write_text("x = 1\n")
    problems, _ = verify_repository(built)
    assert problems == ["mlp/1/extra.py: not listed in SHA256SUMS (added after build)"]
    assert verify_repository(built, models=["other"]) == ([], [])
    hand_made = tmp_path / "hand" / "m" / "1"
    hand_made.mkdir(parents=True)
    (hand_made.parent / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    assert verify_repository(tmp_path / "hand") == ([], ["m/", "m/1/"])


@pytest.mark.integration
def test_serve_defaults_loopback_and_no_model_control(built: Path) -> None:
    """``serve`` with default options (--no-checksums on a changed file, to show it works):
    every port listens on 127.0.0.1 only, and clients cannot unload models."""
    (built / "mlp" / "1" / "build.json").write_text("{}\n")
    cmd = [sys.executable, "-m", "packager.cli", "serve", str(built), "--no-checksums",
           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        banner = ""
        for line in proc.stdout:
            banner += line
            if "press Ctrl-C" in line:
                break
        assert "is ready" in banner, banner + (proc.stderr.read() if proc.stderr else "")
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", banner)}
        assert len(ports) == 3, banner
        table = listening(ports)
        assert all(table[p] == {"127.0.0.1"} for p in ports), table
        http = next(f"127.0.0.1:{p}" for p in ports if f"http://127.0.0.1:{p}\n" in banner)
        with Client(http, timeout_s=10) as c:
            with pytest.raises(InferenceServerError, match="--model-control-mode explicit"):
                c.unload_model("mlp")
            with pytest.raises(InferenceServerError, match="does not let clients load"):
                c.load_model("mlp")
            assert c.is_ready("mlp")
            assert c.infer("mlp", np.zeros((1, 16), np.float32))["output"].shape == (1, 4)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.integration
def test_local_server_binds_loopback_by_default(client_server: LocalServer) -> None:
    assert client_server.host == "127.0.0.1"
    ports = {client_server.http_port, client_server.grpc_port, client_server.metrics_port}
    table = listening(ports)
    assert all(table[p] == {"127.0.0.1"} for p in ports), table
