"""``triton-packager serve``: run a model repository on the embedded tritonserver until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from packager.commands._options import renamed
from packager.commands.openai_service import service_options
from packager.releases import TRITON_PORTS


class _Stop(Exception):
    """SIGTERM arrived: shut down like Ctrl-C."""


@click.command("serve")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the server binds to; 0.0.0.0 exposes it to the network.",
)
@click.option(
    "--http-port",
    type=int,
    default=TRITON_PORTS["http"],
    show_default=True,
    help="HTTP/REST port (0 = any free).",
)
@click.option(
    "--grpc-port",
    type=int,
    default=TRITON_PORTS["grpc"],
    show_default=True,
    help="gRPC port (0 = any free).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=TRITON_PORTS["metrics"],
    show_default=True,
    help="Prometheus metrics port (0 = any free).",
)
@click.option(
    "--model-control-mode",
    type=click.Choice(["none", "explicit", "poll"]),
    default="none",
    show_default=True,
    help="none: load every model at start; explicit: load only --load-model names and "
    "whatever clients load later; poll: reload models when their files change.",
)
@click.option(
    "--load-model",
    "load_models",
    multiple=True,
    metavar="NAME",
    help="Model to load at start in explicit mode (repeat the option; '*' loads all).",
)
@click.option(
    "--log-verbose",
    type=click.IntRange(0, None),
    default=0,
    show_default=True,
    help="Triton's verbose log level (0 = off, 1 = details of loading and requests).",
)
@click.option("--show-log", is_flag=True, help="Echo the server's own log to stderr while it runs.")
@click.option(
    "--no-checksums",
    "no_verify",
    is_flag=True,
    help="Serve even if model files changed since they were built (skips the SHA256SUMS check, "
    "as validate --no-checksums).",
)
@click.option(
    "--native/--no-native",
    default=None,
    help="Serve ONNX Runtime / PyTorch models with Triton's own backends, compiled once into "
    "the cache (default; off when TRITON_PACKAGER_NATIVE=0), or through the Python runtime.",
)
@click.option(
    "--openai-port",
    type=int,
    default=None,
    help="Also serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
    "/v1/embeddings, /v1/models) on this port (0 = any free); needs the openai extra.",
)
@service_options
@click.option(
    "--startup-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the server and its models to become ready.",
)
@renamed("--no-verify", "--no-checksums", "no_verify", is_flag=True)
def serve(
    repository: Path,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    model_control_mode: str,
    load_models: tuple[str, ...],
    log_verbose: int,
    show_log: bool,
    startup_timeout: float,
    no_verify: bool,
    native: bool | None,
    openai_port: int | None,
    api_key_file: Path | None,
    no_api_key: bool,
) -> None:
    """Serve REPOSITORY on the embedded Triton server (2.51.0) until Ctrl-C.

    Models built for Triton's ONNX Runtime or LibTorch backends are served by Triton's own
    backends, compiled once from the release's sources (`triton-packager backends`); where that
    is impossible they run through a generated Python runtime. One line per model says which;
    the repository itself is never modified.
    """
    from packager.errors import ServerError
    from packager.serve.server import LocalServer

    if not no_verify and repository.is_dir():
        _verify(repository, model_control_mode, load_models)
    if openai_port is not None:  # refuse a bad key setup before starting anything
        from packager.openai_api.service import api_keys

        api_keys(api_key_file, host=host, allow_none=no_api_key)

    server = LocalServer(
        repository,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        model_control_mode=model_control_mode,
        load_models=load_models,
        startup_timeout_s=startup_timeout,
        log_verbose=log_verbose,
        native=native,
    )
    # SIGINT too, explicitly: a shell starts background jobs with SIGINT ignored, and then
    # Python never raises KeyboardInterrupt, so `kill -INT` would not stop the server.
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in stop_signals}
    service = None
    try:
        click.echo(f"starting tritonserver on {repository} ...", err=True)
        server.start()
        if openai_port is not None:
            from packager.commands.openai_service import start_beside

            service = start_beside(server, openai_port, api_key_file, no_api_key)
        _print_banner(server, service)
        offset = 0
        while server.is_running:
            if show_log:
                offset = _echo_log(server, offset)
            time.sleep(0.3)
        if show_log:
            _echo_log(server, offset)
        log = server.log_text()
        from packager.serve.embedded import describe_failure

        raise ServerError(f"tritonserver stopped unexpectedly:\n{describe_failure(log)}")
    except (KeyboardInterrupt, _Stop):
        click.echo("\nstopping tritonserver ...", err=True)
    finally:
        if service is not None:
            service.stop()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped", err=True)


def _verify(repository: Path, mode: str, load_models: tuple[str, ...]) -> None:
    """Refuse files changed since the build (of the models this server will load)."""
    from packager.errors import RepositoryError
    from packager.repository import verify_repository

    names = list(load_models) if mode == "explicit" and "*" not in load_models else None
    problems, unverified = verify_repository(repository, names)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise RepositoryError(
            f"{repository} changed since it was built:\n{lines}\nrebuild the model(s) with "
            "`triton-packager build`, or pass --no-checksums to serve the files as they are"
        )
    for folder in unverified:
        click.echo(
            f"not verified: {folder} has no SHA256SUMS (not built by triton-packager)", err=True
        )


def _raise_stop(signum: int, frame: FrameType | None) -> Any:
    raise _Stop()


def _print_banner(server: Any, service: Any = None) -> None:
    from packager.releases import TRITON_VERSION

    click.echo(f"tritonserver {TRITON_VERSION} is ready (pid {server.pid})")
    click.echo(f"  HTTP     http://{server.http_url}")
    click.echo(f"  gRPC     {server.grpc_url}")
    click.echo(f"  metrics  http://{server.metrics_url}/metrics")
    if service is not None:
        keys = f"{len(service.api_keys)} API key(s)" if service.api_keys else "no API key"
        click.echo(f"  OpenAI   {service.url} ({keys})")
    if server.host in ("0.0.0.0", "::", ""):
        click.echo(f"  (bound to {server.host}: reachable from other machines)")
    for line in server.native:
        click.echo(f"native: {line}")
    for line in server.shadowed:
        click.echo(f"shadow: {line}")
    for name, reason in server.native_unavailable.items():
        click.echo(
            f"note: Triton's {name} backend is not used ({reason}); its models run through the Python runtime"
        )
    if (server.shadowed or server.native) and server.model_control_mode == "poll":
        click.echo(
            "note: native-backend models run from a copy made at start, so poll mode does not "
            "follow changes to them; restart serve after rebuilding"
        )
    rows = server.models()
    if not rows:
        click.echo("no models in the repository")
    else:
        width = max(len(m.name) for m in rows)
        click.echo("models:")
        for m in rows:
            state = m.state or "not loaded"
            reason = f"  {m.reason}" if m.reason else ""
            click.echo(f"  {m.name:<{width}}  version {m.version or '-':<3} {state}{reason}")
    if server.model_control_mode == "explicit":
        click.echo(
            f"explicit mode: load more with POST http://{server.http_url}/v2/repository/models/NAME/load"
        )
    click.echo("press Ctrl-C to stop")
    sys.stdout.flush()


def _echo_log(server: Any, offset: int) -> int:
    text = server.log_text()
    if len(text) > offset:
        click.echo(text[offset:], err=True, nl=False)
    return len(text)
