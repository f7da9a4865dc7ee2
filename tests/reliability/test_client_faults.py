"""The client under faults, against the real embedded tritonserver, in all four modes
(HTTP and gRPC, Client and AsyncClient):

- the server is SIGKILLed during streams of requests: every call in flight fails within its
  timeout with ServerUnavailable, nothing hangs; restarted on the same ports, the same client
  objects recover and answer correctly;
- the server is frozen (SIGSTOP): calls end with InferenceTimeout at their timeout; thawed, the
  clients go on;
- a slow model: concurrent calls time out each on its own, other models keep answering;
- a model unloaded mid-traffic: callers see ModelNotReady (nothing else), and answers again
  once it is loaded;
- oversized requests: a clear error before sending (or from the server), big but valid ones
  served intact, and the client and server stay up.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packager.client.core import Prepared
from packager.errors import (
    ClientError,
    InferenceTimeout,
    InvalidInput,
    ServerUnavailable,
)
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.client_facade import MODES, client_for
from tests.support.client_models import mlp_reference, write_repository
from tests.support.polling import settled
from tests.support.timing import hung_after

pytestmark = pytest.mark.integration

# The clients' timeout: calls that must fail fast (server killed or gone) are asserted to end
# before it, so it is long enough that a loaded machine cannot reach it by delay alone.
TIMEOUT_S = 15.0
X = np.random.default_rng(7).standard_normal((1, 16)).astype(np.float32)


@dataclass
class Worker:
    """One caller in a stream: calls until stopped or until its first error."""

    mode: str
    call: Callable[[], Any]
    model: str = "mlp"
    ok: int = 0
    error: BaseException | None = None
    error_call_s: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.call()
                self.ok += 1
            except BaseException as exc:  # judged by the test
                self.error, self.error_call_s = exc, time.monotonic() - t0
                return


@contextmanager
def clients(server: LocalServer, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """One client per mode (http-sync, http-async, grpc-sync, grpc-async) on ``server``."""
    with ExitStack() as stack:
        yield {
            m: stack.enter_context(client_for(m, server.http_url, server.grpc_url, **kwargs))
            for m in MODES
        }


def start_workers(workers: list[Worker], stop: threading.Event) -> None:
    for w in workers:
        w.thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
        w.thread.start()


def join_all(workers: list[Worker], within_s: float) -> float:
    """Wait for every worker; fail if one is still running after ``within_s``."""
    t0 = time.monotonic()
    for w in workers:
        assert w.thread is not None
        w.thread.join(max(0.0, within_s - (time.monotonic() - t0)))
    hung = [w.mode for w in workers if w.thread is not None and w.thread.is_alive()]
    assert not hung, f"calls still running {within_s} s after the fault: {hung}"
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models only: this server is started twice, and every model costs start-up time."""
    return write_repository(tmp_path_factory.mktemp("faults") / "repo", ("mlp", "slow"))


