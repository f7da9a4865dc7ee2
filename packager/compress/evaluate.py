"""Measure a model's quality on labeled data: through the served model, or a local file.

::

    result = evaluate("mlp_int8", "test.npz", url="localhost:8000", metrics=["accuracy", "top2"],
                      reference="mlp.onnx")
    print(result.table())

The data is one ``.npz``: an array per model input (named after the input, samples first) and
the labels (``labels`` unless told otherwise). It is sent in batches with
:class:`packager.client.Client`; the outputs are gathered and scored at the end. With a
``reference`` ONNX file, the same batches also run through ONNX Runtime in this process, so the
table shows what serving (or compressing) changed, sample for sample.

Metrics: ``accuracy`` (argmax of the last axis vs integer labels or one-hot rows), ``topK``
(e.g. ``top5``: the label is among the K highest scores), ``mse`` and ``mae`` (element-wise
against labels of the output's shape).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import PackagerError
from packager.textable import format_table

METRICS = ("accuracy", "top-k", "mse", "mae")  # top-k is spelled topK, e.g. top5
DEFAULT_BATCH_SIZE = 64
Progress = Callable[[int, int], None]  # (samples done, samples in all)
Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledData:
    """Inputs by name (samples first) and their labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    source: str = "data"

    @property
    def samples(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, size: int) -> list[tuple[int, dict[str, np.ndarray]]]:
        """(start, inputs) for consecutive slices of ``size`` samples."""
        return [
            (s, {k: v[s : s + size] for k, v in self.inputs.items()})
            for s in range(0, self.samples, size)
        ]


def load_labeled(
    path: Path | str, labels_key: str = "labels", input_names: Sequence[str] | None = None
) -> LabeledData:
    """Read an ``.npz`` of inputs + labels; every array must hold the same number of samples."""
    from packager.sources.inputs import load_npz

    p = Path(path)
    if not p.is_file():
        raise PackagerError(f"evaluation data file {p} does not exist")
    arrays = load_npz(p)
    return labeled(arrays, labels_key, input_names, str(p))


def labeled(
    arrays: Mapping[str, np.ndarray],
    labels_key: str = "labels",
    input_names: Sequence[str] | None = None,
    source: str = "data",
) -> LabeledData:
    """Split ``arrays`` into inputs and labels and check they line up."""
    if labels_key not in arrays:
        raise PackagerError(
            f"{source} has no {labels_key!r} array (it has: {', '.join(arrays) or 'nothing'}); "
            "store the labels under that name or pass --labels NAME"
        )
    labels = np.asarray(arrays[labels_key])
    inputs = {k: np.asarray(v) for k, v in arrays.items() if k != labels_key}
    if input_names is not None:
        missing = [n for n in input_names if n not in inputs]
        if missing:
            raise PackagerError(
                f"{source} lacks input(s) {', '.join(missing)}; the model's inputs are "
                f"{', '.join(input_names)} (it has: {', '.join(inputs) or 'only labels'})"
            )
        inputs = {n: inputs[n] for n in input_names}
    if not inputs:
        raise PackagerError(f"{source} holds labels but no input arrays")
    if labels.ndim == 0 or labels.shape[0] == 0:
        raise PackagerError(f"{source}: {labels_key!r} holds no samples")
    bad = {k: v.shape[0] if v.ndim else 0 for k, v in inputs.items()}
    bad = {k: n for k, n in bad.items() if n != labels.shape[0]}
    if bad:
        raise PackagerError(
            f"{source}: every array needs the same number of samples as {labels_key!r} "
            f"({labels.shape[0]}); got " + ", ".join(f"{k}: {n}" for k, n in bad.items())
        )
    return LabeledData(inputs, labels, source)


# --- metrics -------------------------------------------------------------------------------


def parse_metric(name: str) -> str:
    """Normalize a metric name: accuracy, topK (top5, top-5), mse, mae."""
    text = name.strip().lower().replace("_", "-")
    if text in ("accuracy", "acc", "top1", "top-1"):
        return "accuracy"
    if text in ("mse", "mae"):
        return text
    m = re.fullmatch(r"top-?(\d+)", text)
    if m and int(m.group(1)) > 0:
        return f"top{int(m.group(1))}"
    raise PackagerError(
        f"unknown metric {name!r}; choose from accuracy, topK (e.g. top5), mse, mae"
    )


