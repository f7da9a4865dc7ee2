"""Triton's response cache and rate limiter on the real embedded tritonserver.

- a model with a priority queue policy loads on the server and answers at both levels;
- a model built with ``response_cache=True``: repeated requests are answered from the cache
  (hit counters in the statistics and on the metrics port), byte-identical to the first answer;
  LocalServer passed ``--cache-config`` by itself;
- two Python-step models sharing one unit of a rate limiter resource: the models record when
  each execution starts and ends, and no two executions ever overlap.
"""

from __future__ import annotations

import itertools
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from packager.builder import build
from packager.client import Client
from packager.manifest.builder import build_manifest
from packager.serve.server import LocalServer
from packager.spec import QueuePolicy
from tests.conftest import StartServer
from tests.support.polling import settled

torch = pytest.importorskip("torch")

STEP = """
import time


def run(x, context):
    start = time.monotonic_ns()  # one clock for every process on the machine
    time.sleep(0.05)
    end = time.monotonic_ns()
    with open(context.parameters["log"], "a") as f:
        f.write(f"{start} {end}\\n")
    return {"y": x}
"""


def cmdline(server: LocalServer) -> list[str]:
    assert server.pid is not None
    return Path(f"/proc/{server.pid}/cmdline").read_bytes().decode().split("\0")


@pytest.fixture(scope="module")
def server(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> LocalServer:
    root = tmp_path_factory.mktemp("cache")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(2, 16)
    torch.onnx.export(
        net, (x,), str(root / "mlp.onnx"), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False,
    )  # fmt: skip
    repo = root / "repo"
    build(root / "mlp.onnx", name="cached", output=repo, response_cache=True, kind="cpu")
    build(root / "mlp.onnx", name="prioritized", output=repo, kind="cpu", priority_levels=2,
          default_priority_level=2,
          priority_queue_policies=[(1, QueuePolicy("REJECT", 5_000_000, True, 4))])  # fmt: skip
    (root / "step.py").write_text(STEP)
    steps = [
        {
            "name": f"worker_{k}",
            "file": "step.py",
            "function": "run",
            "max_batch_size": 0,
            "inputs": [{"name": "x", "dtype": "FP32", "dims": [1]}],
            "outputs": [{"name": "y", "dtype": "FP32", "dims": [1]}],
            # Two instances each: without the limiter four executions could run at once.
            "instance_groups": [{"kind": "cpu", "count": 2}],
            "parameters": {"log": str(root / f"{k}.log")},
            "rate_limit_resources": ["gate:1"],
        }
        for k in ("a", "b")
    ]
    (root / "deploy.yaml").write_text(yaml.safe_dump({"python_steps": steps}))
    build_manifest(root / "deploy.yaml", repo)
    return start_server(repo)


def test_repeated_requests_are_answered_from_the_cache_byte_identical(server: LocalServer) -> None:
    assert any(a.startswith("--cache-config=local,size=") for a in cmdline(server))
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    with Client(server.http_url) as client:
        before = client.statistics("cached").model_stats[0].inference_stats
        first = client.infer("cached", {"x": x})["y"]
        again = [client.infer("cached", {"x": x})["y"] for _ in range(3)]
        after = settled(
            lambda: client.statistics("cached").model_stats[0].inference_stats,
            lambda s: (
                s.cache_hit.count - before.cache_hit.count >= 3
                and s.cache_miss.count - before.cache_miss.count >= 1
            ),
        )
    assert all(a.tobytes() == first.tobytes() for a in again)
    assert after.cache_hit.count - before.cache_hit.count == 3
    assert after.cache_miss.count - before.cache_miss.count == 1

    def metric_hits() -> int | None:
        url = f"http://{server.metrics_url}/metrics"
        metrics = urllib.request.urlopen(url, timeout=10).read()
        found = re.search(
            rb'nv_cache_num_hits_per_model\{model="cached",version="1"\} (\d+)', metrics
        )
        return int(found.group(1)) if found else None

    hits = settled(metric_hits, lambda n: n is not None and n >= 3)
    assert hits is not None and hits >= 3


def test_models_sharing_one_resource_unit_never_execute_at_once(
    server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert "--rate-limit=execution_count" in cmdline(server)
    with Client(server.http_url) as client:
        config = client.config("worker_a")
    assert [r.name for r in config.instance_group[0].rate_limiter.resources] == ["gate"]

    def call(model: str) -> None:
        with Client(server.http_url) as c:
            c.infer(model, {"x": np.ones(1, np.float32)})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, ["worker_a", "worker_b"] * 6))
    logs = {p.stem: p for p in Path(config.parameters["log"].string_value).parent.glob("*.log")}
    spans = []
    for name, path in logs.items():
        rows = [tuple(map(int, line.split())) for line in path.read_text().splitlines()]
        assert len(rows) == 6, f"worker_{name} ran {len(rows)} times"
        spans += rows
    spans.sort()
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    assert overlaps == [], f"{len(overlaps)} executions overlapped"


def test_a_priority_queue_policy_is_loaded_and_both_levels_answer(server: LocalServer) -> None:
    x = np.ones((2, 16), np.float32)
    with Client(server.http_url) as client:
        db = client.config("prioritized").dynamic_batching  # as the server loaded it
        high = client.infer("prioritized", {"x": x}, priority=1)["y"]
        low = client.infer("prioritized", {"x": x}, priority=2)["y"]
    policy = db.priority_queue_policy[1]
    assert (db.priority_levels, db.default_priority_level) == (2, 2)
    assert (policy.default_timeout_microseconds, policy.max_queue_size) == (5_000_000, 4)
    assert policy.allow_timeout_override
    np.testing.assert_array_equal(high, low)


@pytest.mark.parametrize(
    ("block", "ours"),
    [
        ("sequence_batching { }", "does not support sequence batching"),
        ("model_transaction_policy { decoupled: true }", "does not support decoupled"),
    ],
)
def test_what_build_refuses_the_real_server_refuses_too(
    start_server: StartServer, tmp_path: Path, block: str, ours: str
) -> None:
    """The rules of packager.spec mirror Triton's: the same config, written past our check,
    is refused by the server at load."""
    from packager.errors import ServerError
    from packager.render import parse_config, render_config, spec_from_config

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    torch.onnx.export(net, (torch.randn(1, 4),), str(tmp_path / "m.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                      dynamo=False)  # fmt: skip
    repo = tmp_path / "repo"
    result = build(tmp_path / "m.onnx", name="bad", output=repo, kind="cpu",
                   dynamic_batching=False, response_cache=True)  # fmt: skip
    text = render_config(result.spec) + block + "\n"
    with pytest.raises(Exception, match=ours):
        spec_from_config(parse_config(text)).check()
    (repo / "bad" / "config.pbtxt").write_text(text)
    server = start_server(repo, model_control_mode="explicit")
    with pytest.raises(ServerError, match="failed to load 'bad'"):
        server.load_model("bad")
    assert "Response Cache does not currently support model bad" in server.log_text()
