"""Fixtures of the reliability and security tier (bad inputs, crashes, faults, load, TLS).

Tests here that start the real embedded tritonserver are marked ``integration`` like the
integration tier; at the end of the session a check fails the run if any server is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.serve.server import LocalServer
from tests.conftest import StartServer

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
def client_server(start_server: StartServer, client_repo: Path) -> LocalServer:
    """One server for the tests that leave it running (explicit model control, all loaded)."""
    return start_server(client_repo, model_control_mode="explicit", load_models=["*"])
