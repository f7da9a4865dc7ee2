"""``packager.tune.run``: measure serving configurations on a real Triton server and keep the best.

::

    result = tune("model_repository/mlp", concurrency=(1, 8, 32), max_latency_ms=20, budget_s=300)
    result.winner.candidate   # Candidate(instances=2, max_batch_size=32, dynamic_batching=True, ...)

Candidates (instance count, max batch size, dynamic batching on/off and its queue delay) are
loaded one at a time with a config override in explicit model-control mode, warmed up, measured
at each concurrency with the project's load generator and unloaded (:mod:`packager.tune.server`),
so the repository is never written while searching. Search and objective live in
:mod:`packager.tune.search`; reports in :mod:`packager.tune.report`; ``apply=True`` writes the
winner into config.pbtxt atomically (:mod:`packager.tune.apply`). Without ``url`` the embedded
server is started on the model's repository.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.errors import PackagerError, TuneError
from packager.tune.search import (
    SEARCHES,
    Budget,
    Candidate,
    Objective,
    Point,
    SearchSpace,
    Trial,
    check_options,
    pick_winner,
    run_search,
)
from packager.tune.server import LoadFn, LoadJob, ServerTarget, current_candidate

__all__ = [
    "SEARCHES",
    "Candidate",
    "Objective",
    "Point",
    "SearchSpace",
    "Trial",
    "TuneResult",
    "tune",
]

DEFAULT_INSTANCES = (1, 2, 4)
DEFAULT_MAX_BATCH_SIZES = (8, 32, 128)
DEFAULT_QUEUE_DELAYS_US = (0, 200, 1000)
# Seconds to load a candidate before the first one has been timed (Python-backend instances
# start a process each).
LOAD_ESTIMATE_S = 5.0


@dataclass
class TuneResult:
    """Everything a tuning run found; ``to_dict()`` is the JSON report."""

    model: str
    model_dir: Path
    objective: Objective
    search: str
    concurrency: tuple[int, ...]
    space: SearchSpace
    start: Candidate
    trials: list[Trial]
    winner: Trial | None
    stopped: str  # "done" or "budget"
    skipped: int
    elapsed_s: float
    url: str
    embedded: bool
    server_version: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    reports: dict[str, Path] = field(default_factory=dict)
    applied_config: str | None = None  # the new config.pbtxt text after --apply
    warnings: list[str] = field(default_factory=list)
    device: str = "cpu"  # where the server ran the candidates: "cpu" or "gpu" (its served config)

    @property
    def baseline(self) -> Trial | None:
        """The trial of the model's current config (snapped to the search grid)."""
        start = self.space.snap(self.start)
        return next((t for t in self.trials if t.candidate == start), None)

    def summary(self) -> str:
        """What was chosen and why, in a few lines."""
        head = (
            f"{len(self.trials)} candidate(s) measured on {self.device.upper()} in "
            f"{self.elapsed_s:.0f} s"
        ) + (
            f"; budget reached, {self.skipped} left unmeasured" if self.stopped == "budget" else ""
        )
        if self.winner is None:
            return (
                f"{head}\nno candidate met the objective ({self.objective.describe()})"
                + _closest(self)
            )
        best = self.objective.best_point(self.winner)
        assert best is not None
        lines = [
            head,
            f"winner: {self.winner.candidate.label} - {best.throughput:.1f} infer/s, "
            f"p99 {best.p99_ms:.2f} ms at concurrency {best.concurrency}",
        ]
        base = self.baseline
        if base is not None and base is not self.winner:
            same = next((p for p in base.points if p.concurrency == best.concurrency), None)
            if same is not None and same.throughput > 0:
                lines.append(
                    f"current config {base.candidate.label} at concurrency {best.concurrency}: "
                    f"{same.throughput:.1f} infer/s, p99 {same.p99_ms:.2f} ms "
                    f"({best.throughput / same.throughput:.2f}x throughput)"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        best = self.objective.best_point(self.winner) if self.winner else None
        return {
            "model": self.model,
            "model_dir": str(self.model_dir),
            "objective": {
                "max_latency_ms": self.objective.max_latency_ms,
                "min_throughput": self.objective.min_throughput,
                "description": self.objective.describe(),
            },
            "search": self.search,
            "device": self.device,
            "concurrency": list(self.concurrency),
            "space": {
                "instances": list(self.space.instances),
                "max_batch_size": list(self.space.max_batch_sizes),
                "queue_delay_us": list(self.space.queue_delays_us),
                "batching": self.space.batching,
            },
            "settings": self.settings,
            "start": self.start.to_dict(),
            "winner": None
            if self.winner is None
            else {**self.winner.candidate.to_dict(), "point": best.to_dict() if best else None},
            "stopped": self.stopped,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 2),
            "server": {"url": self.url, "embedded": self.embedded, "version": self.server_version},
            "machine": self.machine,
            "trials": [t.to_dict(self.objective) for t in self.trials],
            "reports": {k: str(v) for k, v in self.reports.items()},
            "applied": self.applied_config is not None,
            "warnings": self.warnings,
        }


