"""Run the OpenAI-compatible service with uvicorn: in a thread beside the embedded server
(``serve --openai-port``), or in the foreground against any Triton (``openai --url``)."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from pathlib import Path

from packager.errors import PackagerError

KEY_ENV = "TRITON_PACKAGER_API_KEY"  # one key, or several separated by commas


def api_keys(key_file: Path | None, *, host: str, allow_none: bool = False) -> tuple[str, ...]:
    """The accepted keys: ``key_file`` (one per line) and/or ``$TRITON_PACKAGER_API_KEY``.
    None given is fine on a loopback address; elsewhere it is refused unless ``allow_none``."""
    keys: list[str] = []
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise PackagerError(f"cannot read the API key file {key_file}: {exc}") from exc
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if not keys:
            raise PackagerError(f"the API key file {key_file} holds no key (one per line)")
    keys += [k.strip() for k in os.environ.get(KEY_ENV, "").split(",") if k.strip()]
    if not keys and not allow_none and not _loopback(host):
        raise PackagerError(
            f"the OpenAI service would listen on {host} without an API key: give "
            f"--api-key-file FILE or set {KEY_ENV}, or pass --no-api-key to serve it open"
        )
    return tuple(keys)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class OpenAIService:
    """The service for the Triton server at ``url`` on ``host:port`` (port 0: any free one).

    ``start()`` runs it in a thread and returns once it accepts connections; ``stop()`` ends
    it; ``run()`` serves in the foreground until Ctrl-C.
    """

    def __init__(
        self,
        url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        repository: Path | None = None,
        api_keys: tuple[str, ...] = (),
    ) -> None:
        import uvicorn

        from packager.openai_api.app import create_app

        self.host = host
        self.port = port or free_port(host)
        self.api_keys = api_keys
        app = create_app(url, repository=repository, api_keys=api_keys)
        # asyncio's own loop (grpc.aio's supported one); httptools parses HTTP when installed
        # (the openai extra brings it), else h11.
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", lifespan="on",
            access_log=False, loop="asyncio",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 30.0) -> OpenAIService:
        self._thread = threading.Thread(target=self._server.run, name="tp-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise PackagerError(
                    f"the OpenAI service did not start on {self.host}:{self.port} (is the port "
                    "in use?)"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def run(self) -> None:
        self._server.run()

    def __enter__(self) -> OpenAIService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
