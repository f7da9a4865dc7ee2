"""The load generator behind ``triton-packager bench`` (and reused by ``tune``).

Closed loop: ``concurrency`` threads share one :class:`~packager.client.Client` and send the
same request back to back. Requests that finish during the warm-up are discarded; the
measurement window has a fixed length and counts the requests that *finish* inside it
(as perf_analyzer does), so throughput is completions / window length. A window in which no
request finished (a model slower than the window, a loaded machine) stays open until the first
one does: ``window_s`` is then longer than ``duration_s``, and no level reports no figures.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.client.base import version_text
from packager.client.core import ModelFacts
from packager.client.sync import Client
from packager.errors import ClientError, InvalidInput

__all__ = [
    "LoadResult",
    "iter_sweep",
    "plot_levels",
    "run_load",
    "run_sweep",
    "sweep_report",
    "synthetic_inputs",
]

# progress(phase, seconds done in this phase, phase length, requests completed so far)
Progress = Callable[[str, float, float, int], None]


@dataclass(frozen=True)
class LoadResult:
    """One measurement window at one concurrency level."""

    concurrency: int
    duration_s: float  # the window asked for
    requests: int  # successful requests that finished inside the window
    errors: int  # failed requests that finished inside the window
    batch_size: int
    throughput: float  # inferences (samples) per second = requests * batch_size / window_s
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    first_error: str = ""
    sent: tuple[str, ...] = ()  # what each request carried: "name DTYPE [shape]"
    # The window measured: duration_s, or until the first completion when none came within it.
    window_s: float = 0.0

    @property
    def count(self) -> int:
        """Alias of ``requests``."""
        return self.requests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_inputs(
    facts: ModelFacts,
    batch_size: int = 1,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Random inputs of the model's dtypes and shapes.

    A dynamic dim other than the batch has no size to guess (a sequence length, an image
    side): ``shapes`` gives it (dims without the batch dim), else this refuses, because a
    made-up size gives wrong figures or errors from the model.
    """
    rng = np.random.default_rng(seed)
    if facts.max_batch_size > 0 and not 1 <= batch_size <= facts.max_batch_size:
        raise InvalidInput(
            f"batch size must be 1 to {facts.max_batch_size} for model '{facts.name}'; "
            f"got {batch_size}"
        )
    given = dict(shapes or {})
    unknown = sorted(set(given) - set(facts.inputs))
    if unknown:
        raise InvalidInput(
            f"model '{facts.name}' has no input {', '.join(unknown)}; inputs are: "
            f"{', '.join(facts.inputs)}"
        )
    out: dict[str, np.ndarray] = {}
    for spec in facts.inputs.values():
        dims = tuple(int(d) for d in given.get(spec.name, spec.dims))
        fits = len(dims) == len(spec.dims) and all(
            s in (-1, d) for s, d in zip(spec.dims, dims, strict=True)
        )
        if not fits or any(d < 1 for d in dims):
            why = "has dynamic dims" if fits else "takes dims"
            raise InvalidInput(
                f"input '{spec.name}' of model '{facts.name}' {why} {list(spec.dims)} (batch dim "
                f"excluded); give the size to send with --shape {spec.name}:"
                + ",".join("N" if d < 0 else str(d) for d in spec.dims)
                + " (shapes= in Python), or real data with --input"
            )
        shape = (batch_size, *dims) if facts.max_batch_size > 0 else dims
        out[spec.name] = dtypes.random_array(spec.dtype, shape, rng)
    return out


