"""A short soak (a few seconds per protocol) of the load benchmark ``benchmarks/soak.py``:
concurrent callers sharing one client, every answer checked against ONNX Runtime, and not one
error, wrong answer or hung call allowed. The full 60 s soak at concurrency 32 is the benchmark;
its figures are in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.soak import soak
from packager.serve.server import LocalServer
from tests.support.client_models import mlp_reference
from tests.support.servers import group_members

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_short_soak_holds_the_load_with_nothing_lost(
    protocol: str, client_server: LocalServer, client_repo: Path
) -> None:
    x = np.random.default_rng(11).standard_normal((64, 16)).astype(np.float32)
    expected = mlp_reference(client_repo, x)
    url = client_server.http_url if protocol == "http" else f"grpc://{client_server.grpc_url}"
    result = soak(
        url,
        "mlp",
        x,
        expected,
        concurrency=8,
        duration_s=3.0,
        warmup_s=0.5,
        server_pids=lambda: group_members(client_server.pid or 0),
    )
    print(f"\n{protocol}: {result}")
    assert result.protocol == protocol
    assert (result.errors, result.wrong, result.hung) == (0, 0, 0), result.first_error
    # The load was real: more correct answers than the 8 concurrent callers (a count, not a
    # rate: how many fit in 3 s depends on how busy the machine is; rates are the benchmark's).
    assert result.requests > 8
    assert result.server_rss_end_mb > 0


def test_the_soak_notices_wrong_answers(client_server: LocalServer, client_repo: Path) -> None:
    """The checker itself: expectations off by a little are all counted as wrong answers."""
    x = np.random.default_rng(12).standard_normal((8, 16)).astype(np.float32)
    off = mlp_reference(client_repo, x) * (1 + 1e-4)
    result = soak(client_server.http_url, "mlp", x, off, concurrency=2, duration_s=0.5, warmup_s=0)
    assert result.requests == 0 and result.wrong > 0 and result.errors == 0
