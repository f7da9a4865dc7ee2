"""The decoupled Python-backend model of ``build --task text-generation`` (copied as ``model.py``).

It speaks the interface of Triton's vLLM backend (r24.10), so the same client code works
against a vLLM-backed Triton on a GPU host:

- inputs ``text_input`` (BYTES), optional ``stream`` (BOOL), ``sampling_parameters`` (BYTES,
  JSON) and ``exclude_input_in_output`` (BOOL); output ``text_output`` (BYTES);
- without ``sampling_parameters`` the request parameters are read instead, so
  ``POST /v2/models/NAME/generate`` and ``generate_stream`` take ``{"text_input": ...,
  "parameters": {"temperature": 0, "max_tokens": 32}}``;
- streaming sends each new piece of text as one response, the last one flagged final; without
  streaming one response holds the whole text (prompt first unless ``exclude_input_in_output``);
- a bad request gets one error response (flagged final); other requests go on.

``execute`` only parses and queues: the engine's own thread (``tp_engine.py``, the copy of
:mod:`packager.generate.engine`) batches every running generation per step.
"""

import json
import os
import queue
import sys
import threading
import time

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tp_engine  # the engine file beside this one


class _Sender:
    """A request's response sender as the engine's sink. Sending happens on the responder's
    thread, so the decoding loop never waits for Triton; ``cancelled()`` reads a flag that the
    responder refreshes. ``extras``: the additional outputs the request asked for
    (``finish_reason``, ``num_input_tokens``, ``num_output_tokens``, as the vLLM backend)."""

    __slots__ = (
        "checked", "counts", "extras", "reported", "responder", "sender", "stopped", "watched",
    )  # fmt: skip

    def __init__(self, sender, responder, extras=()):
        self.sender = sender
        self.responder = responder
        self.stopped = False
        self.watched = False  # in the responder's live set (from the engine's first question)
        self.checked = 0.0  # time.monotonic() of the last is_cancelled() question
        self.extras = extras
        self.counts = (0, 0, None)  # prompt tokens, completion tokens, finish reason
        self.reported = 0  # completion tokens already counted in sent responses

    def usage(self, prompt_tokens, completion_tokens, reason):
        self.counts = (prompt_tokens, completion_tokens, reason)

    def send(self, text, final):
        self.responder.chunks.put((self, text, final, None, self.counts))

    def fail(self, message):
        self.responder.chunks.put((self, "", True, message, self.counts))

    def cancelled(self):
        if not self.watched:
            self.watched = True
            self.responder.live.add(self)
        return self.stopped

    def outputs(self, text, counts):
        """The response's tensors: the text, and the extras asked for."""
        import numpy as np

        tensors = [pb_utils.Tensor("text_output", _bytes([text]))]
        prompt, completion, reason = counts
        if "finish_reason" in self.extras:
            tensors.append(pb_utils.Tensor("finish_reason", _bytes([reason or ""])))
        if "num_input_tokens" in self.extras:
            tensors.append(pb_utils.Tensor("num_input_tokens", np.array([prompt], np.uint32)))
        if "num_output_tokens" in self.extras:
            n = np.array([completion - self.reported], np.uint32)  # since the last response
            tensors.append(pb_utils.Tensor("num_output_tokens", n))
        self.reported = completion
        return tensors


class _Responder:
    """One thread that sends every response: chunks of a sequence that queue up while Triton
    takes a response are merged into one (same text, fewer messages), and each live request's
    cancellation is checked after a send (at most every ``CHECK_S`` per request: each
    ``is_cancelled()`` is a round trip to the server process, as costly as a send), or every
    ``POLL_S`` when it has nothing to send."""

    POLL_S = 0.1
    CHECK_S = 0.02

    def __init__(self):
        self.chunks: queue.Queue = queue.Queue()  # (sink, text, final, error, counts) or None
        self.live = set()
        self.thread = threading.Thread(target=self._loop, name="tp-responder", daemon=True)
        self.thread.start()

    def stop(self):
        self.chunks.put(None)
        self.thread.join(10)

    def _loop(self):
        while True:
            try:
                items = [self.chunks.get(timeout=self.POLL_S)]
            except queue.Empty:
                for sink in list(self.live):
                    self._check(sink)
                continue
            while True:
                try:
                    items.append(self.chunks.get_nowait())
                except queue.Empty:
                    break
            merged: dict = {}  # sink -> [text, final, error, counts], in arrival order
            for item in items:
                if item is None:
                    return
                sink, text, final, error, counts = item
                entry = merged.setdefault(sink, ["", False, None, counts])
                entry[0] += text
                entry[1] = entry[1] or final
                entry[2] = entry[2] or error
                entry[3] = counts  # the latest
            for sink, (text, final, error, counts) in merged.items():
                self._send(sink, text, final, error, counts)

    def _send(self, sink, text, final, error, counts):
        try:
            if error is not None:
                _send_error(sink.sender, error)
            else:
                flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
                response = pb_utils.InferenceResponse(output_tensors=sink.outputs(text, counts))
                sink.sender.send(response, flags=flags)
        except Exception as exc:  # the client went away; stop generating for it
            pb_utils.Logger.log_warn(f"sending a response failed: {exc}")
            sink.stopped = True
        if final or error is not None:
            self.live.discard(sink)
        elif time.monotonic() - sink.checked >= self.CHECK_S:
            self._check(sink)

    def _check(self, sink):
        sink.checked = time.monotonic()
        if not sink.stopped and sink.sender.is_cancelled():
            sink.stopped = True
            self.live.discard(sink)