def run_load(
    url: str | None,
    model: str,
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    concurrency: int = 1,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    protocol: str | None = None,
    batch_size: int = 1,
    version: int | str = "",
    timeout_s: float = 60.0,
    progress: Progress | None = None,
    client: Client | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> LoadResult:
    """Measure ``model`` under ``concurrency`` closed-loop workers for ``duration_s`` seconds.

    ``inputs`` default to :func:`synthetic_inputs` with ``batch_size``; when given, they are
    sent as they are (batch dim included). Pass ``client`` to reuse one across levels.
    """
    if concurrency < 1:
        raise InvalidInput(f"concurrency must be at least 1; got {concurrency}")
    if duration_s <= 0 or warmup_s < 0:
        raise InvalidInput("duration_s must be positive and warmup_s 0 or more")
    own = client is None
    c = client if client is not None else Client(url, protocol=protocol, timeout_s=timeout_s)
    try:
        v = version_text(version)
        facts = c._model_facts(model, v)
        if inputs is None:
            inputs = synthetic_inputs(facts, batch_size, shapes=shapes)
        sent_batch = _batch_of(facts, inputs)
        c.infer(model, dict(inputs), version=v)  # fail fast (bad inputs, model not ready)
        result = _measure(c, model, dict(inputs), v, concurrency, duration_s, warmup_s,
                          sent_batch, progress)  # fmt: skip
        sent = tuple(
            f"{n} {dtypes.from_numpy(a.dtype).wire} {list(np.shape(a))}" for n, a in inputs.items()
        )
        return replace(result, sent=sent)
    finally:
        if own:
            c.close()


def iter_sweep(
    url: str | None,
    model: str,
    concurrencies: Sequence[int],
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    protocol: str | None = None,
    batch_size: int = 1,
    version: int | str = "",
    timeout_s: float = 60.0,
    progress: Callable[[int, str, float, float, int], None] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> Iterator[LoadResult]:
    """:func:`run_load` at each concurrency level in turn, over one shared client, yielding each
    level as it finishes (so a caller stopped by Ctrl-C keeps the finished ones).

    ``progress(concurrency, phase, done_s, phase_s, requests)`` reports while measuring.
    """
    if not concurrencies:
        raise InvalidInput("give at least one concurrency level")
    with Client(url, protocol=protocol, timeout_s=timeout_s) as client:
        for level in concurrencies:
            report: Progress | None = None
            if progress is not None:
                report = functools.partial(progress, level)
            yield run_load(
                url,
                model,
                inputs,
                concurrency=level,
                duration_s=duration_s,
                warmup_s=warmup_s,
                batch_size=batch_size,
                version=version,
                progress=report,
                client=client,
                shapes=shapes,
            )


def run_sweep(
    url: str | None,
    model: str,
    concurrencies: Sequence[int],
    inputs: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> list[LoadResult]:
    """Every level of :func:`iter_sweep` (same options), as a list."""
    return list(iter_sweep(url, model, concurrencies, inputs, **options))


def _batch_of(facts: ModelFacts, inputs: Mapping[str, Any]) -> int:
    if facts.max_batch_size <= 0:
        return 1
    first = next(iter(inputs.values()), None)
    return int(np.shape(first)[0]) if first is not None and np.ndim(first) else 1


def _measure(
    client: Client,
    model: str,
    inputs: dict[str, Any],
    version: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    batch: int,
    progress: Progress | None,
) -> LoadResult:
    start = time.perf_counter()
    begin = start + warmup_s
    end = begin + duration_s
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    first_error: list[str] = []
    done = [0] * concurrency
    stop = threading.Event()  # set on Ctrl-C: workers finish their request and return
    window = {"end": end, "counted": 0}  # end moves to the first completion if none came by end
    lock = threading.Lock()

    def inside(t1: float) -> bool:
        """Whether a request finishing at ``t1`` counts (and counts it)."""
        if t1 < begin:
            return False
        with lock:
            if t1 >= window["end"]:
                if window["counted"]:
                    return False
                window["end"] = t1  # nothing finished in time: the window closes with this one
            window["counted"] += 1
            return True

    def worker(i: int) -> None:
        lat = latencies[i]
        infer = client.infer
        clock = time.perf_counter
        while True:
            t0 = clock()
            if stop.is_set() or (t0 >= end and window["counted"]):
                return
            try:
                infer(model, inputs, version=version)
                ok = True
            except ClientError as exc:
                ok = False
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
            t1 = clock()
            done[i] += 1
            if inside(t1):
                if ok:
                    lat.append(t1 - t0)
                else:
                    errors[i] += 1

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    reached = {"warmup": warmup_s <= 0}  # phases drawn at least once

    def draw(now: float) -> None:
        if progress is None:
            return
        if now < begin:
            reached["warmup"] = True
            progress("warmup", now - start, warmup_s, sum(done))
            return
        if not reached["warmup"]:  # a loaded machine woke this thread only after the warm-up
            reached["warmup"] = True
            progress("warmup", warmup_s, warmup_s, sum(done))
        reached["measure"] = True
        progress("measure", min(now, end) - begin, duration_s, sum(done))

    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                draw(time.perf_counter())
                t.join(timeout=0.1)  # wakes every 0.1 s to draw progress
    except BaseException:  # Ctrl-C: the unfinished level is dropped, its workers stopped
        stop.set()
        for t in threads:
            t.join(timeout=5)
        raise
    if progress is not None:
        if not reached.get("measure"):  # every phase is drawn, however late this thread woke
            draw(end)
        progress("done", duration_s, duration_s, sum(done))
    window_s = max(window["end"], end) - begin
    result = summarize(latencies, errors, concurrency, window_s, batch, first_error)
    return replace(result, duration_s=duration_s, window_s=window_s)


def summarize(
    latencies: list[list[float]],
    errors: list[int],
    concurrency: int,
    duration_s: float,
    batch: int,
    first_error: list[str],
) -> LoadResult:
    """Percentiles (ms) and rates from per-worker latency lists (seconds) measured over a
    window of ``duration_s``."""
    lat = np.fromiter((x for per in latencies for x in per), dtype=np.float64)
    n = int(lat.size)
    if n:
        p50, p90, p95, p99 = (float(v) * 1e3 for v in np.percentile(lat, [50, 90, 95, 99]))
        mean, top = float(lat.mean()) * 1e3, float(lat.max()) * 1e3
    else:
        p50 = p90 = p95 = p99 = mean = top = float("nan")
    return LoadResult(
        concurrency=concurrency,
        duration_s=duration_s,
        requests=n,
        errors=int(sum(errors)),
        batch_size=batch,
        throughput=n * batch / duration_s,
        requests_per_s=n / duration_s,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=mean,
        max_ms=top,
        first_error=first_error[0] if first_error else "",
        window_s=duration_s,
    )


def sweep_report(
    model: str,
    url: str,
    results: Sequence[LoadResult],
    concurrencies: Sequence[int],
    interrupted: bool = False,
) -> dict[str, Any]:
    """``bench --json``: one object (docs/cli.md documents its keys); ``levels`` holds the
    finished levels, fewer than ``concurrency`` asked when ``interrupted``."""
    first = results[0] if results else None
    return {
        "model": model,
        "url": url,
        "batch_size": first.batch_size if first else None,
        "duration_s": first.duration_s if first else None,
        "sent": list(first.sent) if first else [],
        "concurrency": list(concurrencies),
        "interrupted": interrupted,
        "levels": [{k: v for k, v in r.to_dict().items() if k != "sent"} for r in results],
    }


def plot_levels(results: Sequence[LoadResult], path: Path, title: str) -> Path:
    """A PNG of throughput vs p99 latency, one point per concurrency level (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        ax.plot([r.p99_ms for r in results], [r.throughput for r in results], marker="o")
        for r in results:
            ax.annotate(f"c={r.concurrency}", (r.p99_ms, r.throughput), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))  # fmt: skip
        ax.set_xlabel("p99 latency (ms)")
        ax.set_ylabel("throughput (infer/s)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
