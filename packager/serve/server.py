"""The embedded Triton server: the real ``tritonserver`` 2.51.0 binary from the nvidia-pytriton wheel.

::

    with LocalServer("model_repository") as server:      # free ports, loopback only
        server.http_url                                   # "127.0.0.1:PORT"
        server.models()                                   # [(name, version, state, reason), ...]

The wheel ships only Triton's Python backend. Triton's own ONNX Runtime and PyTorch backends are
compiled once into the cache (:mod:`packager.serve.native`) and serve ``onnxruntime_onnx`` /
``pytorch_libtorch`` models as they were built; where a backend cannot be built (or with
``native=False``), those models run through a generated Python-backend runtime instead
(:mod:`packager.serve.shadow`), and :attr:`LocalServer.shadowed` says so per model.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packager.errors import ClientError, ServerError
from packager.serve.embedded import (
    cache_directory,
    describe_failure,
    free_port,
    load_failures,
    prepare_backends,
    server_environment,
    tritonserver_binary,
)

if TYPE_CHECKING:
    from packager.client import Client, ModelInfo
    from packager.serve.native import BackendStatus

__all__ = ["CONTROL_MODES", "LocalServer", "started_pids"]

EXIT_TIMEOUT_S = 5  # seconds Triton waits for connections and in-flight requests on SIGTERM
ControlMode = Literal["none", "explicit", "poll"]
CONTROL_MODES: tuple[str, ...] = ("none", "explicit", "poll")


# ---------------------------------------------------------------------------------------------
# Keeping track of servers so that none outlives its Python process

# Strong references: a running server forgotten by its owner is still stopped at exit.
_LIVE: set[LocalServer] = set()
_STARTED_PIDS: list[int] = []  # every tritonserver pid this process started (tests check them)


# Shared-memory regions of the Python backend's stubs are named after a prefix per start
# (``tp_shm_<our pid>_<start>_``): a server killed before its own cleanup leaves them in
# /dev/shm (1 MiB or more each); stop() and the next start remove exactly these.
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "tp_shm_"
_STARTS = itertools.count()


def shm_regions(prefix: str) -> list[Path]:
    """This prefix's regions in /dev/shm (none where there is no /dev/shm)."""
    try:
        return sorted(p for p in SHM_DIR.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _remove_orphan_regions() -> None:
    """Regions of servers whose owning Python process is gone (killed before it cleaned up)."""
    for path in shm_regions(SHM_PREFIX):
        owner = path.name[len(SHM_PREFIX) :].split("_", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                path.unlink()


def started_pids() -> list[int]:
    """Process ids of every tritonserver this Python process has started (also stopped ones)."""
    return list(_STARTED_PIDS)


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(grace_s=5.0)


def _parent_death_hook() -> Any:
    """A pre-exec function that makes the kernel SIGTERM the server when we die (Linux only).

    Covers the case atexit cannot: our Python process killed with SIGKILL. ctypes is loaded
    here, in the parent, so the child runs no import between fork and exec.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


class LocalServer:
    """A real tritonserver on this machine, started on a model repository.

    Ports given as 0 are picked free. ``start()`` returns once ``/v2/health/ready`` answers 200;
    a model that fails to load, or a server that exits, raises :class:`ServerError` with the
    server's own message. ``stop()`` sends SIGTERM, then SIGKILL to the whole process group.
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        model_control_mode: ControlMode | str = "none",
        load_models: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        shadow: bool = True,
        native: bool | None = None,
    ) -> None:
        """``shadow=False`` serves ``repository`` in place: no config is rewritten, so GPU
        instance groups, and native models without a built backend, fail with Triton's own
        message. ``native`` (default: on unless ``TRITON_PACKAGER_NATIVE=0``) uses Triton's own
        ONNX Runtime / PyTorch backends, building them on first use."""
        if model_control_mode not in CONTROL_MODES:
            raise ServerError(
                f"model control mode {model_control_mode!r} is not one of: {', '.join(CONTROL_MODES)}"
            )
        if load_models and model_control_mode != "explicit":
            raise ServerError(
                "loading named models at start (--load-model / load_models) needs "
                "model control mode 'explicit'"
            )
        self.repository = Path(repository)
        self.host = host
        self._wanted_ports = (int(http_port), int(grpc_port), int(metrics_port))
        self.http_port, self.grpc_port, self.metrics_port = self._wanted_ports
        self.model_control_mode = str(model_control_mode)
        self.load_models = tuple(load_models)
        self.startup_timeout_s = float(startup_timeout_s)
        self.log_verbose = int(log_verbose)
        self.extra_args = tuple(extra_args)
        self.shadow = shadow
        self.use_native = _native_enabled() if native is None else bool(native)
        self.shadowed: list[str] = []  # one line per model served through the Python runtime
        self.native: list[str] = []  # one line per model served by Triton's own backend
        # Why a native backend the repository needs is not used (backend name -> reason).
        self.native_unavailable: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.shm_prefix = ""  # this start's shared-memory prefix (see SHM_PREFIX)
        self._log_path: Path | None = None
        self._final_log = ""
        self._lock = threading.Lock()

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def _client_host(self) -> str:
        # A server bound to all interfaces is reached over loopback from here.
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self._client_host}:{self.metrics_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the server has written to stdout/stderr so far (kept after ``stop``)."""
        if self._log_path is not None and self._log_path.exists():
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        return self._final_log

    def __repr__(self) -> str:
        state = f"pid {self.pid}, http {self.http_url}" if self.is_running else "stopped"
        return f"LocalServer({str(self.repository)!r}, {state})"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalServer:
        """Start the server and wait until it is ready; raise ServerError with its reason if not."""
        with self._lock:
            if self.is_running:
                return self
            if self._proc is not None:  # a server that died: its stubs and regions go now
                self._terminate(grace_s=0.0)
                self._cleanup()
            _remove_orphan_regions()
            if not self.repository.is_dir():
                raise ServerError(
                    f"model repository {str(self.repository)!r} is not a directory; "
                    "build one with `triton-packager build`"
                )
            self._check_ports_free()
            self._workdir = Path(tempfile.mkdtemp(prefix="triton-packager-server-"))
            own = not any("shm-region-prefix-name" in a for a in self.extra_args)
            self.shm_prefix = f"{SHM_PREFIX}{os.getpid()}_{next(_STARTS)}_" if own else ""
            try:
                native = self._native_backends()
                served = self._served_repository(native)
                backends = prepare_backends(
                    native={st.backend.name: st.path for st in native.values() if st.path}
                )
                # Ports we picked can be taken between picking and binding: retry with new ones.
                attempts = 3 if 0 in self._wanted_ports else 1
                for attempt in range(attempts):
                    self._launch(served, backends, attempt)
                    try:
                        self._wait_ready()
                        break
                    except _PortTaken:
                        self._terminate(grace_s=2.0)
                        if attempt == attempts - 1:
                            raise ServerError(
                                "tritonserver could not bind its ports:\n"
                                + describe_failure(self.log_text())
                            ) from None
            except BaseException:
                self._terminate(grace_s=2.0)
                self._cleanup()
                raise
            _LIVE.add(self)
            return self

    def _check_ports_free(self) -> None:
        """Refuse ports the caller chose that something already listens on.

        Otherwise the readiness probe can reach the *other* server on the HTTP port and report
        this one ready just before it exits with "already in use".
        """
        import socket

        taken = []
        for what, port in zip(("http", "grpc", "metrics"), self._wanted_ports, strict=True):
            if not port:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # Same rule as the server's own listeners: TIME_WAIT leftovers do not count.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, port))
                except OSError:
                    taken.append(f"{what} port {port}")
        if taken:
            raise ServerError(
                f"{', '.join(taken)} already in use on {self.host} (another server?): stop what "
                "is listening there or choose other ports (--http-port/--grpc-port/--metrics-port"
                "; 0 picks a free one)"
            )

    def _native_backends(self) -> dict[str, BackendStatus]:
        """The ready native backends the repository needs, by format (built on first use)."""
        from packager.serve import native
        from packager.serve.shadow import native_formats

        self.native_unavailable = {}
        if not self.use_native:
            return {}
        ready = {}
        for fmt in sorted(native_formats(self.repository)):
            st = native.status(native.BACKENDS[fmt], build=True, progress=_progress)
            if st.ready:
                ready[fmt] = st
            else:
                self.native_unavailable[st.backend.name] = st.reason
        return ready

    def _served_repository(self, native: dict[str, BackendStatus]) -> Path:
        """The folder given to tritonserver: a linked copy unless told otherwise."""
        if not self.shadow:
            return self.repository
        from packager.serve.shadow import needs_shadow, served_copy

        if self.model_control_mode == "poll" and not needs_shadow(self.repository, native):
            return self.repository  # poll follows the user's files: serve them in place
        assert self._workdir is not None
        shadow_dir = self._workdir / "repository"
        copy = served_copy(
            self.repository, shadow_dir, {fmt: st.describe() for fmt, st in native.items()}
        )
        self.shadowed, self.native = copy.shadowed, copy.native
        return shadow_dir

    def _launch(self, repository: Path, backends: Path, attempt: int) -> None:
        assert self._workdir is not None
        ports: list[int] = []
        for wanted in self._wanted_ports:
            port = wanted or free_port(self.host)
            # The OS may hand out the same free port twice in a row: three distinct ones,
            # or the server fails to bind its second endpoint.
            while not wanted and port in ports:
                port = free_port(self.host)
            ports.append(port)
        self.http_port, self.grpc_port, self.metrics_port = ports
        args = [
            str(tritonserver_binary()),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control_mode}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.shm_prefix:
            args.append(f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}")
        if not any(a.startswith("--exit-timeout-secs") for a in self.extra_args):
            # Triton waits up to this long for clients to close keep-alive connections on
            # SIGTERM (default 30 s); in-flight inferences still get this long to finish.
            args.append(f"--exit-timeout-secs={EXIT_TIMEOUT_S}")
        if self.model_control_mode == "poll":
            args.append("--repository-poll-secs=2")
        args += [f"--load-model={name}" for name in self.load_models]
        args += self._feature_flags()
        args += list(self.extra_args)
        self._log_path = self._workdir / f"tritonserver-{attempt}.log"
        # The death signal follows the *thread* that forked: only safe from the main thread.
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(backends),
                cwd=self._workdir,
                # Own process group: Ctrl-C in a terminal reaches us, not the server (serve
                # forwards it), and stop() can kill the Python stubs along with the server.
                start_new_session=True,
                preexec_fn=_parent_death_hook() if on_main_thread else None,
            )
        _STARTED_PIDS.append(self._proc.pid)

    def _feature_flags(self) -> list[str]:
        """What the repository's models need (response cache, rate limiter), unless given."""
        from packager.errors import PackagerError
        from packager.repository import server_flags

        try:
            flags = server_flags(self.repository)
        except PackagerError:  # a config Triton will refuse itself, with its own message
            return []
        given = {a.split("=", 1)[0] for a in self.extra_args}
        flags = [f for f in flags if f.split("=", 1)[0] not in given]
        if any(f.startswith("--cache-config") for f in flags) and "--cache-directory" not in given:
            flags.append(f"--cache-directory={cache_directory()}")
        return flags

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                log = self.log_text()
                if "already in use" in log and not load_failures(log):
                    raise _PortTaken()
                raise ServerError(
                    f"tritonserver exited with code {code} while starting on "
                    f"{self.repository}:\n{describe_failure(log)}"
                )
            if self._ready_now():
                break
            if time.monotonic() > deadline:
                failures = load_failures(self.log_text())
                detail = describe_failure(self.log_text()) if failures else self._loading_summary()
                raise ServerError(
                    f"tritonserver was not ready within {self.startup_timeout_s:.0f} s "
                    f"(raise startup_timeout_s / --startup-timeout for large models):\n{detail}"
                )
            time.sleep(0.1)
        # With --exit-on-error=false the server becomes ready despite failed models: report them.
        bad = [m for m in self.models() if m.state == "UNAVAILABLE" and m.reason]
        wanted = set(self.load_models) if self.model_control_mode == "explicit" else None
        bad = [m for m in bad if wanted is None or m.name in wanted or "*" in wanted]
        if bad and "--exit-on-error=false" not in self.extra_args:
            raise ServerError(
                "\n".join(
                    f"model '{m.name}' version {m.version} failed to load: {m.reason}" for m in bad
                )
            )

    def _ready_now(self) -> bool:
        from packager.client import Client

        try:
            with Client(self.http_url, protocol="http", timeout_s=1.0) as client:
                return client.is_ready()
        except ClientError:  # e.g. a timeout while the server is busy loading
            return False

    def _loading_summary(self) -> str:
        try:
            rows = self.models()
        except ServerError:
            return describe_failure(self.log_text())
        return "\n".join(
            f"{m.name} v{m.version}: {m.state or 'not loaded'} {m.reason}" for m in rows
        )

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL to its process group after ``grace_s``."""
        with self._lock:
            self._terminate(grace_s)
            self._cleanup()
            _LIVE.discard(self)

    def _terminate(self, grace_s: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # The group also holds the Python backend stubs; SIGKILL whatever is left of it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _cleanup(self) -> None:
        if self.shm_prefix:  # after _terminate: nothing of this start uses them any more
            for path in shm_regions(self.shm_prefix):
                with contextlib.suppress(OSError):
                    path.unlink()
        if self._log_path is not None and self._log_path.exists():
            self._final_log = self._log_path.read_text(encoding="utf-8", errors="replace")
        self._log_path = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- repository API ------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The repository index: one (name, version, state, reason) per model version."""
        return self._control("reading the repository index", lambda c: c.models())

    def load_model(self, name: str) -> None:
        """Load (or reload) a model; explicit mode only. Raises ServerError with the reason."""
        self._control(f"loading model '{name}'", lambda c: c.load_model(name))

    def unload_model(self, name: str) -> None:
        """Unload a model; explicit mode only."""
        self._control(f"unloading model '{name}'", lambda c: c.unload_model(name))

    def _control(self, what: str, call: Callable[[Client], Any]) -> Any:
        """``call(client)`` through :class:`packager.client.Client`, errors as ServerError.

        The client is short-lived: an idle keep-alive connection would make Triton wait its
        exit timeout when the server is stopped.
        """
        from packager.client import Client

        if not self.is_running:
            raise ServerError("the server is not running; call start() first")
        try:
            with Client(self.http_url, protocol="http", timeout_s=120) as client:
                return call(client)
        except ClientError as exc:
            raise ServerError(f"{what} failed: {exc}") from exc


def _native_enabled() -> bool:
    from packager.serve.native import enabled

    return enabled()


def _progress(message: str) -> None:
    # A one-time build of about 30 s: say why the start takes long (stderr, like pip).
    print(message, file=sys.stderr, flush=True)


class _PortTaken(Exception):
    """The server exited because a port was taken between picking and binding it."""