def _closest(result: TuneResult) -> str:
    measured = [(p, t) for t in result.trials for p in t.points if p.requests and not p.errors]
    if not measured:
        return "; no candidate could be measured (see the errors in the report)"
    p, t = min(measured, key=lambda pt: pt[0].p99_ms)
    return (
        f"; the lowest p99 was {p.p99_ms:.2f} ms ({t.candidate.label} at concurrency "
        f"{p.concurrency}, {p.throughput:.1f} infer/s): relax --max-latency-ms / "
        "--min-throughput or measure lower concurrencies"
    )


def default_load() -> LoadFn:
    """The project's load generator (:func:`packager.client.run_load`, also behind ``bench``)."""
    from packager.client import run_load

    def load(job: LoadJob) -> Point:
        # A fresh client per window: the client caches model facts, and max_batch_size
        # changes from one candidate to the next.
        r = run_load(
            job.url,
            job.model,
            dict(job.inputs),
            concurrency=job.concurrency,
            duration_s=job.duration_s,
            warmup_s=job.warmup_s,
            protocol=job.protocol,
        )
        if not r.requests:  # percentiles of nothing are NaN, which JSON cannot carry
            return Point(job.concurrency, 0.0, 0.0, 0.0, 0.0, 0.0, 0, r.errors, r.first_error)
        return Point(
            job.concurrency,
            r.throughput,
            r.p50_ms,
            r.p90_ms,
            r.p95_ms,
            r.p99_ms,
            r.requests,
            r.errors,
            r.first_error,
        )

    return load


def search_space(
    config: Any,
    start: Candidate,
    instances: Sequence[int] = (),
    max_batch_sizes: Sequence[int] = (),
    queue_delays_us: Sequence[int] = (),
) -> SearchSpace:
    """The knobs' values: given ones, else defaults plus the model's current value."""
    batching = config.max_batch_size > 0
    if not batching and (max_batch_sizes or queue_delays_us):
        raise TuneError(
            f"model '{config.name}' does not batch (max_batch_size 0), so --max-batch-size and "
            "--queue-delay-us cannot be tuned; rebuild it with --max-batch-size N (and a dynamic "
            "batch dimension) to tune batching"
        )
    if len(config.instance_group) > 1 and instances:
        raise TuneError(
            f"model '{config.name}' has {len(config.instance_group)} instance groups; tune sets "
            "the count of a single group. Merge them into one, or drop --instances"
        )
    if len(config.instance_group) > 1:
        inst: tuple[int, ...] = (start.instances,)
    else:
        inst = tuple(instances) or tuple(sorted({*DEFAULT_INSTANCES, start.instances}))
    if batching:
        mbs = tuple(max_batch_sizes) or tuple(
            sorted({*DEFAULT_MAX_BATCH_SIZES, start.max_batch_size})
        )
        delays = tuple(queue_delays_us) or tuple(
            sorted({*DEFAULT_QUEUE_DELAYS_US, start.queue_delay_us})
        )
    else:
        mbs, delays = (0,), (0,)
    return SearchSpace(inst, mbs, delays, batching, config.max_batch_size)