def test_server_killed_mid_stream_then_restarted_on_the_same_ports(
    start_server: StartServer, small_repo: Path
) -> None:
    client_repo = small_repo
    server = start_server(client_repo, model_control_mode="explicit", load_models=["*"])
    ports = {"http_port": server.http_port, "grpc_port": server.grpc_port}
    ports["metrics_port"] = server.metrics_port
    want = mlp_reference(client_repo, X)
    with clients(server, timeout_s=TIMEOUT_S) as apis:
        workers = []
        for mode, api in apis.items():
            workers += [Worker(mode, lambda a=api: a.infer("mlp", X)) for _ in range(3)]
            # A slow request is certainly inside the server when it dies.
            slow = np.array([0.4], np.float32)
            workers.append(Worker(mode, lambda a=api, s=slow: a.infer("slow", s), "slow"))
        stop = threading.Event()
        start_workers(workers, stop)
        # Every mlp stream has been answered (however long a loaded machine takes to get there).
        settled(lambda: [w.ok for w in workers if w.model == "mlp"], lambda oks: min(oks) > 0)
        assert all(w.error is None for w in workers), [w.error for w in workers if w.error]
        assert all(w.ok > 0 for w in workers if w.model == "mlp")

        os.killpg(server.pid or 0, signal.SIGKILL)
        took = join_all(workers, within_s=hung_after(TIMEOUT_S))
        server.stop(grace_s=1)
        for w in workers:
            assert isinstance(w.error, ServerUnavailable), (w.mode, repr(w.error))
            assert w.error_call_s < TIMEOUT_S, (w.mode, w.error_call_s)
            assert "cannot reach" in str(w.error) or "closed the connection" in str(w.error)
        print(f"\n{len(workers)} streams after SIGKILL: all ServerUnavailable within {took:.2f} s")

        # Calls during the outage (2 s of them) fail fast too, and say why.
        outage_end = time.monotonic() + 2.0
        while time.monotonic() < outage_end:
            for mode, api in apis.items():
                t0 = time.monotonic()
                with pytest.raises(ServerUnavailable):
                    api.infer("mlp", X)
                assert time.monotonic() - t0 < TIMEOUT_S, mode
            time.sleep(0.1)

        start_server(client_repo, model_control_mode="explicit", load_models=["*"], **ports)
        for mode, api in apis.items():  # the same client objects, no reconnect by the caller
            t0, failed = time.monotonic(), 0
            while True:
                try:
                    got = api.infer("mlp", X)["output"]
                    break
                except ServerUnavailable:
                    failed += 1
                    # gRPC channels back off between reconnects: bounded at 1 s by the client
                    # (gRPC's own default grows to 120 s), plus what a loaded machine adds.
                    limit = hung_after(1.0)
                    assert time.monotonic() - t0 < limit, f"{mode} did not recover in {limit} s"
                    time.sleep(0.1)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            print(f"{mode}: recovered after the restart ({failed} failed calls first)")


def wait_for_state(pid: int, state: str, within_s: float = 5.0) -> None:
    """Wait until /proc says process ``pid`` is in ``state`` (e.g. "T": stopped)."""
    deadline = time.monotonic() + within_s
    while True:
        now = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if now == state:
            return
        assert time.monotonic() < deadline, f"process {pid} is {now!r}, not {state!r}"
        time.sleep(0.01)


def test_frozen_server_gives_inference_timeout_and_the_clients_go_on(
    client_server: LocalServer,
) -> None:
    with clients(client_server, timeout_s=TIMEOUT_S) as apis:
        for api in apis.values():
            api.infer("mlp", X)  # connections and model facts in place
        pid = client_server.pid or 0
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for_state(pid, "T")  # delivered: every thread of the server is stopped
            for mode, api in apis.items():
                t0 = time.monotonic()
                with pytest.raises(InferenceTimeout, match="timeout"):
                    api.infer("mlp", X, timeout_s=0.5)
                    pytest.fail(f"{mode}: answered by a stopped server?")
                took = time.monotonic() - t0
                # Not before the timeout (it is the timeout that ended it), and not hung.
                assert 0.45 < took < hung_after(0.5), (mode, took)
        finally:
            os.kill(client_server.pid or 0, signal.SIGCONT)
        want = mlp_reference(client_server.repository, X)
        for api in apis.values():
            np.testing.assert_allclose(api.infer("mlp", X)["output"], want, rtol=1e-5, atol=1e-6)


def test_slow_model_times_out_each_concurrent_call_and_others_keep_answering(
    client_server: LocalServer,
) -> None:
    with clients(client_server, timeout_s=TIMEOUT_S) as apis:
        # 8 calls of 1 s each on one instance: the last queued would wait 7 s for its turn.
        slow = np.array([1.0], np.float32)
        workers = [
            Worker(mode, lambda a=api: a.infer("slow", slow, timeout_s=0.15), "slow")
            for mode, api in apis.items()
            for _ in range(2)
        ]
        start_workers(workers, threading.Event())
        join_all(workers, within_s=hung_after(0.15))
        for w in workers:
            assert isinstance(w.error, InferenceTimeout), (w.mode, repr(w.error))
            # Each ends at its own timeout, not after the calls queued ahead of it (up to 7 s).
            assert w.error_call_s < hung_after(0.15), (w.mode, w.error_call_s)
        # A slow model busy for a long while does not hold up the others: every mlp call is
        # answered while that slow call is still running (ordering, not a wall-clock figure).
        busy: list[Any] = []
        three_s = np.array([3.0], np.float32)
        thread = threading.Thread(
            target=lambda: busy.append(apis["http-sync"].infer("slow", three_s, timeout_s=60)),
            daemon=True,
        )
        thread.start()
        for api in apis.values():
            np.testing.assert_allclose(
                api.infer("mlp", X, timeout_s=TIMEOUT_S)["output"],
                mlp_reference(client_server.repository, X),
                rtol=1e-5,
                atol=1e-6,
            )
        assert thread.is_alive() and busy == [], busy
        thread.join(60)
        assert [b["slept"].tolist() for b in busy] == [[3.0]]