def score(metric: str, outputs: np.ndarray, labels: np.ndarray) -> float:
    """One metric over all samples (``metric`` as returned by :func:`parse_metric`)."""
    out = np.asarray(outputs)
    if metric in ("mse", "mae"):
        lab = np.asarray(labels, dtype=np.float64)
        if lab.shape != out.shape:
            if lab.size != out.size:
                raise PackagerError(
                    f"{metric} compares outputs with labels element by element, but the output "
                    f"has shape {list(out.shape)} and the labels {list(lab.shape)}"
                )
            lab = lab.reshape(out.shape)
        diff = out.astype(np.float64) - lab
        return float(np.mean(diff**2) if metric == "mse" else np.mean(np.abs(diff)))
    k = 1 if metric == "accuracy" else int(metric[3:])
    classes = out.shape[-1] if out.ndim >= 2 else 0
    if classes < 2:
        raise PackagerError(
            f"{metric} needs one score per class on the output's last axis; the output has "
            f"shape {list(out.shape)} (use --metric mse or mae for a regression output)"
        )
    if k > classes:
        raise PackagerError(f"{metric}: the output has only {classes} classes")
    target = _class_labels(np.asarray(labels), out)
    if k == 1:
        return float(np.mean(out.argmax(axis=-1) == target))
    top = np.argpartition(-out, k - 1, axis=-1)[..., :k]
    return float(np.mean((top == target[..., None]).any(axis=-1)))