def tune(
    model_dir: str | Path,
    *,
    concurrency: Sequence[int] = (1, 8, 32),
    max_latency_ms: float | None = None,
    min_throughput: float | None = None,
    budget_s: float = 300.0,
    instances: Sequence[int] = (),
    max_batch_sizes: Sequence[int] = (),
    queue_delays_us: Sequence[int] = (),
    search: str = "quick",
    url: str | None = None,
    output_dir: str | Path | None = None,
    apply: bool = False,
    apply_cpu_figures: bool = False,
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
    protocol: str = "http",
    load: LoadFn | None = None,
    progress: Callable[[str], None] | None = None,
    startup_timeout_s: float = 120.0,
) -> TuneResult:
    """Search serving configurations of the model in ``model_dir`` and report (and apply) the best.

    Raises :class:`TuneError` for bad options, and after writing the reports when ``apply`` is
    asked but no candidate met the objective. Ctrl-C (KeyboardInterrupt) stops the search, unloads
    the candidate, stops the embedded server and propagates; the repository is left unchanged.
    """
    from packager.repository import read_config
    from packager.tune.apply import apply_candidate
    from packager.tune.report import machine, write_reports

    started = time.monotonic()
    say = progress or (lambda _msg: None)
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if config.name != model_dir.name:
        raise TuneError(
            f"config name {config.name!r} differs from the folder {model_dir.name!r}; "
            "run `triton-packager validate` first"
        )
    if config.platform == "ensemble":
        raise TuneError(f"'{config.name}' is an ensemble: tune each of its member models instead")
    if config.model_transaction_policy.decoupled:
        # Before any server starts: Triton answers request/response calls to a decoupled model
        # with errors (HTTP 501), so every candidate would measure nothing.
        raise TuneError(
            f"model '{config.name}' is decoupled (it streams its responses); tune measures "
            "request/response throughput and cannot measure it. Nothing was measured; for "
            "a generative model see `triton-packager generate --stream` and "
            "benchmarks/generation.py"
        )
    if config.HasField("sequence_batching"):
        # Every request of a sequence model needs a sequence id, and its batches are the
        # sequence batcher's: tune's batch-1 requests and dynamic batching candidates fit neither.
        raise TuneError(
            f"model '{config.name}' uses the sequence batcher (a stateful model); tune measures "
            "independent requests with dynamic batching and cannot measure it. Nothing was "
            "measured; set --instances and --max-candidate-sequences with `build` "
            "(docs/stateful.md)"
        )
    if search not in SEARCHES:
        raise TuneError(f"--search {search!r} is not one of: {', '.join(SEARCHES)}")
    concurrency = tuple(sorted(set(concurrency)))
    check_options(concurrency, budget_s, duration_s, warmup_s, max_latency_ms, min_throughput)
    objective = Objective(max_latency_ms, min_throughput)
    start = current_candidate(config)
    space = search_space(config, start, instances, max_batch_sizes, queue_delays_us)
    out_dir = Path(output_dir) if output_dir is not None else Path.cwd() / f"tune-{config.name}"
    if out_dir.resolve().is_relative_to(model_dir.resolve().parent):
        raise TuneError(
            f"--output-dir {out_dir} is inside the model repository {model_dir.parent}; reports "
            "must not change the repository (Triton and validate would see a stray folder). "
            "Choose a folder outside it"
        )
    load_fn = load or default_load()

    server = None
    if url is None:
        from packager.serve.server import LocalServer

        say(f"starting the embedded Triton server on {model_dir.parent} (explicit model control)")
        server = LocalServer(
            model_dir.parent, model_control_mode="explicit", startup_timeout_s=startup_timeout_s
        ).start()
        url = server.http_url
    target = ServerTarget(
        url,
        model_dir,
        config,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        load=load_fn,
        protocol=protocol,
    )
    warnings: list[str] = []
    apply_error: PackagerError | None = None
    try:
        target.open()
        device = measured_device(target.served)
        gpu_config = any(g.kind == g.KIND_GPU for g in config.instance_group)
        if gpu_config and device == "cpu":
            note = (
                f"model '{config.name}' is configured for GPUs (KIND_GPU) but the server runs "
                "it on the CPU (no GPU here): these are CPU figures, not what its GPUs will do"
            )
            if apply and not apply_cpu_figures:
                raise TuneError(
                    f"{note}; refusing --apply before measuring. Tune on a GPU server (--url), "
                    "or pass --apply-cpu-figures to write CPU-measured settings anyway"
                )
            warnings.append(note)
            say(f"warning: {note}")
        per_candidate = LOAD_ESTIMATE_S + len(concurrency) * (duration_s + warmup_s)
        budget = Budget(budget_s, per_candidate, started=started)
        say(
            f"tuning '{config.name}': {objective.describe()}; {search} search over "
            f"{len(space.grid())} candidates, concurrency {','.join(map(str, concurrency))}, "
            f"budget {budget_s:g} s"
        )
        outcome = run_search(
            space, start, objective, target.evaluate, search=search, budget=budget, progress=say
        )
        result = TuneResult(
            model=config.name,
            model_dir=model_dir,
            objective=objective,
            search=search,
            concurrency=concurrency,
            space=space,
            start=start,
            trials=outcome.trials,
            winner=pick_winner(outcome.trials, objective),
            stopped=outcome.stopped,
            skipped=outcome.skipped,
            elapsed_s=time.monotonic() - started,
            url=url,
            embedded=server is not None,
            server_version=target.server_version,
            machine=machine(),
            settings={
                "duration_s": duration_s,
                "warmup_s": warmup_s,
                "budget_s": budget_s,
                "protocol": protocol,
            },
            warnings=warnings,
            device=device,
        )
        if apply and result.winner is not None:
            # Before the server is restored: a server at --url then reloads the tuned config.
            try:
                result.applied_config = apply_candidate(
                    model_dir, result.winner.candidate, _record(result)
                )
            except PackagerError as exc:
                apply_error = exc
    finally:
        # Also on Ctrl-C: the server keeps no candidate, the embedded one is stopped.
        with _IgnoreInterrupts():
            if server is None:
                if (warn := target.close()) is not None:
                    warnings.append(warn)
            else:
                server.stop()
    write_reports(result, out_dir)
    if apply_error is not None:
        raise TuneError(
            f"measured, but applying the winner failed: {apply_error}; the repository was left "
            f"as it was; reports in {out_dir}"
        ) from apply_error
    if apply and result.winner is None:
        raise TuneError(
            "nothing applied: " + result.summary().splitlines()[-1] + f"; reports in {out_dir}"
        )
    return result


