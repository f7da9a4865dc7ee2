"""Measuring tuning candidates on a real Triton server in explicit model-control mode.

Each candidate is loaded with a *config override* (``POST /v2/repository/models/<m>/load`` with
``{"parameters": {"config": "<json>"}}``): Triton uses the given config instead of the file, so
the repository on disk is never touched while searching. The override starts from the config the
server itself serves for the model (so it keeps whatever the server needs, e.g. the Python-backend
shadow of an ONNX model on the embedded server) and changes only the tuned knobs; dynamic
batching settings other than the queue delay come from the user's config.pbtxt.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from packager.errors import ClientError, PackagerError, TuneError
from packager.tune.search import Candidate, Point, Trial

if TYPE_CHECKING:
    from packager.client import Client


@dataclass(frozen=True)
class LoadJob:
    """One measurement window for the load generator: batch-1 requests from ``concurrency`` workers."""

    url: str  # host:port of the HTTP endpoint
    model: str
    inputs: Mapping[str, np.ndarray]
    concurrency: int
    duration_s: float
    warmup_s: float
    protocol: str = "http"


LoadFn = Callable[[LoadJob], Point]


def current_candidate(config: Any) -> Candidate:
    """The candidate a parsed ``ModelConfig`` describes (Triton's defaults where unset)."""
    instances = sum(max(g.count, 1) for g in config.instance_group) or 1
    batching = config.HasField("dynamic_batching")
    delay = config.dynamic_batching.max_queue_delay_microseconds if batching else 0
    return Candidate(
        instances, config.max_batch_size, batching and config.max_batch_size > 0, delay
    )


def override_config(served: Mapping[str, Any], user: Any, c: Candidate) -> dict[str, Any]:
    """``served`` (the server's JSON config for the model) with ``c``'s settings applied.

    ``user`` is the parsed config.pbtxt: it supplies the dynamic batching fields we do not tune
    (preferred sizes, priorities, queue policy). Triton auto-completes the served config, e.g. it
    fills ``preferred_batch_size`` with the old max batch size, which would be invalid for a
    smaller one; so the served dynamic batching block is never reused.
    """
    from google.protobuf import json_format

    cfg = copy.deepcopy(dict(served))
    if int(cfg.get("max_batch_size", 0)) > 0:
        cfg["max_batch_size"] = c.max_batch_size
    groups = [dict(g) for g in cfg.get("instance_group", [])]
    if len(groups) > 1 and c.instances == sum(int(g.get("count", 1)) for g in groups):
        pass  # several groups (e.g. per GPU) measured as they are
    else:
        group = groups[0] if groups else {"kind": "KIND_CPU"}
        group["count"] = c.instances
        cfg["instance_group"] = [group]
    if c.dynamic_batching:
        db: dict[str, Any] = {}
        if user.HasField("dynamic_batching"):
            db = json_format.MessageToDict(user.dynamic_batching, preserving_proto_field_name=True)
        db["max_queue_delay_microseconds"] = c.queue_delay_us
        preferred = [
            int(b) for b in db.pop("preferred_batch_size", []) if int(b) <= c.max_batch_size
        ]
        if preferred:
            db["preferred_batch_size"] = preferred
        cfg["dynamic_batching"] = db
    else:
        cfg.pop("dynamic_batching", None)
    # tune sends one request again and again: with the response cache on, every candidate
    # would measure cache hits, not the model; candidates are measured without it (the
    # applied config keeps the user's setting).
    cfg.pop("response_cache", None)
    for w in cfg.get("model_warmup", []):
        if c.max_batch_size > 0 and int(w.get("batch_size", 1)) > c.max_batch_size:
            w["batch_size"] = c.max_batch_size
    return cfg


def request_inputs(config: Any) -> dict[str, np.ndarray]:
    """One batch-1 request of random data for every input (dynamic dims set to 1)."""
    from packager.render import spec_from_config
    from packager.sources.inputs import random_inputs

    spec = spec_from_config(config)
    batch = 1 if spec.max_batch_size > 0 else None
    return random_inputs([t for t in spec.inputs if not t.optional], batch, dynamic=1)


class ServerTarget:
    """Loads, measures and unloads candidates of one model on a server at ``url``.

    ``open()`` loads the model once as the repository has it, to learn the served config;
    ``close()`` leaves the server as it was found (model loaded from the repository, or unloaded).
    """

    def __init__(
        self,
        url: str,
        model_dir: Path,
        user_config: Any,
        *,
        concurrency: tuple[int, ...],
        duration_s: float,
        warmup_s: float,
        load: LoadFn,
        protocol: str = "http",
        timeout_s: float = 300.0,
    ) -> None:
        self.url = url.removeprefix("http://").rstrip("/")
        self.model = model_dir.name
        self.user_config = user_config
        self.concurrency = concurrency
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.load = load
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.served: dict[str, Any] = {}
        self.server_version = ""
        self._was_ready = False
        self._inputs: dict[str, np.ndarray] = {}

    # -- the control API, through packager.client --------------------------------------------

    def _call(self, what: str, call: Callable[[Client], Any]) -> Any:
        """``call(client)`` on a short-lived client: an idle keep-alive connection left open
        would make the embedded server wait its exit timeout at shutdown."""
        from packager.client import Client

        try:
            with Client(self.url, protocol="http", timeout_s=self.timeout_s) as client:
                return call(client)
        except ClientError as exc:
            raise TuneError(f"{what} failed: {exc}") from None

    def _ready(self) -> bool:
        try:
            return bool(self._call("checking readiness", lambda c: c.is_ready(self.model)))
        except TuneError:
            return False

    def _load(self, config: Mapping[str, Any] | None = None) -> None:
        override = json.dumps(config) if config is not None else None
        self._call(
            f"loading model '{self.model}'", lambda c: c.load_model(self.model, config=override)
        )

    def _unload(self, wait_s: float = 60.0) -> None:
        self._call(f"unloading model '{self.model}'", lambda c: c.unload_model(self.model))
        # Triton unloads in the background; the next candidate must not share the CPU with
        # instances that are still shutting down, or its first window is measured on a busy box.
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            rows = self._call("reading the index", lambda c: c.models())
            states = {r.state for r in rows if r.name == self.model}
            if not states & {"READY", "UNLOADING", "LOADING"}:
                return
            time.sleep(0.05)

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Check the server, load the model from the repository, read the served config."""
        meta = self._call("reading the server metadata", lambda c: c.server_metadata())
        self.server_version = meta.version
        self._was_ready = self._ready()
        try:
            self._load()
        except TuneError as exc:
            hint = ""
            if "explicit" in str(exc).lower() or "not allowed" in str(exc).lower():
                hint = "; start the server with --model-control-mode explicit"
            raise TuneError(f"{exc}{hint}") from None
        from google.protobuf import json_format

        config = self._call("reading the config", lambda c: c.config(self.model))
        served = json_format.MessageToDict(config, preserving_proto_field_name=True)
        if served.get("name") != self.model:
            raise TuneError(f"the server at {self.url} returned no config for '{self.model}'")
        served_inputs = sorted(t.get("name", "") for t in served.get("input", []))
        local_inputs = sorted(t.name for t in self.user_config.input)
        if served_inputs != local_inputs:
            raise TuneError(
                f"the server's model '{self.model}' has inputs {served_inputs} but the local "
                f"config has {local_inputs}; point --url at a server of this repository"
            )
        self.served = served
        self._inputs = request_inputs(self.user_config)

    def evaluate(self, c: Candidate) -> Trial:
        """Load ``c``, measure every concurrency, unload. Failures become ``Trial.error``."""
        trial = Trial(c)
        config = override_config(self.served, self.user_config, c)
        try:
            try:
                self._load(config)
            except TuneError as exc:
                trial.error = str(exc)
                return trial
            for n in self.concurrency:
                job = LoadJob(
                    self.url,
                    self.model,
                    self._inputs,
                    n,
                    self.duration_s,
                    self.warmup_s,
                    self.protocol,
                )
                try:
                    trial.points.append(self.load(job))
                except PackagerError as exc:
                    trial.error = f"measuring at concurrency {n}: {exc}"
                    break
        finally:
            # Ctrl-C lands here too: never leave a candidate's instances running.
            with contextlib.suppress(TuneError):
                self._unload()
        return trial

    def close(self) -> str | None:
        """Leave the model as found: loaded from the repository, or unloaded. Returns a warning."""
        try:
            if self._was_ready:
                self._load()
            else:
                self._unload()
        except TuneError as exc:
            return f"could not restore model '{self.model}' on the server: {exc}"
        return None
