"""The OpenAI-compatible service (:mod:`packager.openai_api`) deployed beside Triton.

One home for what ``docker``, ``k8s`` and ``mesh`` share when ``--openai-port`` is given: the
image (``Dockerfile.openai``: python slim + ``triton-packager[openai]``, written beside the
Triton Dockerfile; it must be built, and pushed for a cluster), the container's command, its
probes and where its API key comes from. The service binds 0.0.0.0 in a container, so it
refuses to start without a key (:func:`packager.openai_api.service.api_keys`): the key always
comes from the environment (compose: the caller's shell; Kubernetes: a Secret), never inlined.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from packager.errors import PackagerError
from packager.openai_api.service import KEY_ENV  # the variable the service reads its key from
from packager.releases import TRITON_PORTS

DOCKERFILE = "Dockerfile.openai"
BASE_IMAGE = "python:3.12-slim"
SECRET_KEY = "api-key"  # the key inside the Kubernetes Secret that holds the API key
HEALTH_PATH = "/health"  # 200 while Triton is live, 503 otherwise (packager/openai_api/app.py)
UID = 10001  # unprivileged user of the image


def requirement() -> str:
    """What the image installs: this version of triton-packager with its ``openai`` extra."""
    try:
        version = metadata.version("triton-packager")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0.1.0"
    return f"triton-packager[openai]=={version}"


def check_port(port: int) -> None:
    if not 1 <= port <= 65535 or port in TRITON_PORTS.values():
        raise PackagerError(
            f"--openai-port {port} must be a free TCP port (1-65535) other than Triton's "
            f"{', '.join(map(str, TRITON_PORTS.values()))}"
        )


def command(port: int, triton_host: str, repository: str | None) -> list[str]:
    """The service's command line in a container: all addresses, Triton over gRPC."""
    args = ["triton-packager", "openai", f"--url=grpc://{triton_host}:{TRITON_PORTS['grpc']}"]
    if repository:  # chat templates and context lengths are read from the repository's files
        args.append(f"--repository={repository}")
    return [*args, "--host=0.0.0.0", f"--port={port}"]


def health_cmd(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    return ["python3", "-c", f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"]


def dockerfile(marker: str, regenerate: str, port: int) -> str:
    """``Dockerfile.openai``; TRITON_PACKAGER may name another requirement (a wheel, a git URL)."""
    return f"""{marker}. Regenerate from this folder instead of editing:
#   {regenerate}
# The OpenAI-compatible API (triton-packager's `openai` extra) in front of the Triton container.
# Until triton-packager is on an index your build reaches, point TRITON_PACKAGER at a wheel
# URL or a git URL: docker build --build-arg TRITON_PACKAGER="triton-packager[openai] @ URL"
FROM {BASE_IMAGE}
ARG TRITON_PACKAGER="{requirement()}"
# The default is pinned (==); hadolint cannot see through the build argument.
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir "${{TRITON_PACKAGER}}"
# The service refuses to listen on 0.0.0.0 without ${KEY_ENV} (or --api-key-file).
USER {UID}:{UID}
EXPOSE {port}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\
    CMD {json.dumps(health_cmd(port))}
CMD {json.dumps(command(port, "localhost", None))}
"""


def k8s_container(image: str, port: int, key_secret: str, repository: str | None) -> dict[str, Any]:
    """The sidecar: Triton is on localhost (same pod); the key comes from ``key_secret``."""

    def probe(period: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": HEALTH_PATH, "port": "openai"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }

    return {
        "name": "openai",
        "image": image,
        "args": command(port, "localhost", repository),
        "ports": [{"name": "openai", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {
                "name": KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": key_secret, "key": SECRET_KEY}},
            }
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        # Ready while Triton is live (the /health route asks it); alive while the port answers,
        # so a slow-loading Triton never gets the sidecar restarted.
        "readinessProbe": probe(5),
        "livenessProbe": {
            "tcpSocket": {"port": "openai"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