def _bytes(items):
    import numpy as np

    return np.array([t.encode("utf-8") for t in items], dtype=np.object_)


def _send_error(sender, message):
    error = pb_utils.TritonError(message)
    response = pb_utils.InferenceResponse(output_tensors=[], error=error)
    sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def _scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise tp_engine.GenerationError(f"{name} must hold one value, got {values.size}")
    return values[0]


# Additional outputs a request may ask for with a BOOL input ``return_<name>`` (vLLM backend's).
EXTRAS = ("finish_reason", "num_input_tokens", "num_output_tokens")

METRICS = {
    "tokens": ("tp_generation_tokens_total", "Tokens generated"),
    "finished": ("tp_generation_requests_finished_total", "Generations that ran to their end"),
    "cancelled": ("tp_generation_requests_cancelled_total", "Generations cancelled by clients"),
    "failed": ("tp_generation_requests_failed_total", "Generations ended by an error frame"),
    "steps": ("tp_generation_steps_total", "Decoding steps (one forward pass for the whole batch)"),
    "rows": (
        "tp_generation_step_rows_total",
        "Sequences advanced by decoding steps (the sum of each step's batch width)",
    ),
}


def _metrics(args):
    """Prometheus counters on Triton's metrics port (none when metrics are off). Each value
    is (family, metric): a family must outlive its metrics."""
    labels = {"model": args["model_name"], "version": args["model_version"]}
    out = {}
    try:
        for key, (name, text) in METRICS.items():
            family = pb_utils.MetricFamily(
                name=name, description=text, kind=pb_utils.MetricFamily.COUNTER
            )
            out[key] = (family, family.Metric(labels=labels))
    except pb_utils.TritonModelException:  # the server runs without metrics
        return {}
    return out


def _device(args):
    """The instance's GPU for a KIND_GPU instance (Triton gives its id), else the CPU."""
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{int(args['model_instance_device_id'])}"
    return "cpu"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException(
                "this model streams: its config.pbtxt needs model_transaction_policy "
                "{ decoupled: true } (rebuild it with triton-packager build --task text-generation)"
            )
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.dirname(os.path.abspath(__file__))
        self.engine = tp_engine.Engine.load(
            os.path.join(here, params.get("model_folder", "hf")),
            threads=int(params.get("threads", "0")) or None,
            max_batch=int(params.get("max_running", "32")),
            device=_device(args),
            dtype=params.get("dtype", "float32"),
        )
        self.metrics = _metrics(args)
        if self.metrics:
            self.engine.on_count = lambda name, n: self.metrics[name][1].increment(n)
        # This stub process runs three threads (Triton's, the engine's, the responder's);
        # Python's default 5 ms GIL switch interval would add up to 5 ms to every hand-off.
        sys.setswitchinterval(float(params.get("switch_interval_s", "0.0005")))
        self.responder = _Responder()
        self.engine.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                prompt = _scalar(request, "text_input")
                if prompt is None:
                    raise tp_engine.GenerationError("text_input is missing: give a prompt")
                if isinstance(prompt, bytes):
                    prompt = prompt.decode("utf-8")
                stream = _scalar(request, "stream")
                exclude = _scalar(request, "exclude_input_in_output")
                params = _scalar(request, "sampling_parameters")
                if params is None:
                    params = request.parameters()
                elif isinstance(params, bytes):
                    params = params.decode("utf-8")
                sampling = tp_engine.parse_sampling(params)
                extras = tuple(name for name in EXTRAS if bool(_scalar(request, f"return_{name}")))
                special = _scalar(request, "add_special_tokens")
                self.engine.submit(
                    str(prompt),
                    sampling,
                    _Sender(sender, self.responder, extras),
                    stream=bool(stream),
                    prepend=None if exclude is None else not bool(exclude),
                    special_tokens=True if special is None else bool(special),
                )
            except (tp_engine.GenerationError, UnicodeDecodeError) as exc:
                _send_error(sender, str(exc))
            except Exception as exc:  # one request's failure must not reach the others
                _send_error(sender, f"generation failed: {type(exc).__name__}: {exc}")
        return None

    def finalize(self):
        self.engine.stop()
        self.responder.stop()
