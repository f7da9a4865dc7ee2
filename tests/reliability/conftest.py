"""Fixtures of the reliability and security tier (bad inputs, crashes, faults, load, TLS).

Tests here that start the real embedded tritonserver are marked ``integration`` like the
integration tier; at the end of the session a check fails the run if any server is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.serve.server import LocalServer
from tests.support.servers import describe, leftover_processes

StartServer = Callable[..., LocalServer]


@pytest.fixture(scope="session")
def reliability_servers() -> Iterator[StartServer]:
    """Factory: ``start(repo, **LocalServer kwargs)`` -> a started server on free ports.

    Every server it starts is stopped at the end of the session (or earlier by the test);
    then no tritonserver or Python backend stub started by this process may be alive.
    """
    servers: list[LocalServer] = []

    def start(repository: str | os.PathLike[str], **kwargs: Any) -> LocalServer:
        kwargs.setdefault("startup_timeout_s", 120.0)  # two cores shared with other work
        server = LocalServer(repository, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop(grace_s=5.0)
    pids = [s.pid for s in servers if s.pid is not None]
    deadline = time.monotonic() + 5.0
    left = leftover_processes(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftover_processes(pids)
    if left:
        pytest.fail("tritonserver processes left behind:\n" + describe(left))


# A batching model with two inputs of different dtypes, one with a dynamic dim: the shapes
# the client must check together (same batch size on every input).
PAIR_CONFIG = """\
name: "pair"
backend: "python"
max_batch_size: 8
input [ { name: "a" data_type: TYPE_FP32 dims: [ 3 ] },
        { name: "b" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
PAIR_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "a").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "b").as_numpy()
            s = a.sum(axis=1, keepdims=True) + b.sum(axis=1, keepdims=True).astype(np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("s", s)]))
        return out
"""


@pytest.fixture(scope="session")
def client_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client test models (tests/support/client_models.py) plus ``pair``."""
    from tests.support.client_models import write_repository

    repo = write_repository(
        tmp_path_factory.mktemp("reliability") / "repo",
        ("mlp", "slow", "spare", "echo", "addsub"),
        mlp_instances=2,
    )
    (repo / "pair" / "1").mkdir(parents=True)
    (repo / "pair" / "config.pbtxt").write_text(PAIR_CONFIG)
    (repo / "pair" / "1" / "model.py").write_text(PAIR_PY)
    return repo


@pytest.fixture(scope="session")
def client_server(reliability_servers: StartServer, client_repo: Path) -> LocalServer:
    """One server for the tests that leave it running (explicit model control, all loaded)."""
    return reliability_servers(client_repo, model_control_mode="explicit", load_models=["*"])
