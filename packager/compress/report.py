"""The before/after table of a compression: one row per stage (original, pruned, int8, fp16...).

Figures come from the artifact itself (ONNX initializers), never from what a tool says it did:
file size on disk, parameter bytes (the weights as stored), parameter count and how many of
them are non-zero (pruning zeroes weights but keeps them dense, so its bytes do not shrink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from packager.textable import format_table


@dataclass(frozen=True)
class Stage:
    """Figures of one version of the model."""

    label: str  # e.g. "original", "pruned 50% (l1 unstructured)", "dynamic int8"
    file_bytes: int | None  # None when the stage exists only in memory (a module before export)
    param_bytes: int
    params: int
    nonzero: int
    metric: float | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.params if self.params else 0.0


@dataclass(frozen=True)
class CompressionReport:
    """Every stage in order; the first one is the baseline the ratios refer to."""

    stages: tuple[Stage, ...]
    metric_name: str | None = None
    steps: tuple[str, ...] = ()  # what was done, in words, in order
    details: Mapping[str, Any] = field(default_factory=dict)  # per-step facts for the record

    @property
    def original(self) -> Stage:
        return self.stages[0]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def param_ratio(self) -> float:
        """How many times smaller the final weights are than the original ones."""
        return self.original.param_bytes / self.final.param_bytes if self.final.param_bytes else 0.0

    def with_stage(self, stage: Stage, step: str | None = None) -> CompressionReport:
        steps = (*self.steps, step) if step else self.steps
        return replace(self, stages=(*self.stages, stage), steps=steps)

    def table(self) -> str:
        """A fixed-width table; ratios are against the first stage that has the figure."""
        head = ["stage", "file size", "param bytes", "vs original", "params", "non-zero"]
        if self.metric_name:
            head.append(self.metric_name)
        base = self.original
        base_file = next((s.file_bytes for s in self.stages if s.file_bytes), None)
        rows = []
        for s in self.stages:
            ratio = base.param_bytes / s.param_bytes if s.param_bytes else 0.0
            file_cell = "-" if s.file_bytes is None else human_bytes(s.file_bytes)
            if s.file_bytes and base_file and s.file_bytes != base_file:
                file_cell += f" ({_ratio(base_file / s.file_bytes)})"
            row = [
                s.label,
                file_cell,
                human_bytes(s.param_bytes),
                "1.00x" if s is base else _ratio(ratio),
                f"{s.params:,}",
                f"{s.nonzero:,} ({100 * (1 - s.sparsity):.1f}%)",
            ]
            if self.metric_name:
                row.append("-" if s.metric is None else f"{s.metric:.4f}")
            rows.append(row)
        return format_table(head, rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "metric": self.metric_name,
            "param_ratio": round(self.param_ratio, 4),
            "stages": [asdict(s) for s in self.stages],
            **({"details": dict(self.details)} if self.details else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionReport:
        """Read back what :meth:`to_dict` wrote (e.g. from a build record)."""
        return cls(
            stages=tuple(Stage(**s) for s in data["stages"]),
            metric_name=data.get("metric"),
            steps=tuple(data.get("steps", ())),
            details=dict(data.get("details", {})),
        )


def onnx_stage(path: Path | str, label: str, metric: float | None = None) -> Stage:
    """Figures of an ONNX file, read from its initializers (what is actually stored)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return Stage(
        label=label,
        file_bytes=Path(path).stat().st_size,
        param_bytes=sum(int(a.nbytes) for a in arrays),
        params=sum(int(a.size) for a in arrays),
        nonzero=sum(int(np.count_nonzero(a)) for a in arrays),
        metric=metric,
    )


def arrays_stage(arrays: Sequence[np.ndarray], label: str, metric: float | None = None) -> Stage:
    """Figures of in-memory weights (a module's parameters and buffers)."""
    return Stage(
        label=label,
        file_bytes=None,
        param_bytes=sum(int(a.nbytes) for a in arrays),
        params=sum(int(a.size) for a in arrays),
        nonzero=sum(int(np.count_nonzero(a)) for a in arrays),
        metric=metric,
    )


def _ratio(r: float) -> str:
    if abs(r - 1.0) < 0.005:
        return "same"
    return f"{r:.2f}x smaller" if r > 1 else f"{1 / r:.2f}x larger"


def human_bytes(n: int) -> str:
    """1234567 -> '1.18 MiB' (binary units, as file managers and du -h show)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
