"""Exported artifact vs source model: run both on the same inputs, compare every output.

A *runner* is a function ``inputs -> outputs`` (name -> numpy array, in output order). The
source module, an ONNX Runtime session and a ``torch.jit.load`` module all become runners, so
the comparison is one piece of code whatever the format.

Closeness is numpy's ``allclose`` rule, per element: ``|got - ref| <= atol + rtol * |ref|``.
The report keeps, for every output and every input case, the largest absolute and relative
error and the index of the element that misses the tolerance by the most (or, when all pass,
the element with the largest absolute error): enough to tell a rounding drift from a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import VerificationError
from packager.textable import format_table

Arrays = dict[str, np.ndarray]
Runner = Callable[[Mapping[str, np.ndarray]], Arrays]

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class OutputCheck:
    """One output compared on one input case."""

    case: str  # e.g. "example (batch 2)"
    output: str
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...]
    passed: bool
    problem: str = ""  # shape/dtype/NaN mismatch, in words; empty when values were compared


@dataclass(frozen=True)
class VerificationReport:
    """Every output on every case, with the tolerances used."""

    atol: float
    rtol: float
    checks: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[OutputCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def table(self) -> str:
        """A fixed-width table, one row per output per case."""
        head = ("case", "output", "shape", "max abs err", "max rel err", "worst at", "result")
        rows = []
        for c in self.checks:
            rows.append(
                (
                    c.case,
                    c.output,
                    "x".join(map(str, c.shape)) or "scalar",
                    f"{c.max_abs_err:.3g}",
                    f"{c.max_rel_err:.3g}",
                    str(list(c.worst_index)),
                    "ok" if c.passed else f"FAIL {c.problem}".rstrip(),
                )
            )
        return format_table(head, rows)

    def to_record(self) -> dict[str, Any]:
        """JSON-friendly figures for the build record."""
        return {
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "checks": [
                {**asdict(c), "shape": list(c.shape), "worst_index": list(c.worst_index)}
                for c in self.checks
            ],
        }


def compare(
    case: str, output: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float
) -> OutputCheck:
    """Compare one output array with its reference."""
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return OutputCheck(
            case, output, tuple(ref.shape), float("inf"), float("inf"), (), False,
            f"shape {list(got.shape)}, expected {list(ref.shape)}",
        )  # fmt: skip
    if ref.size == 0:
        return OutputCheck(case, output, tuple(ref.shape), 0.0, 0.0, (), True)
    if ref.dtype == np.bool_ or got.dtype == np.bool_:
        r, g = ref.astype(np.float64), got.astype(np.float64)
    else:
        r, g = ref.astype(np.float64, copy=False), got.astype(np.float64, copy=False)
    both_nan = np.isnan(r) & np.isnan(g)
    diff = np.where(both_nan, 0.0, np.abs(g - r))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only: infinitely wrong
    rel = diff / np.maximum(np.abs(r), np.finfo(np.float64).tiny)
    rel = np.where(diff == 0, 0.0, rel)
    excess = diff - (atol + rtol * np.abs(np.nan_to_num(r)))
    passed = bool(np.all(excess <= 0))
    worst_flat = int(np.argmax(excess)) if not passed else int(np.argmax(diff))
    worst = tuple(int(i) for i in np.unravel_index(worst_flat, ref.shape))
    problem = ""
    if not passed and np.isinf(diff).any():
        problem = "(NaN/inf where the source has a value)"
    return OutputCheck(
        case, output, tuple(ref.shape), float(diff.max()), float(rel.max()), worst, passed, problem
    )


def verify(
    reference: Runner,
    candidate: Runner,
    cases: Sequence[tuple[str, Mapping[str, np.ndarray]]],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    what: str = "exported model",
    raise_on_failure: bool = True,
) -> VerificationReport:
    """Run both runners on every case and compare their outputs by name.

    Raises :class:`VerificationError` (with ``.report``) when any output differs beyond
    ``atol``/``rtol``, misses, or has another shape — unless ``raise_on_failure`` is false.
    """
    checks: list[OutputCheck] = []
    for label, inputs in cases:
        ref = reference(inputs)
        got = candidate(inputs)
        for name, ref_arr in ref.items():
            if name not in got:
                checks.append(
                    OutputCheck(label, name, tuple(np.shape(ref_arr)), float("inf"), float("inf"),
                                (), False, f"missing; {what} outputs are {', '.join(got)}")
                )  # fmt: skip
                continue
            checks.append(compare(label, name, ref_arr, got[name], atol, rtol))
    report = VerificationReport(atol, rtol, tuple(checks))
    if raise_on_failure and not report.passed:
        bad = sorted({c.output for c in report.failures})
        raise VerificationError(
            f"the {what} does not match the source model (atol={atol:g}, rtol={rtol:g}) "
            f"for output(s) {', '.join(bad)}:\n{report.table()}\n"
            "Nothing was written. If the differences are rounding (e.g. fp16), loosen --atol/--rtol; "
            "otherwise the export changed the computation (data-dependent control flow or shapes "
            "fixed at export time are the usual causes).",
            report=report,
        )
    return report


# --- runners -----------------------------------------------------------------------------------


def onnx_runner(path: Path | str, output_names: Sequence[str] | None = None) -> Runner:
    """An ONNX Runtime CPU session as a runner; inputs the graph does not use are dropped."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: the verifier reports what matters
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    names = list(output_names) if output_names else [o.name for o in session.get_outputs()]

    def run(inputs: Mapping[str, np.ndarray]) -> Arrays:
        feed = {k: np.ascontiguousarray(inputs[k]) for k in wanted}
        return dict(zip(names, session.run(names, feed), strict=True))

    return run


def torchscript_runner(
    path: Path | str, input_names: Sequence[str], output_names: Sequence[str]
) -> Runner:
    """A saved TorchScript module, loaded back with ``torch.jit.load``, as a runner.

    Inputs are passed positionally in ``input_names`` order, as Triton's libtorch backend does.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # torch.jit.* deprecation notices; TorchScript is what Triton runs
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()

    def run(inputs: Mapping[str, np.ndarray]) -> Arrays:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in input_names]
        with torch.no_grad():
            out = module(*args)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return {n: o.detach().cpu().numpy() for n, o in zip(output_names, outs, strict=True)}

    return run
