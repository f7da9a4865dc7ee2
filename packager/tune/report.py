"""Reports of a tuning run: a text table, CSV (one row per candidate and concurrency), JSON, and a
PNG plot of throughput against p99 latency per candidate with the winner marked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packager.tune.run import TuneResult

CSV_FIELDS = (
    "label",
    "instances",
    "max_batch_size",
    "dynamic_batching",
    "queue_delay_us",
    "concurrency",
    "throughput",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "requests",
    "errors",
    "first_error",
    "meets_objective",
    "winner",
    "error",
)


def machine() -> dict[str, Any]:
    """The machine the figures came from (they mean little without it)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": cores,
        "system": platform.platform(),
        "python": platform.python_version(),
    }


def rows(result: TuneResult) -> list[dict[str, Any]]:
    """One row per (candidate, concurrency); a candidate that failed gets one row with its error."""
    out = []
    winner = result.winner.candidate if result.winner else None
    for t in result.trials:
        base: dict[str, Any] = t.candidate.to_dict()
        base["winner"] = t.candidate == winner
        base["error"] = t.error or ""
        if not t.points:
            out.append(base)
        for p in t.points:
            out.append({**base, **p.to_dict(), "meets_objective": result.objective.feasible(p)})
    return out


def csv_text(result: TuneResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows(result):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def table(result: TuneResult) -> str:
    """A fixed-width table of every measurement, the winner marked with ``*``."""
    head = f"{'':1} {'config':<18} {'conc':>4} {'infer/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'err':>4}  ok"
    lines = [head, "-" * len(head)]
    for r in rows(result):
        mark = "*" if r["winner"] else " "
        if "concurrency" not in r:
            lines.append(f"{mark} {r['label']:<18} failed: {r['error'].splitlines()[0]}")
            continue
        lines.append(
            f"{mark} {r['label']:<18} {r['concurrency']:>4} {r['throughput']:>9.1f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>4}  "
            f"{'yes' if r['meets_objective'] else 'no'}"
        )
    return "\n".join(lines)


def plot(result: TuneResult, path: Path) -> bool:
    """Throughput vs p99 (one line per candidate over its concurrencies); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    winner = result.winner.candidate if result.winner else None
    for t in result.trials:
        pts = [p for p in t.points if p.requests]
        if not pts:
            continue
        is_winner = t.candidate == winner
        ax.plot(
            [p.p99_ms for p in pts],
            [p.throughput for p in pts],
            marker="o",
            linewidth=2.5 if is_winner else 1.0,
            alpha=1.0 if is_winner else 0.6,
            label=t.candidate.label + (" (winner)" if is_winner else ""),
        )
        for p in pts:
            ax.annotate(f"c{p.concurrency}", (p.p99_ms, p.throughput), fontsize=7, alpha=0.7)
    if result.winner is not None:
        best = result.objective.best_point(result.winner)
        if best is not None:
            ax.scatter(
                [best.p99_ms], [best.throughput], marker="*", s=400, color="gold",
                edgecolors="black", zorder=5, label=f"chosen: {winner.label if winner else ''} "
                f"at concurrency {best.concurrency}",
            )  # fmt: skip
    if result.objective.max_latency_ms is not None:
        ax.axvline(
            result.objective.max_latency_ms,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"p99 budget {result.objective.max_latency_ms:g} ms",
        )
    if result.objective.min_throughput is not None:
        ax.axhline(
            result.objective.min_throughput,
            color="red",
            linestyle=":",
            linewidth=1,
            label=f"throughput floor {result.objective.min_throughput:g}/s",
        )
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (inferences/s)")
    ax.set_title(f"tune {result.model}: {result.objective.describe()}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def write_reports(result: TuneResult, output_dir: Path) -> dict[str, Path]:
    """Write tune.csv, tune.json and tune.png (when matplotlib is installed) into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    csv_path = output_dir / "tune.csv"
    csv_path.write_text(csv_text(result), encoding="utf-8")
    written["csv"] = csv_path
    png_path = output_dir / "tune.png"
    if plot(result, png_path):
        written["png"] = png_path
    json_path = output_dir / "tune.json"
    result.reports = {**written, "json": json_path}
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    written["json"] = json_path
    return written
