"""TensorFlow SavedModels in a graph session, and their conversion to a verified ONNX model.

A SavedModel is loaded the way TF Serving and Triton's TensorFlow backend load it: its MetaGraph
into a graph session (``tf.compat.v1.saved_model.loader``), then a *signature* (``serving_default``)
names the input and output tensors. This also loads SavedModels written by Keras 2 with their
optimizer, which ``tf.saved_model.load`` of TF >= 2.16 refuses (``'_UserObject' object has no
attribute 'add_slot'``); basic-pitch's model is one.

The signature's tensors are frozen into constants and converted by tf2onnx (ONNX names = the
signature's keys), then ONNX Runtime is compared with TensorFlow on random inputs at two batch
sizes before anything is written. :mod:`packager.sources.tf_savedmodel` and
:mod:`packager.sources.keras_file` are the two sources built on this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packager import dtypes
from packager.errors import DTypeError, SourceError
from packager.formats import FORMATS
from packager.sources import LoadedModel, Signature, SourceOptions
from packager.sources.inputs import random_inputs, resolve_examples
from packager.sources.progress import slow_step
from packager.sources.verify import DEFAULT_ATOL, DEFAULT_RTOL, Runner, onnx_runner, verify
from packager.spec import TensorSpec

FMT = FORMATS["onnx"]
DEFAULT_OPSET = 17  # ONNX Runtime >= 1.12 and Triton 2.51's onnxruntime backend run it
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
DYNAMIC_SIZE = 16  # size given to dynamic non-batch dims (image sides, sequence lengths)
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def import_tf() -> Any:
    """``tensorflow``, with its C++ start-up notices off and Keras on the TensorFlow backend."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    # TF's C++ side writes start-up notices (oneDNN, absl) to fd 2 whatever the log level:
    # keep them off the terminal for the import only. Python errors still raise as usual.
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf  # the tensorflow extra (a missing one names it)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


def is_saved_model(ref: Any) -> bool:
    return (
        isinstance(ref, (str, Path))
        and Path(ref).is_dir()
        and any((Path(ref) / f).is_file() for f in SAVED_MODEL_FILES)
    )


@dataclass
class GraphModel:
    """One signature of a SavedModel, loaded in its own graph session."""

    path: Path
    signature_name: str
    session: Any
    inputs: dict[str, str]  # signature key -> graph tensor name
    outputs: dict[str, str]
    specs: tuple[TensorSpec, ...]  # inputs, full shapes (-1 where dynamic)
    output_specs: tuple[TensorSpec, ...]

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.session.run(
            self.outputs, feed_dict={self.inputs[k]: np.asarray(feed[k]) for k in self.inputs}
        )
        return {k: np.asarray(result[k]) for k in self.outputs}

    def close(self) -> None:
        self.session.close()


def load_saved_model(path: Path, signature: str | None = None) -> GraphModel:
    """Load the ``serve`` MetaGraph of ``path`` and pick ``signature`` (default: serving_default)."""
    tf = import_tf()
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default(), quiet():
            meta = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(path))
    except RuntimeError as exc:  # no MetaGraph tagged "serve"
        session.close()
        raise SourceError(
            f"{path} has no MetaGraph tagged {SERVE_TAG!r} ({first_line(exc)}); export it for "
            "serving (tf.saved_model.save or keras model.export)"
        ) from exc
    except Exception as exc:  # TF raises many kinds for corrupt or foreign folders
        session.close()
        raise SourceError(
            f"TensorFlow cannot load the SavedModel {path}: {type(exc).__name__}: "
            f"{first_line(exc)}. Check that the folder is complete (saved_model.pb + variables/)"
        ) from exc
    try:
        name, sig = _pick_signature(meta, path, signature)
        # A signature's tensors are protobuf maps, whose iteration order changes from one
        # process to the next: sorted by key, the converted graph (and model.onnx's bytes) and
        # the config's tensor order are the same at every build.
        ins, outs = sorted(sig.inputs.items()), sorted(sig.outputs.items())
        in_specs = tuple(_tensor(k, info, path, name) for k, info in ins)
        out_specs = tuple(_tensor(k, info, path, name) for k, info in outs)
    except BaseException:
        session.close()
        raise
    return GraphModel(
        path,
        name,
        session,
        {k: v.name for k, v in ins},
        {k: v.name for k, v in outs},
        in_specs,
        out_specs,
    )


def _pick_signature(meta: Any, path: Path, wanted: str | None) -> tuple[str, Any]:
    names = sorted(k for k in meta.signature_def if not k.startswith("_"))
    if wanted is None:
        if DEFAULT_SIGNATURE in meta.signature_def:
            wanted = DEFAULT_SIGNATURE
        elif len(names) == 1:
            wanted = names[0]
    if wanted is None or wanted not in meta.signature_def:
        raise SourceError(
            f"{path} has no signature {wanted or DEFAULT_SIGNATURE!r}; it has: "
            f"{', '.join(names) or 'none'}. Export the serving function as {DEFAULT_SIGNATURE!r} "
            "(tf.saved_model.save(obj, dir, signatures={'serving_default': fn}))"
        )
    return wanted, meta.signature_def[wanted]


