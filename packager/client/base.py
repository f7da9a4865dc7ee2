"""What :class:`~packager.client.Client` and :class:`~packager.client.AsyncClient` share.

Everything here is pure (no I/O): options, the (model, version) cache of model facts, and the
calls to send. The two clients add only the sending, one blocking and one awaiting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from packager.client.core import (
    Endpoint,
    ModelFacts,
    ModelInfo,
    RetryPolicy,
    SequenceFlags,
    TLSOptions,
    parse_url,
    prepare_inputs,
)
from packager.client.guard import check_seconds
from packager.errors import (
    ClientError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerUnavailable,
)

__all__ = [
    "ClientBase",
    "add_batch_dim",
    "not_ready_error",
    "strip_batch_dim",
    "version_text",
]


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Header names and values: strings, printable ASCII names, no line breaks."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidInput(f"headers must be a mapping of str to str; got {headers!r}")
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidInput(f"headers must map str to str; got {k!r}: {v!r}")
        if not k or not k.isascii() or not k.isprintable() or any(c in k for c in " :"):
            raise InvalidInput(f"header name {k!r} must be printable ASCII without ':' or spaces")
        if "\r" in v or "\n" in v or "\x00" in v or not v.isprintable():
            raise InvalidInput(f"header {k!r} has a line break or control character in its value")
    return dict(headers)


def version_text(version: int | str | None) -> str:
    """Triton versions are positive integers; "" (or None) means the server's choice."""
    if version is None or version == "":
        return ""
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"model version must be a positive integer; got {version!r}")
    return text


class ClientBase:
    """Options, codec and model-facts cache; subclasses send."""

    def __init__(
        self,
        url: str | None = None,
        *,
        protocol: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        retries: int = 2,
        retry_backoff_s: float = 0.05,
        tls: TLSOptions | None = None,
    ) -> None:
        self.endpoint: Endpoint = parse_url(url, protocol)
        self.timeout_s = check_seconds("timeout_s", timeout_s)
        self.connect_timeout_s = check_seconds("connect_timeout_s", connect_timeout_s)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInput(f"retries must be an integer, 0 or more; got {retries!r}")
        if retry_backoff_s != 0:
            check_seconds("retry_backoff_s", retry_backoff_s)
        self.headers = check_headers(headers)
        self.retry = RetryPolicy(retries, retry_backoff_s)
        self.tls = tls
        self._facts: dict[tuple[str, str], ModelFacts] = {}
        if self.endpoint.protocol == "http":
            from packager.client.httpwire import HttpCodec

            self._codec: Any = HttpCodec()
        else:
            from packager.client.grpcwire import GrpcCodec

            self._codec = GrpcCodec()

    def _timeout(self, timeout_s: float | None) -> float:
        """A call's ``timeout_s``: the client's when None (or 0), else checked."""
        return self.timeout_s if not timeout_s else check_seconds("timeout_s", timeout_s)

    @property
    def url(self) -> str:
        """The server address with its scheme, e.g. ``http://localhost:8000``."""
        return str(self.endpoint)

    @property
    def protocol(self) -> str:
        return self.endpoint.protocol

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- the facts cache ---------------------------------------------------------------------

    def clear_cache(self, model: str | None = None) -> None:
        """Forget cached metadata/config (of ``model``, or of all models)."""
        if model is None:
            self._facts.clear()
            return
        for key in [k for k in self._facts if k[0] == model]:
            self._facts.pop(key, None)

    def _infer_call(
        self,
        facts: ModelFacts,
        inputs: Any,
        outputs: Sequence[str] | None,
        request_id: str,
        priority: int,
        parameters: Mapping[str, Any] | None,
        sequence: SequenceFlags | None = None,
    ) -> Any:
        prepared = prepare_inputs(facts, inputs)
        if outputs is not None:
            unknown = [o for o in outputs if o not in facts.outputs]
            if unknown:
                raise InvalidInput(
                    f"model '{facts.name}' has no output(s) {', '.join(unknown)}; outputs are: "
                    f"{', '.join(facts.outputs)}"
                )
        if priority < 0:
            raise InvalidInput(f"priority must be 0 (default) or positive; got {priority}")
        if sequence is not None:
            parameters = {**(parameters or {}), **sequence.parameters()}
        return self._codec.infer(
            facts.name,
            facts.version,
            prepared,
            outputs,
            request_id=request_id,
            priority=priority,
            parameters=parameters,
        )


def add_batch_dim(facts: ModelFacts, sample: Any) -> Any:
    """One sample -> a batch of one (unchanged for models that do not batch)."""
    if facts.max_batch_size <= 0:
        return sample
    if not isinstance(sample, Mapping):
        if len(facts.inputs) != 1:
            names = ", ".join(facts.inputs)
            raise InvalidInput(f"model '{facts.name}' has inputs {names}; pass a dict")
        sample = {next(iter(facts.inputs)): sample}
    out = {}
    for name, value in sample.items():
        spec = facts.inputs.get(name)
        if isinstance(value, np.ndarray) or spec is None:
            arr = np.asarray(value)
        else:
            arr = np.asarray(
                value, dtype=object if spec.dtype.wire == "BYTES" else spec.dtype.numpy
            )
        out[name] = arr[np.newaxis]
    return out


def strip_batch_dim(facts: ModelFacts, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if facts.max_batch_size <= 0:
        return outputs
    return {k: v[0] for k, v in outputs.items()}


def not_ready_error(
    url: str, model: str | None, timeout_s: float, index: list[ModelInfo] | None
) -> ClientError:
    """Why ``wait_until_ready`` gave up: unreachable, not ready, unknown model or its state."""
    if index is None:
        return ServerUnavailable(
            f"server at {url} did not become reachable within {timeout_s:g} s; is tritonserver "
            "running, and are the host, port and protocol right?"
        )
    if model is None:
        return ServerUnavailable(
            f"server at {url} is live but not ready after {timeout_s:g} s (a model failed to "
            "load?); see the server log"
        )
    rows = [r for r in index if r.name == model]
    if not rows:
        names = ", ".join(sorted({r.name for r in index})) or "(none)"
        return ModelNotFound(f"model '{model}' is not in the server's repository; models: {names}")
    state = "; ".join(
        f"version {r.version or '?'}: {r.state or 'not loaded'}"
        + (f" ({r.reason})" if r.reason else "")
        for r in rows
    )
    return ModelNotReady(f"model '{model}' is not ready after {timeout_s:g} s: {state}")
