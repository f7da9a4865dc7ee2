"""A stand-in load generator for :mod:`packager.tune`, used only while ``packager.client.run_load``
(the project's shared load generator, also behind ``bench``) is not installed.

Closed loop: ``concurrency`` threads, each with its own HTTP client, send one batch-1 request
after another; requests that finish during the warm-up are not counted.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from packager import dtypes
from packager.tune_search import Point
from packager.tune_server import LoadJob


def run_job(job: LoadJob) -> Point:
    """Measure ``job``; latencies of successful requests only, errors counted."""
    import tritonclient.http as httpclient

    inputs = []
    for name, array in job.inputs.items():
        wire = dtypes.from_numpy(array.dtype).wire
        inp = httpclient.InferInput(name, list(array.shape), wire)
        inp.set_data_from_numpy(array, binary_data=True)
        inputs.append(inp)
    begin = time.monotonic() + job.warmup_s
    end = begin + job.duration_s
    latencies: list[list[float]] = [[] for _ in range(job.concurrency)]
    errors = [0] * job.concurrency

    def worker(i: int) -> None:
        client = httpclient.InferenceServerClient(
            job.url, connection_timeout=60, network_timeout=60
        )
        try:
            while True:
                t0 = time.monotonic()
                if t0 >= end:
                    return
                try:
                    client.infer(job.model, inputs)
                    ok = True
                except Exception:  # any failure counts as an error of the window
                    ok = False
                t1 = time.monotonic()
                if t0 >= begin and t1 <= end:
                    if ok:
                        latencies[i].append(t1 - t0)
                    else:
                        errors[i] += 1
        finally:
            client.close()

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(job.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array([x for per in latencies for x in per]) * 1000.0
    if lat.size == 0:
        return Point(job.concurrency, 0.0, 0.0, 0.0, 0.0, 0.0, 0, sum(errors))
    p50, p90, p95, p99 = (float(v) for v in np.percentile(lat, [50, 90, 95, 99]))
    return Point(
        job.concurrency, lat.size / job.duration_s, p50, p90, p95, p99, int(lat.size), sum(errors)
    )