def _tensor(key: str, info: Any, path: Path, sig: str) -> TensorSpec:
    tf = import_tf()
    where = f"{path} signature {sig!r}: {key!r}"
    if info.WhichOneof("encoding") != "name":  # coo_sparse or composite_tensor (ragged...)
        raise SourceError(
            f"{where} is a {info.WhichOneof('encoding')} value, not a dense tensor; Triton sends "
            "dense tensors only: export a signature that takes and returns dense tensors"
        )
    try:
        dt = dtypes.from_numpy(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
    except (DTypeError, TypeError) as exc:
        raise SourceError(f"{where}: data type {info.dtype} has no Triton equivalent") from exc
    if info.tensor_shape.unknown_rank:
        raise SourceError(
            f"{where} has an unknown rank; Triton needs one: give the serving function an "
            "input_signature with a shape (None for dynamic dims)"
        )
    return TensorSpec(key, dt, tuple(d.size if d.size > 0 else -1 for d in info.tensor_shape.dim))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """TF and tf2onnx log every step (deprecations, graph rewrites) to stdout and logging: keep
    it off the terminal; yields the error messages logged meanwhile (tf2onnx's unsupported ops)."""
    collect = _Collect()
    loggers = [logging.getLogger(n) for n in ("tensorflow", "tf2onnx", "absl")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
        lg.propagate = False
        lg.addHandler(collect)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield collect.messages
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(collect)
            lg.setLevel(level)
            lg.propagate = propagate


# tf2onnx's words for an op it has no rule for: "Tensorflow op [scope/name: OpType] is not supported"
_UNSUPPORTED = re.compile(r"Tensorflow op \[(?:[^\]]*: )?(\w+)\] is not supported")
_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}  # left over when a body op failed


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


# --- conversion --------------------------------------------------------------------------------


def to_onnx(model: GraphModel, target: Path, opset: int | None) -> dict[str, Any]:
    """Freeze the signature's subgraph and convert it with tf2onnx; facts for the build record."""
    tf = import_tf()
    import onnx
    import tf2onnx
    from tf2onnx import tf_loader

    started = time.perf_counter()
    # tf2onnx numbers the nodes it adds from a process-wide counter: start it afresh, so that
    # a second conversion in the same process names them as the first did.
    tf2onnx.utils.INTERNAL_NAME = 1
    in_names, out_names = list(model.inputs.values()), list(model.outputs.values())
    rename = {v: k for k, v in model.inputs.items()} | {v: k for k, v in model.outputs.items()}
    try:
        with model.session.graph.as_default(), quiet() as logged:
            frozen = tf_loader.freeze_session(model.session, in_names, out_names)
            frozen = tf_loader.tf_optimize(in_names, out_names, frozen)
            # convert.from_graph_def would import and freeze the graph a second time, which
            # loses the functions of Keras 3 exports (KeyError '__inference___call___N'): the
            # common step behind it takes the frozen graph as it is.
            proto, _ = tf2onnx.convert._convert_common(
                frozen,
                name=model.path.name,
                continue_on_error=True,
                opset=opset or DEFAULT_OPSET,
                input_names=in_names,
                output_names=out_names,
                tensors_to_rename=rename,
            )
    except tf.errors.OpError as exc:
        raise SourceError(f"TensorFlow cannot freeze {model.path}: {first_line(exc)}") from exc
    except Exception as exc:  # tf2onnx raises plain exceptions for what it cannot handle
        raise SourceError(
            f"tf2onnx cannot convert {model.path} (signature {model.signature_name!r}): "
            f"{type(exc).__name__}: {first_line(exc)}"
        ) from exc
    # tf2onnx keeps going past ops it has no rule for and leaves them as TF ops in the graph:
    # ONNX Runtime would refuse the file at load, so name them now.
    left = {n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain or "")}
    named = {m.group(1) for line in logged if (m := _UNSUPPORTED.search(line))} - _CALL_OPS
    foreign = sorted(named or left) if left else []
    if foreign:
        raise SourceError(
            f"tf2onnx has no ONNX equivalent for the TensorFlow op(s) {', '.join(foreign)} in "
            f"{model.path}; rewrite those layers with supported ops (tf2onnx's support_status.md "
            "lists them) or serve the model with Triton's TensorFlow backend. Nothing was written"
        )
    from packager.sources.onnx_edits import canonical_names

    canonical = canonical_names(proto)  # the same graph gives the same bytes at every build
    onnx.save(proto, str(target))
    return {
        "canonical_names": canonical,
        "converter": f"tf2onnx {tf2onnx.__version__}",
        "tensorflow": tf.__version__,
        "onnx_opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "conversion_s": round(time.perf_counter() - started, 2),
    }