def test_model_unloaded_mid_traffic_gives_model_not_ready_only(
    client_server: LocalServer,
) -> None:
    x = np.ones((1, 2), np.float32)
    with clients(client_server, timeout_s=TIMEOUT_S) as apis:
        seen: dict[str, list[BaseException]] = {m: [] for m in apis}
        ok = dict.fromkeys(apis, 0)
        stop = threading.Event()

        def stream(mode: str, api: Any) -> None:
            while not stop.is_set():
                try:
                    assert api.infer("spare", x)["y"].tolist() == [[2.0, 2.0]]
                    ok[mode] += 1
                except ClientError as exc:
                    seen[mode].append(exc)
                time.sleep(0.005)

        threads = [
            threading.Thread(target=stream, args=(m, a), daemon=True) for m, a in apis.items()
        ]
        for t in threads:
            t.start()
        try:
            # Each phase lasts until every stream has seen it (answers, then errors, then
            # answers again), not a fixed time a loaded machine may not fill.
            before = settled(lambda: dict(ok), lambda n: min(n.values()) > 0)
            apis["http-sync"].unload_model("spare")
            during = settled(
                lambda: {m: len(e) for m, e in seen.items()}, lambda n: min(n.values()) > 0
            )
            apis["http-sync"].load_model("spare")
            apis["http-sync"].wait_until_ready("spare", timeout_s=30)
            resumed = dict(ok)
            settled(lambda: dict(ok), lambda n: all(n[m] > resumed[m] for m in n))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        for mode in apis:
            assert before[mode] > 0
            assert during[mode] > 0, f"{mode} never saw the model unloaded"
            kinds = {type(e).__name__ for e in seen[mode]}
            assert kinds == {"ModelNotReady"}, (mode, kinds, seen[mode][:2])
            assert "load it" in str(seen[mode][0])
            assert ok[mode] > resumed[mode], f"{mode} did not get answers after the reload"


def test_oversized_requests_get_a_clear_error_and_everything_stays_up(
    client_server: LocalServer,
) -> None:
    with clients(client_server, timeout_s=60) as apis:
        for mode, api in apis.items():
            with pytest.raises(InvalidInput, match=r"batch size 100000; the model takes 1 to 64"):
                api.infer("mlp", np.zeros((100_000, 16), np.float32))
            with pytest.raises(InvalidInput, match="16"):
                api.infer("mlp", np.zeros((1, 16_000), np.float32))
            with pytest.raises(InvalidInput, match="INPUT0"):
                api.infer(
                    "addsub",
                    {"INPUT0": np.zeros(4_000_000, np.float32), "INPUT1": np.zeros(4, np.float32)},
                )
            # Past the client's checks: 8 MB of data for a 4-float input; the server refuses.
            big = Prepared("INPUT0", "FP32", (4,), np.zeros(2 << 20, np.float32))
            small = Prepared("INPUT1", "FP32", (4,), np.zeros(4, np.float32))
            with pytest.raises(ClientError) as info:
                api._send(api._codec.infer("addsub", "", [big, small]))
            assert "INPUT0" in str(info.value), (mode, info.value)
            # Big but valid: 16 MB of text comes back intact (nothing truncated, nothing lost).
            text = np.array([[b"ab" * (8 << 20)]], dtype=object)
            out = api.infer("echo", text)["upper"]
            assert out.shape == (1, 1) and out[0, 0] == b"AB" * (8 << 20), mode
            assert api.is_live()
            np.testing.assert_allclose(
                api.infer("mlp", X)["output"],
                mlp_reference(client_server.repository, X),
                rtol=1e-5,
                atol=1e-6,
            )
    assert client_server.is_running