def measured_device(served: dict[str, Any]) -> str:
    """ "gpu" when the server's own config of the model has a KIND_GPU instance group, else
    "cpu" (Triton fills ``kind`` in; the embedded server's CPU fallback turns GPU groups into
    KIND_CPU)."""
    kinds = {g.get("kind", "KIND_GPU") for g in served.get("instance_group", [])}
    return "gpu" if "KIND_GPU" in kinds else "cpu"


class _IgnoreInterrupts:
    """Cleanup that must finish even if a second Ctrl-C arrives while it runs."""

    def __enter__(self) -> None:
        import signal
        import threading

        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _record(result: TuneResult) -> dict[str, Any]:
    """What tuning.json beside config.pbtxt says about the applied settings."""
    assert result.winner is not None
    best = result.objective.best_point(result.winner)
    base = result.baseline
    return {
        "tuned_by": "triton-packager tune",
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "objective": result.objective.describe(),
        "max_latency_ms": result.objective.max_latency_ms,
        "min_throughput": result.objective.min_throughput,
        "settings": result.winner.candidate.to_dict(),
        "measurement": best.to_dict() if best else None,
        "points": [p.to_dict() for p in result.winner.points],
        "previous": None
        if base is None
        else {**base.candidate.to_dict(), "points": [p.to_dict() for p in base.points]},
        "search": result.search,
        "candidates_measured": len(result.trials),
        "server": {"embedded": result.embedded, "version": result.server_version},
        "machine": result.machine,
    }