def verification_cases(
    specs: Sequence[TensorSpec], example_inputs: Any
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The example (given, or random at batch 2) and random data one batch larger."""
    batched = all(s.dims and s.dims[0] == -1 for s in specs)
    if example_inputs is None:
        first = random_inputs(_per_sample(specs, batched), 2 if batched else None, DYNAMIC_SIZE)
    else:
        first = resolve_examples(example_inputs)
        missing = [s.name for s in specs if s.name not in first]
        if missing:
            raise SourceError(
                f"the example inputs lack {', '.join(missing)}; the model takes "
                f"{', '.join(s.name for s in specs)}"
            )
        first = {s.name: first[s.name].astype(s.dtype.numpy, copy=False) for s in specs}
    # The second case keeps each input's non-batch shape and adds a row (new random data).
    n = next(iter(first.values())).shape[0] if batched and first else 0
    shaped = [
        TensorSpec(s.name, s.dtype, tuple(first[s.name].shape[1 if batched else 0 :]))
        for s in specs
    ]
    second = random_inputs(shaped, n + 1 if batched else None, seed=7)
    label1 = f"example (batch {n})" if batched else "example"
    return [(label1, first), (f"batch {n + 1}" if batched else "random", second)]


def _per_sample(specs: Sequence[TensorSpec], batched: bool) -> list[TensorSpec]:
    return [TensorSpec(s.name, s.dtype, s.dims[1:] if batched else s.dims) for s in specs]


def convert_and_verify(
    model: GraphModel,
    reference: Runner,
    options: SourceOptions,
    record: dict[str, Any],
    workdir: tempfile.TemporaryDirectory[str],
) -> LoadedModel:
    """The signature as a verified ONNX model, ``reference`` (TF or Keras) run on the same inputs."""
    from packager.sources.onnx_file import load_proto, signature_of

    artifact = Path(workdir.name) / FMT.artifact
    with slow_step("converting to ONNX (tf2onnx)"):
        facts = to_onnx(model, artifact, options.opset)
    signature = signature_of(load_proto(artifact, external=False), artifact)
    _check_names(model, signature)
    record = {**record, "tensorflow": facts}
    if not options.verify:
        record["verification"] = {"skipped": True}
    else:
        atol = DEFAULT_ATOL if options.atol is None else float(options.atol)
        rtol = DEFAULT_RTOL if options.rtol is None else float(options.rtol)
        cases = verification_cases(model.specs, options.example)
        candidate = onnx_runner(artifact, list(model.outputs))
        with slow_step("verifying the conversion against TensorFlow"):
            report = verify(
                _guarded(reference, "TensorFlow"),
                _guarded(candidate, "ONNX Runtime"),
                cases,
                atol=atol,
                rtol=rtol,
                what="converted ONNX model",
            )
        record["verification"] = report.to_record()
        record["max_abs_err"] = max((c.max_abs_err for c in report.checks), default=0.0)
    return LoadedModel(
        format=FMT.name,
        platform=FMT.platform,
        signature=Signature(_graph_dims(signature.inputs, model.specs), signature.outputs),
        files={FMT.artifact: artifact},
        record=record,
        workdir=workdir,
    )


def _check_names(model: GraphModel, signature: Signature) -> None:
    got = ([t.name for t in signature.inputs], sorted(t.name for t in signature.outputs))
    want = (list(model.inputs), sorted(model.outputs))
    if sorted(got[0]) != sorted(want[0]) or got[1] != want[1]:
        raise SourceError(
            f"the converted model's tensors ({', '.join(got[0])} -> {', '.join(got[1])}) do not "
            f"match the signature's ({', '.join(want[0])} -> {', '.join(want[1])}); "
            "give the signature's tensors distinct names"
        )


def _graph_dims(onnx_inputs: Sequence[TensorSpec], tf_inputs: Sequence[TensorSpec]) -> tuple:
    """Input dims as the signature declares them (tf2onnx may lose a fixed dim to a symbol)."""
    by_name = {t.name: t for t in tf_inputs}
    return tuple(
        by_name[t.name] if len(by_name.get(t.name, t).dims) == len(t.dims) else t
        for t in onnx_inputs
    )


def _guarded(run: Runner, what: str) -> Runner:
    def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return run(inputs)
        except SourceError:
            raise
        except Exception as exc:
            shapes = ", ".join(f"{k} {a.dtype}{list(a.shape)}" for k, a in inputs.items())
            raise SourceError(
                f"{what} failed on the verification inputs ({shapes}): {type(exc).__name__}: "
                f"{first_line(exc)}. Give --example-input FILE.npz with inputs the model accepts"
            ) from exc

    return call


def new_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="tp-tf-")