def _class_labels(labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    if labels.shape == out.shape:  # one-hot or probabilities per class
        return labels.argmax(axis=-1)
    if labels.shape == (*out.shape[:-1], 1):
        labels = labels[..., 0]
    if labels.shape != out.shape[:-1]:
        raise PackagerError(
            f"labels of shape {list(labels.shape)} do not fit an output of shape "
            f"{list(out.shape)}: give one class index per sample, or one-hot rows"
        )
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise PackagerError("class labels must be whole numbers (class indices)")
    return labels.astype(np.int64)


def scores(metrics: Sequence[str], outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {m: score(m, outputs, labels) for m in metrics}


# --- running -------------------------------------------------------------------------------


def run_batches(
    run: Runner,
    data: LabeledData,
    batch_size: int,
    output: str | None = None,
    progress: Progress | None = None,
) -> tuple[str, np.ndarray]:
    """Run every batch through ``run``; returns (output name, outputs of all samples in order)."""
    parts: list[np.ndarray] = []
    name = output
    for start, batch in data.batches(batch_size):
        result = run(batch)
        if name is None:
            name = next(iter(result))
        elif name not in result:
            raise PackagerError(
                f"the model has no output {name!r}; its outputs are: {', '.join(result)}"
            )
        parts.append(np.asarray(result[name]))
        if progress is not None:
            progress(min(start + batch_size, data.samples), data.samples)
    assert name is not None
    return name, np.concatenate(parts, axis=0)


def evaluate_local(
    path: Path | str,
    data: LabeledData,
    metrics: Sequence[str] = ("accuracy",),
    *,
    output: str | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Metrics of an ONNX file run in-process by ONNX Runtime."""
    from packager.sources.verify import onnx_runner

    ms = [parse_metric(m) for m in metrics]
    _, out = run_batches(onnx_runner(path), data, batch_size, output)
    return scores(ms, out, data.labels)


# --- the served model ----------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of the served model (and of the reference, when one was given)."""

    model: str
    version: str
    url: str
    samples: int
    batch_size: int
    output: str
    metrics: dict[str, float]
    elapsed_s: float
    reference: str | None = None
    reference_metrics: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None  # share of samples with the same top class as the reference
    max_abs_diff: float | None = None  # largest output difference from the reference

    def table(self) -> str:
        head = ["metric", f"served {self.model}"]
        if self.reference:
            head += [f"reference {Path(self.reference).name}", "difference"]
        rows = []
        for name, value in self.metrics.items():
            row = [name, f"{value:.4f}"]
            if self.reference:
                ref = self.reference_metrics[name]
                row += [f"{ref:.4f}", f"{value - ref:+.4f}"]
            rows.append(row)
        lines = format_table(head, rows).splitlines()
        rate = self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines.append(
            f"{self.samples} samples, output {self.output!r}, batches of {self.batch_size}, "
            f"{self.elapsed_s:.2f} s ({rate:,.0f} samples/s)"
        )
        if self.agreement is not None:
            lines.append(f"same top class as the reference: {100 * self.agreement:.2f}% of samples")
        if self.max_abs_diff is not None:
            lines.append(f"largest output difference from the reference: {self.max_abs_diff:.3g}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "url": self.url,
            "samples": self.samples,
            "batch_size": self.batch_size,
            "output": self.output,
            "metrics": self.metrics,
            "elapsed_s": round(self.elapsed_s, 4),
            "reference": self.reference,
            "reference_metrics": self.reference_metrics or None,
            "agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
        }


def evaluate(
    model: str,
    data: LabeledData | Path | str,
    *,
    url: str | None = None,
    protocol: str | None = None,
    metrics: Sequence[str] = ("accuracy",),
    labels_key: str = "labels",
    output: str | None = None,
    batch_size: int | None = None,
    version: str = "",
    reference: Path | str | None = None,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Send ``data`` through the served ``model`` in batches and score the outputs."""
    from packager.client import Client

    ms = [parse_metric(m) for m in metrics] or ["accuracy"]
    if reference is not None and not Path(reference).is_file():
        raise PackagerError(f"reference model {reference} does not exist")
    if reference is not None and not str(reference).endswith(".onnx"):
        raise PackagerError(
            f"--reference takes an ONNX file (run by ONNX Runtime); got {reference}"
        )
    if not isinstance(data, LabeledData) and not Path(data).is_file():
        # Before waiting for the server: a typo must not cost the whole --timeout.
        raise PackagerError(f"evaluation data file {data} does not exist")
    with Client(url, protocol=protocol, timeout_s=timeout_s) as client:
        _wait(client, model, version, timeout_s)
        names, max_batch, out_names = _model_facts(client, model, version)
        if output is not None and output not in out_names:
            raise PackagerError(
                f"model {model!r} has no output {output!r}; its outputs are: {', '.join(out_names)}"
            )
        out_name = output or out_names[0]
        if not isinstance(data, LabeledData):
            data = load_labeled(data, labels_key, names)
        else:
            data = labeled({**data.inputs, labels_key: data.labels}, labels_key, names, data.source)
        size = batch_size or (
            min(DEFAULT_BATCH_SIZE, max_batch) if max_batch else DEFAULT_BATCH_SIZE
        )
        if size < 1 or (max_batch and size > max_batch):
            raise PackagerError(
                f"--batch-size must be between 1 and the model's max_batch_size ({max_batch}); got {size}"
            )

        def served(batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            # Only the scored output comes back: less to decode for multi-output models.
            return client.infer(model, dict(batch), version=version, outputs=[out_name])

        start = time.perf_counter()
        _, outs = run_batches(served, data, size, out_name, progress)
        elapsed = time.perf_counter() - start
    result = EvaluationResult(
        model=model,
        version=version or "latest",
        url=client.url,
        samples=data.samples,
        batch_size=size,
        output=out_name,
        metrics=scores(ms, outs, data.labels),
        elapsed_s=elapsed,
    )
    if reference is None:
        return result
    from packager.sources.verify import onnx_runner

    _, ref_outs = run_batches(onnx_runner(reference), data, 256, out_name)
    if ref_outs.shape != outs.shape:
        raise PackagerError(
            f"the reference's output {out_name!r} has shape {list(ref_outs.shape)}, the served "
            f"model's {list(outs.shape)}: they are not the same model"
        )
    classify = outs.ndim >= 2 and outs.shape[-1] >= 2
    return EvaluationResult(
        **{
            **result.__dict__,
            "reference": str(reference),
            "reference_metrics": scores(ms, ref_outs, data.labels),
            "agreement": float(np.mean(outs.argmax(-1) == ref_outs.argmax(-1)))
            if classify
            else None,
            "max_abs_diff": float(
                np.max(np.abs(outs.astype(np.float64) - ref_outs.astype(np.float64)))
            ),
        }
    )


def _wait(client: Any, model: str, version: str, timeout_s: float) -> None:
    """Wait for ``model``, but not for one the running server does not know: it will not come."""
    from packager.errors import ServerUnavailable

    if client.is_ready(model, version=version):
        return
    try:
        known = {m.name for m in client.models()}
    except ServerUnavailable:  # not up yet: wait for it
        known = None
    if known is not None and model not in known:
        timeout_s = 0.0  # one more check, then the client's ModelNotFound (it lists the models)
    client.wait_until_ready(model, version=version, timeout_s=timeout_s)


def _model_facts(client: Any, model: str, version: str) -> tuple[list[str], int, list[str]]:
    """(input names, max_batch_size, output names) from the server (the client caches them)."""
    meta = client.metadata(model, version=version)
    config = client.config(model, version=version)
    return [t.name for t in meta.inputs], int(config.max_batch_size), [t.name for t in meta.outputs]
