"""The load generator's pure parts: percentiles and rates, synthetic inputs."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from packager.client.bench import _measure, summarize, synthetic_inputs
from packager.errors import InvalidInput
from tests.unit.test_client_core import MLP, TEXT, TWO


def test_summarize_rates_and_percentiles() -> None:
    per_worker = [[0.001 * i for i in range(1, 51)], [0.001 * i for i in range(51, 101)]]
    r = summarize(per_worker, [1, 2], concurrency=2, duration_s=2.0, batch=4, first_error=["E"])
    assert (r.requests, r.count, r.errors) == (100, 100, 3)
    assert r.requests_per_s == 50 and r.throughput == 200  # samples: requests x batch
    assert r.p50_ms == pytest.approx(50.5) and r.p99_ms == pytest.approx(99.01)
    assert r.p50_ms <= r.p90_ms <= r.p95_ms <= r.p99_ms <= r.max_ms == pytest.approx(100)
    assert r.first_error == "E" and r.to_dict()["p90_ms"] == r.p90_ms


def test_summarize_without_successes() -> None:
    r = summarize([[], []], [5, 0], concurrency=2, duration_s=1.0, batch=1, first_error=[])
    assert r.requests == 0 and r.errors == 5 and r.throughput == 0 and math.isnan(r.p50_ms)


def test_synthetic_inputs_follow_the_model() -> None:
    x = synthetic_inputs(MLP, batch_size=4)["input"]
    assert x.shape == (4, 16) and x.dtype == np.float32
    # A dynamic dim other than the batch has no size to guess: refused, named, and how to give it.
    with pytest.raises(InvalidInput, match=r"input 'a' .* dynamic dims \[-1, 3\].*--shape a:N,3"):
        synthetic_inputs(TWO)
    a = synthetic_inputs(TWO, shapes={"a": (2, 3)})["a"]
    assert a.shape == (2, 3) and a.dtype == np.int64  # no batch dim: the dims as given
    with pytest.raises(InvalidInput, match=r"input 'a' .* takes dims \[-1, 3\]"):
        synthetic_inputs(TWO, shapes={"a": (2, 4)})  # the fixed dim must stay 3
    with pytest.raises(InvalidInput, match="has no input zz"):
        synthetic_inputs(TWO, shapes={"a": (2, 3), "zz": (1,)})
    s = synthetic_inputs(TEXT, batch_size=2, shapes={"s": (1,)})["s"]
    assert s.shape == (2, 1) and s.dtype == object
    with pytest.raises(InvalidInput, match="batch size must be 1 to 8"):
        synthetic_inputs(MLP, batch_size=9)


class _SlowModel:
    """A stand-in for a client whose model answers in 0.3 s: slower than the window asked."""

    def infer(self, model: str, inputs: object, version: str = "") -> dict[str, object]:
        time.sleep(0.3)
        return {}


def test_a_window_no_request_finished_in_stays_open_until_one_does() -> None:
    phases: list[str] = []
    r = _measure(_SlowModel(), "m", {}, "", concurrency=1, duration_s=0.05, warmup_s=0, batch=2,
                 progress=lambda phase, *_: phases.append(phase))  # type: ignore[arg-type]  # fmt: skip
    assert r.requests == 1 and r.errors == 0 and r.duration_s == 0.05
    assert r.window_s >= 0.3 - 0.05  # the first request finished 0.3 s after the window opened
    assert r.throughput == pytest.approx(2 / r.window_s) and r.p50_ms >= 300
    assert "measure" in phases and phases[-1] == "done"
