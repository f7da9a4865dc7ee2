"""``triton-packager openai``: the OpenAI-compatible API in front of a running Triton server.

The options of the service are declared here once; ``serve --openai-port`` reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

api_key_file = click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File of accepted API keys, one per line (clients send Authorization: Bearer KEY); "
    "$TRITON_PACKAGER_API_KEY adds one. Without any, the service is open, which is refused "
    "off loopback unless --no-api-key.",
)
no_api_key = click.option(
    "--no-api-key",
    is_flag=True,
    help="Serve the OpenAI API without keys on a non-loopback address.",
)


def service_options(f: Callable[..., Any]) -> Callable[..., Any]:
    return api_key_file(no_api_key(f))


@click.command("openai")
@click.option(
    "--url",
    default="grpc://localhost:8001",
    show_default=True,
    help="The Triton server (grpc://host:8001, or host:8000 for HTTP).",
)
@click.option(
    "--repository",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The server's model repository folder: chat templates and context lengths are read "
    "from it (without it, /v1/chat/completions is refused; completions still work).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=9000, show_default=True, help="Port (0 = any free).")
@service_options
def openai_service(
    url: str,
    repository: Path | None,
    host: str,
    port: int,
    api_key_file: Path | None,
    no_api_key: bool,
) -> None:
    """Serve the OpenAI API (/v1/models, /v1/completions, /v1/chat/completions,
    /v1/embeddings) in front of the Triton server at --url, until Ctrl-C."""
    from packager.openai_api.service import OpenAIService, api_keys

    keys = api_keys(api_key_file, host=host, allow_none=no_api_key)
    service = OpenAIService(url, host=host, port=port, repository=repository, api_keys=keys)
    click.echo(f"OpenAI API on {service.url} -> Triton at {url}" + _keys_note(keys), err=True)
    service.run()


def _keys_note(keys: tuple[str, ...]) -> str:
    return f" ({len(keys)} API key(s))" if keys else " (no API key)"


def start_beside(server: Any, port: int, key_file: Path | None, no_key: bool) -> Any:
    """The service in a thread beside the embedded ``server`` (``serve --openai-port``)."""
    from packager.openai_api.service import OpenAIService, api_keys

    keys = api_keys(key_file, host=server.host, allow_none=no_key)
    service = OpenAIService(
        f"grpc://{server.grpc_url}",
        host=server.host,
        port=port,
        repository=Path(server.repository),
        api_keys=keys,
    ).start()
    return service
