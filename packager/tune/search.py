"""The search of :mod:`packager.tune.run`: candidates, measurements, the objective, grid and hill climbing.

Pure logic: measuring is a callable ``evaluate(candidate) -> Trial`` handed in by the caller
(:mod:`packager.tune.server` on a real server; tests may hand in anything).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from packager.errors import TuneError

Search = Literal["quick", "full"]
SEARCHES: tuple[str, ...] = ("quick", "full")
# Hill climbing moves only for a gain above the noise of a short measurement window.
MIN_GAIN = 0.03


@dataclass(frozen=True, order=True)
class Candidate:
    """One serving configuration to measure."""

    instances: int
    max_batch_size: int
    dynamic_batching: bool
    queue_delay_us: int = 0

    @property
    def label(self) -> str:
        """Short and unique: ``i2-b32-q200`` (dynamic batching, 200 us delay) or ``i1-b32-off``."""
        batching = f"q{self.queue_delay_us}" if self.dynamic_batching else "off"
        return f"i{self.instances}-b{self.max_batch_size}-{batching}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "dynamic_batching": self.dynamic_batching,
            "queue_delay_us": self.queue_delay_us if self.dynamic_batching else None,
        }


@dataclass(frozen=True)
class Point:
    """One measurement window at a fixed concurrency (batch-1 requests; latencies in ms)."""

    concurrency: int
    throughput: float  # successful inferences per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    requests: int  # successful requests in the window
    errors: int = 0
    first_error: str = ""  # the first failure's message, when there were errors

    def to_dict(self) -> dict[str, Any]:
        extra = {"first_error": self.first_error} if self.first_error else {}
        return {
            "concurrency": self.concurrency,
            "throughput": round(self.throughput, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "requests": self.requests,
            "errors": self.errors,
            **extra,
        }


@dataclass
class Trial:
    """What measuring one candidate gave: a point per concurrency, or why it could not load."""

    candidate: Candidate
    points: list[Point] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self, objective: Objective) -> dict[str, Any]:
        best = objective.best_point(self)
        return {
            **self.candidate.to_dict(),
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "feasible": best is not None,
            "best_concurrency": best.concurrency if best else None,
            "points": [
                {**p.to_dict(), "meets_objective": objective.feasible(p)} for p in self.points
            ],
        }


@dataclass(frozen=True)
class Objective:
    """What "best" means.

    A point is feasible when it had no errors, its p99 is within ``max_latency_ms`` and its
    throughput reaches ``min_throughput`` (each when given). A candidate is ranked by its best
    feasible point: highest throughput, or lowest p99 when only a throughput floor is given.
    """

    max_latency_ms: float | None = None
    min_throughput: float | None = None

    @property
    def minimize_latency(self) -> bool:
        return self.min_throughput is not None and self.max_latency_ms is None

    def describe(self) -> str:
        if self.minimize_latency:
            return f"lowest p99 with throughput >= {self.min_throughput:g} infer/s"
        if self.max_latency_ms is not None and self.min_throughput is not None:
            return (
                f"highest throughput with p99 <= {self.max_latency_ms:g} ms and "
                f">= {self.min_throughput:g} infer/s"
            )
        if self.max_latency_ms is not None:
            return f"highest throughput with p99 <= {self.max_latency_ms:g} ms"
        return "highest throughput (no latency budget)"

    def feasible(self, p: Point) -> bool:
        if p.errors or p.requests == 0:
            return False
        if self.max_latency_ms is not None and p.p99_ms > self.max_latency_ms:
            return False
        return not (self.min_throughput is not None and p.throughput < self.min_throughput)

    def _value(self, p: Point) -> float:
        return -p.p99_ms if self.minimize_latency else p.throughput

    def best_point(self, trial: Trial) -> Point | None:
        ok = [p for p in trial.points if self.feasible(p)]
        return max(ok, key=self._value) if ok else None

    def score(self, trial: Trial) -> tuple[int, float]:
        """Higher is better: feasible candidates first, then by value; others by how close."""
        best = self.best_point(trial)
        if best is not None:
            return (2, self._value(best))
        measured = [p for p in trial.points if p.requests]
        if trial.error or not measured:
            return (0, 0.0)
        # Nothing feasible: prefer the candidate nearest to feasibility, so hill climbing can
        # still move towards it (lower p99 under a latency budget, else more throughput).
        if self.max_latency_ms is not None:
            return (1, -min(p.p99_ms for p in measured))
        return (1, max(p.throughput for p in measured))

    def better(self, a: Trial, b: Trial | None, gain: float = 0.0) -> bool:
        """Whether ``a`` beats ``b`` by more than ``gain`` (a fraction of b's value)."""
        if b is None:
            return True
        (ra, va), (rb, vb) = self.score(a), self.score(b)
        if ra != rb:
            return ra > rb
        return va > vb + gain * abs(vb)


@dataclass(frozen=True)
class SearchSpace:
    """The values each knob may take. A model that does not batch has one max batch size (0)."""

    instances: tuple[int, ...]
    max_batch_sizes: tuple[int, ...]
    queue_delays_us: tuple[int, ...]
    batching: bool = True  # False: max_batch_size 0, dynamic batching impossible
    default_max_batch_size: int = 0  # kept by candidates without dynamic batching

    def __post_init__(self) -> None:
        for name in ("instances", "max_batch_sizes", "queue_delays_us"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        problems = []
        if not self.instances or min(self.instances) < 1:
            problems.append("--instances needs values >= 1")
        if self.batching and (not self.max_batch_sizes or min(self.max_batch_sizes) < 1):
            problems.append("--max-batch-size needs values >= 1")
        if self.batching and (not self.queue_delays_us or min(self.queue_delays_us) < 0):
            problems.append("--queue-delay-us needs values >= 0")
        if problems:
            raise TuneError("; ".join(problems))

    def grid(self) -> list[Candidate]:
        """Every candidate: per instance count, batching off, then each batch size x delay."""
        out = []
        for n in self.instances:
            out.append(Candidate(n, self.default_max_batch_size, False))
            if self.batching:
                out += [
                    Candidate(n, b, True, d)
                    for b in self.max_batch_sizes
                    for d in self.queue_delays_us
                ]
        return out

    def snap(self, c: Candidate) -> Candidate:
        """The grid candidate nearest to ``c`` (the model's current config may be off-grid)."""
        n = _nearest(self.instances, c.instances)
        if not (self.batching and c.dynamic_batching):
            return Candidate(n, self.default_max_batch_size, False)
        return Candidate(
            n,
            _nearest(self.max_batch_sizes, c.max_batch_size),
            True,
            _nearest(self.queue_delays_us, c.queue_delay_us),
        )

    def neighbours(self, c: Candidate) -> list[Candidate]:
        """Candidates one step away along one knob (batching toggles count as one step)."""
        out = [replace(c, instances=n) for n in _steps(self.instances, c.instances)]
        if not self.batching:
            return out
        if c.dynamic_batching:
            out += [
                replace(c, max_batch_size=b) for b in _steps(self.max_batch_sizes, c.max_batch_size)
            ]
            out += [
                replace(c, queue_delay_us=d) for d in _steps(self.queue_delays_us, c.queue_delay_us)
            ]
            out.append(Candidate(c.instances, self.default_max_batch_size, False))
        else:
            mbs = _nearest(self.max_batch_sizes, c.max_batch_size or self.default_max_batch_size)
            out.append(Candidate(c.instances, mbs, True, self.queue_delays_us[0]))
        return out


def _nearest(values: Sequence[int], target: int) -> int:
    return min(values, key=lambda v: (abs(v - target), v))


def _steps(values: Sequence[int], current: int) -> list[int]:
    i = list(values).index(current)
    return [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]


# ---------------------------------------------------------------------------------------------
# Search

Evaluate = Callable[[Candidate], Trial]
Progress = Callable[[str], None]


@dataclass
class Budget:
    """Wall-clock budget: a new candidate starts only if its expected cost still fits."""

    seconds: float
    first_estimate_s: float
    clock: Callable[[], float] = time.monotonic
    started: float | None = None  # clock() when None
    costs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def elapsed(self) -> float:
        assert self.started is not None
        return self.clock() - self.started

    def expected(self) -> float:
        # The slowest candidate so far: instance counts and batch sizes change load times.
        return max(self.costs) if self.costs else self.first_estimate_s

    def fits(self) -> bool:
        return self.elapsed() + self.expected() <= self.seconds


@dataclass
class SearchOutcome:
    trials: list[Trial]
    stopped: str  # "done" | "budget"
    skipped: int = 0  # candidates that the budget left unmeasured (grid) or unexplored (quick)


def run_search(
    space: SearchSpace,
    start: Candidate,
    objective: Objective,
    evaluate: Evaluate,
    *,
    search: str = "quick",
    budget: Budget,
    progress: Progress | None = None,
) -> SearchOutcome:
    """Measure candidates until the search ends or the budget would be overrun."""
    if search not in SEARCHES:
        raise TuneError(f"search {search!r} is not one of: {', '.join(SEARCHES)}")
    say = progress or (lambda _msg: None)
    trials: dict[Candidate, Trial] = {}

    def measure(c: Candidate) -> Trial | None:
        if c in trials:
            return trials[c]
        # The first candidate always runs: a budget too small for one was refused up front.
        if trials and not budget.fits():
            return None
        say(f"[{len(trials) + 1}] {c.label} ({budget.elapsed():.0f}/{budget.seconds:.0f} s)")
        t0 = budget.clock()
        trial = evaluate(c)
        trial.seconds = budget.clock() - t0
        budget.costs.append(trial.seconds)
        trials[c] = trial
        say(_trial_line(trial, objective))
        return trial

    if search == "full":
        grid = space.grid()
        first = space.snap(start)
        ordered = [first] + [c for c in grid if c != first]  # the current config first
        for i, c in enumerate(ordered):
            if measure(c) is None:
                return SearchOutcome(list(trials.values()), "budget", len(ordered) - i)
        return SearchOutcome(list(trials.values()), "done")

    current = measure(space.snap(start))
    assert current is not None
    while True:
        todo = [c for c in space.neighbours(current.candidate) if c not in trials]
        for i, c in enumerate(todo):
            if measure(c) is None:
                return SearchOutcome(list(trials.values()), "budget", len(todo) - i)
        best = max(trials.values(), key=lambda t: objective.score(t))
        if best is current or not objective.better(best, current, MIN_GAIN):
            return SearchOutcome(list(trials.values()), "done")
        say(f"moving to {best.candidate.label}")
        current = best


def _trial_line(trial: Trial, objective: Objective) -> str:
    if trial.error:
        return f"    failed: {trial.error.splitlines()[0]}"
    parts = [
        f"c{p.concurrency}: {p.throughput:.0f}/s p99 {p.p99_ms:.1f} ms"
        + ("" if objective.feasible(p) else " x")
        + (f" ({p.errors} errors, first: {p.first_error})" if p.errors else "")
        for p in trial.points
    ]
    return "    " + "; ".join(parts) + f"  ({trial.seconds:.1f} s)"


def pick_winner(trials: Iterable[Trial], objective: Objective) -> Trial | None:
    """The best feasible trial; None when no candidate met the objective."""
    feasible = [t for t in trials if objective.best_point(t) is not None]
    if not feasible:
        return None
    # Ties (equal value) go to fewer instances, then smaller batches: cheaper to run.
    return max(
        feasible,
        key=lambda t: (
            objective.score(t),
            -t.candidate.instances,
            -t.candidate.max_batch_size,
        ),
    )


# ---------------------------------------------------------------------------------------------
# Options


def parse_int_list(text: str | Sequence[int] | None, what: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); a sequence passes through. Raises TuneError naming ``what``."""
    if text is None:
        return ()
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise TuneError(f"{what} {text!r} is not a comma-separated list of integers") from None
    if not values:
        raise TuneError(f"{what} is empty; give values such as 1,8,32")
    return values


def check_options(
    concurrency: Sequence[int],
    budget_s: float,
    duration_s: float,
    warmup_s: float,
    max_latency_ms: float | None,
    min_throughput: float | None,
) -> None:
    """Refuse options that cannot give a measurement, before any server starts."""
    problems = []
    if not concurrency or min(concurrency) < 1:
        problems.append("--concurrency needs values >= 1, e.g. 1,8,32")
    if duration_s <= 0:
        problems.append("--duration-s must be > 0")
    if warmup_s < 0:
        problems.append("--warmup-s must be >= 0")
    if max_latency_ms is not None and max_latency_ms <= 0:
        problems.append("--max-latency-ms must be > 0")
    if min_throughput is not None and min_throughput <= 0:
        problems.append("--min-throughput must be > 0")
    one = len(concurrency) * (duration_s + warmup_s)
    if budget_s < one:
        problems.append(
            f"--budget-s {budget_s:g} is less than one candidate needs ({len(concurrency)} "
            f"concurrencies x ({warmup_s:g} s warm-up + {duration_s:g} s) = {one:g} s plus "
            "loading); raise --budget-s or shorten --duration-s"
        )
    if problems:
        raise TuneError("; ".join(problems))
