"""``explain``: attributions of one output value to the features of one input, computed with
forward passes only, through a served model or any in-process ``predict`` callable.

::

    from packager.client import Client
    from packager.explain import explain

    with Client("localhost:8000") as c:
        e = explain(c, "tabular_model", {"x": x}, method="kernelshap", target="auto")
        e = explain(c, "resnet", {"image": img}, patch=16, baseline="blur")
        e = explain(c, "sentiment", "the film was lovely", output="PROBS")
    e = explain(session_predict, "local", {"x": x})   # predict({name: batch}) -> {name: batch}
    print(e.table()); e.attributions; e.to_dict()

Inputs are ONE sample, without the batch axis (a leading axis of 1 is dropped for served models
that batch). The perturbed copies are stacked into requests of ``batch_size`` rows (at most the
model's max_batch_size; one per request for a model that does not batch); inputs that are not
explained are repeated unchanged in every row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from packager.errors import PackagerError
from packager.explain import features as feat
from packager.explain.explanation import Explanation
from packager.explain.methods import METHODS, kernelshap, occlusion

Arrays = Mapping[str, np.ndarray]
Predict = Callable[[Arrays], Arrays]  # {input: batch} -> {output: batch}
Progress = Callable[[int, int], None]  # (evaluations done, evaluations in all)
Features = feat.TabularFeatures | feat.ImagePatches | feat.TextTokens
DEFAULT_BATCH_SIZE = 64
DEFAULT_SAMPLES = 1024
NO_LIMIT = 2**31 - 1  # an in-process predict takes batches of any size


@dataclass
class _Model:
    """What explain needs to know of a model, however it runs."""

    name: str
    source: str
    max_batch_size: int  # 0: one sample per call, without a batch axis
    inputs: dict[str, tuple[str, tuple[int, ...]]] | None  # name -> (wire dtype, dims); None: ?
    outputs: dict[str, str] | None  # name -> wire dtype
    call: Callable[[Arrays, list[str] | None], Arrays]
    calls: int = 0

    def run(self, batch: Arrays, outputs: list[str] | None = None) -> Arrays:
        """Run a batch (rows on axis 0) and return outputs with rows on axis 0."""
        if self.max_batch_size > 0:
            self.calls += 1
            return self.call(batch, outputs)
        rows = len(next(iter(batch.values())))
        parts = []
        for i in range(rows):
            self.calls += 1
            parts.append(self.call({k: v[i] for k, v in batch.items()}, outputs))
        return {k: np.stack([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def explain(
    source: Any,
    model: str,
    inputs: Mapping[str, Any] | np.ndarray | str,
    *,
    output: str | None = None,
    target: int | str | None = "auto",
    method: str = "kernelshap",
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    baseline: Any = None,
    kind: str = "auto",
    patch: int | None = None,
    channels: str | None = None,
    explain_input: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    version: str = "",
    progress: Progress | None = None,
) -> Explanation:
    """Attribute ``output[target]`` of ``model`` to the features of one input.

    ``source``: a :class:`packager.client.Client`, a server URL, or ``predict(inputs) ->
    outputs`` (batched dicts of arrays) run in this process. ``method``: occlusion or
    kernelshap. ``baseline``: zeros (default), mean, blur (images), a number, an .npy file or an
    array of the input's shape; for text, ``drop`` (default) or the word put in place of the
    removed ones (e.g. ``[MASK]``). ``target``: ``auto`` (the largest value of the output), or a
    flat index into one sample's output.
    """
    if method not in METHODS:
        raise PackagerError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if batch_size < 1:
        raise PackagerError(f"batch size must be 1 or more; got {batch_size}")
    if samples < 1:
        raise PackagerError(f"samples must be 1 or more; got {samples}")
    if isinstance(source, str):
        from packager.client import Client

        with Client(source) as client:
            return explain(
                client, model, inputs, output=output, target=target, method=method,
                samples=samples, seed=seed, baseline=baseline, kind=kind, patch=patch,
                channels=channels, explain_input=explain_input, batch_size=batch_size,
                version=version, progress=progress,
            )  # fmt: skip
    m = _model(source, model, version)
    sample, name = _sample(m, inputs, explain_input)
    x = sample[name]
    features, how = _features(x, name, kind, baseline, patch, channels, m.inputs)
    size = min(batch_size, m.max_batch_size) if m.max_batch_size > 0 else batch_size
    if m.max_batch_size == 0:
        size = 1

    probe = m.run({k: v[None] for k, v in sample.items()})
    out_name = _output(m, probe, output)
    first = np.asarray(probe[out_name]).reshape(1, -1)[0]
    index = _target(target, first, out_name)
    others = {k: v for k, v in sample.items() if k != name}
    evaluations = 0

    def value(masks: np.ndarray) -> np.ndarray:
        nonlocal evaluations
        got = np.empty(len(masks), dtype=np.float64)
        for start in range(0, len(masks), size):
            chunk = masks[start : start + size]
            feed = {name: features.compose(chunk)}
            feed |= {k: np.repeat(v[None], len(chunk), axis=0) for k, v in others.items()}
            result = np.asarray(m.run(feed, [out_name])[out_name], dtype=np.float64)
            got[start : start + len(chunk)] = result.reshape(len(chunk), -1)[:, index]
            evaluations += len(chunk)
            if progress is not None:
                progress(start + len(chunk), len(masks))
        return got

    calls_before, started = m.calls, time.perf_counter()
    if method == "occlusion":
        att = occlusion(value, features.count)
    else:
        att = kernelshap(value, features.count, samples=samples, seed=seed)
    elapsed = time.perf_counter() - started
    image = features if isinstance(features, feat.ImagePatches) else None
    return Explanation(
        model=model,
        input=name,
        output=out_name,
        target=index,
        method=method,
        kind=features.kind,
        features=features.names,
        attributions=att.values,
        base_value=att.base,
        prediction=att.prediction,
        additivity_gap=att.gap,
        exact=att.exact,
        evaluations=evaluations,
        requests=m.calls - calls_before,
        batch_size=size,
        elapsed_s=elapsed,
        baseline=how,
        source=m.source,
        samples=samples if method == "kernelshap" else None,
        seed=seed if method == "kernelshap" else None,
        values=None if isinstance(features, feat.TextTokens) else features.x,
        grid=image.grid if image else None,
        patch=image.patch if image else None,
        channels=image.channels if image else None,
        text=features.text if isinstance(features, feat.TextTokens) else None,
        target_label=_label(probe, out_name, first, index),
    )


def _label(probe: Mapping[str, Any], out_name: str, first: np.ndarray, index: int) -> str | None:
    """The class name of ``index`` when the model returns it: exactly one other output holds
    one string per sample (a label output such as LABEL) and ``index`` is the top class."""
    if first.size < 2 or int(np.argmax(first)) != index:
        return None
    labels = [
        a
        for k, v in probe.items()
        if k != out_name and (a := np.asarray(v)).dtype.kind in "OSU" and a.size == 1
    ]
    if len(labels) != 1:
        return None
    value = labels[0].reshape(-1)[0]
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text or None


# --- the model -----------------------------------------------------------------------------


def _model(source: Any, model: str, version: str) -> _Model:
    from packager.client import Client

    if isinstance(source, Client):
        return _served(source, model, version)
    if not callable(source):
        raise PackagerError(
            "explain runs a served model through a Client (or URL), or a predict(inputs) -> "
            f"outputs callable; got {type(source).__name__}"
        )

    def call(batch: Arrays, _outputs: list[str] | None) -> Arrays:
        result = source(batch)
        if not isinstance(result, Mapping):
            raise PackagerError(
                f"predict must return {{output name: array}}; got {type(result).__name__}"
            )
        return result

    return _Model(model, "in-process", NO_LIMIT, None, None, call)


def _served(client: Any, model: str, version: str) -> _Model:
    from packager.errors import ModelNotFound

    try:
        meta = client.metadata(model, version=version)
    except ModelNotFound:
        names = sorted({m.name for m in client.models()})
        raise ModelNotFound(
            f"model {model!r}{f' version {version}' if version else ''} is not on the server at "
            f"{client.url}; its models: {', '.join(names) or '(none)'}"
        ) from None
    mbs = int(client.config(model, version=version).max_batch_size)
    skip = 1 if mbs > 0 else 0
    inputs = {t.name: (t.datatype, tuple(t.shape[skip:])) for t in meta.inputs}
    outputs = {t.name: t.datatype for t in meta.outputs}

    def call(batch: Arrays, wanted: list[str] | None) -> Arrays:
        return client.infer(model, dict(batch), version=version, outputs=wanted)

    return _Model(model, client.url, mbs, inputs, outputs, call)


def _sample(
    m: _Model, inputs: Mapping[str, Any] | np.ndarray | str, explain_input: str | None
) -> tuple[dict[str, np.ndarray], str]:
    """({name: one sample}, the name of the input to explain)."""
    if not isinstance(inputs, Mapping):
        if m.inputs is not None and len(m.inputs) != 1 and explain_input is None:
            raise PackagerError(
                f"model {m.name!r} has inputs {', '.join(m.inputs)}; give each one by name"
            )
        only = explain_input or (next(iter(m.inputs)) if m.inputs else "input")
        inputs = {only: inputs}
    if not inputs:
        raise PackagerError("no inputs given: explain needs the one sample to explain")
    sample = {k: _as_sample(m, k, v) for k, v in inputs.items()}
    if m.inputs is not None:
        unknown = [k for k in sample if k not in m.inputs]
        missing = [k for k in m.inputs if k not in sample]
        if unknown or missing:
            raise PackagerError(
                f"model {m.name!r} has inputs {', '.join(m.inputs)}; "
                + (f"it has no {', '.join(unknown)}" if unknown else "")
                + ("; " if unknown and missing else "")
                + (f"give {', '.join(missing)} too" if missing else "")
            )
    if explain_input is not None:
        if explain_input not in sample:
            raise PackagerError(
                f"input {explain_input!r} to explain is not among the inputs given "
                f"({', '.join(sample)})"
            )
        return sample, explain_input
    if len(sample) > 1:
        raise PackagerError(
            f"model {m.name!r} has several inputs ({', '.join(sample)}): name the one to explain "
            "with --explain-input NAME (explain_input=); the others stay as given"
        )
    return sample, next(iter(sample))


def _as_sample(m: _Model, name: str, value: Any) -> np.ndarray:
    dims = m.inputs[name][1] if m.inputs is not None and name in m.inputs else None
    if isinstance(value, (str, bytes)):
        arr = np.empty(1, dtype=object)
        arr[0] = value
        return arr.reshape(dims) if dims and int(np.prod(dims)) == 1 else arr
    arr = np.asarray(value)
    if arr.dtype.kind in "SU":
        arr = arr.astype(object)
    if dims is not None and m.max_batch_size > 0 and arr.shape == (1, *dims):
        arr = arr[0]  # saved as a batch of one
    if dims is not None and (
        arr.ndim != len(dims) or any(d not in (-1, s) for d, s in zip(dims, arr.shape, strict=True))
    ):
        raise PackagerError(
            f"input {name!r} of model {m.name!r} takes one sample of dims {list(dims)}; got "
            f"shape {list(arr.shape)}"
        )
    return arr


def _features(
    x: np.ndarray,
    name: str,
    kind: str,
    baseline: Any,
    patch: int | None,
    channels: str | None,
    known: dict[str, tuple[str, tuple[int, ...]]] | None,
) -> tuple[Features, str]:
    """The features of input ``name`` and how its baseline was made."""
    is_text = x.dtype == object or (known is not None and known[name][0] == "BYTES")
    if kind == "auto":
        kind = "text" if is_text else "tabular" if x.ndim <= 1 else "image"
    if kind not in feat.KINDS:
        raise PackagerError(f"unknown kind {kind!r}; choose from auto, {', '.join(feat.KINDS)}")
    if (kind == "text") != is_text:
        raise PackagerError(
            f"input {name!r} holds {'strings' if is_text else 'numbers'}: it cannot be explained "
            f"as {kind}"
        )
    if kind == "text":
        if x.size != 1:
            raise PackagerError(f"input {name!r}: explain one text at a time (got {x.size})")
        text = x.reshape(-1)[0]
        text = text.decode() if isinstance(text, bytes) else str(text)
        word = None if baseline in (None, "drop") else str(baseline)
        tokens = feat.TextTokens(text, word, tuple(x.shape))
        if tokens.count == 0:
            raise PackagerError("the text has no words to attribute")
        return tokens, "drop the word" if word is None else f"replace by {word!r}"
    if x.dtype.kind not in "biuf":
        raise PackagerError(f"input {name!r} of dtype {x.dtype} cannot be perturbed")
    if kind == "image":
        if x.ndim not in (2, 3):
            raise PackagerError(
                f"input {name!r} of shape {list(x.shape)} is not an image (H x W, with at most "
                "one channel axis); use --feature-kind tabular to attribute each element"
            )
        layout = feat.image_layout(x.shape, channels)
        spatial = x.shape[1:] if layout == "first" else x.shape[:2]
        size = patch or feat.default_patch((int(spatial[0]), int(spatial[1])))
        if size < 1:
            raise PackagerError(f"patch size must be 1 or more; got {size}")
        base, how = feat.numeric_baseline(baseline, x, "image", layout, size)
        return feat.ImagePatches(x, base, size, layout), how
    base, how = feat.numeric_baseline(baseline, x, "tabular")
    return feat.TabularFeatures(x, base, name), how


def _output(m: _Model, probe: Arrays, output: str | None) -> str:
    names = list(m.outputs) if m.outputs is not None else list(probe)
    numeric = [n for n in names if n in probe and np.asarray(probe[n]).dtype.kind in "biuf"]
    if output is None:
        if not numeric:
            raise PackagerError(f"model {m.name!r} has no numeric output to explain")
        return numeric[0]
    if output not in names:
        raise PackagerError(
            f"model {m.name!r} has no output {output!r}; its outputs are: {', '.join(names)}"
        )
    if output not in numeric:
        raise PackagerError(
            f"output {output!r} holds strings; attributions need a numeric output: "
            f"{', '.join(numeric) or '(none)'}"
        )
    return output


def _target(target: int | str | None, first: np.ndarray, output: str) -> int:
    n = first.size
    if target is None or target == "auto":
        return int(np.argmax(first)) if n > 1 else 0
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise PackagerError(
            f"target must be 'auto' or an index into {output!r}; got {target!r}"
        ) from None
    if not 0 <= index < n:
        raise PackagerError(
            f"target {index} is out of range: output {output!r} has {n} value(s) per sample "
            f"(0..{n - 1})"
        )
    return index
