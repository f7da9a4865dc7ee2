"""JSON calls to a Triton server's HTTP control API (repository index, load, unload, config).

Used by the embedded-server lifecycle and by ``tune``; each passes the error type its callers
expect. Plain ``urllib``: these calls are rare and must not depend on the client library.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

from packager.errors import PackagerError


def control_call(
    host_port: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout_s: float,
    what: str = "",
    error: type[PackagerError] = PackagerError,
) -> Any:
    """``method path`` on ``http://host_port``; the decoded JSON answer (None when empty).

    A refusal raises ``error`` with the server's own message; an unreachable server says so.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://{host_port}{path}",
        data=data,
        headers={"Content-Type": "application/json"} if data is not None else {},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise error(f"{what or path} failed: {detail}") from None
    except OSError as exc:
        raise error(
            f"{what or path} failed: cannot reach the server at {host_port} ({exc}); "
            "is it running, and is this its HTTP port?"
        ) from exc
    return json.loads(text) if text.strip() else None
