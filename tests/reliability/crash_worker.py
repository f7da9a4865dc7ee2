"""A build worker for the crash-safety test: forks one child per build, SIGKILLs it on request.

Run as ``python -m tests.reliability.crash_worker``. It imports the packager once, warms it up
with one build, then reads one JSON request per line on stdin::

    {"model": PATH, "name": NAME, "output": REPO, "version": null, "force": false,
     "backend": "native", "kill_after_s": 0.012, "no_exchange": false}

and answers one JSON line: ``{"status": "done" | "failed" | "killed", "elapsed_s": ...,
"error": ...}``. Each build runs in a fresh ``os.fork()`` child of the warmed-up worker, so a
trial costs milliseconds instead of an interpreter start, and the kill lands inside the build
itself (loading, staging, checksumming, swapping) rather than in Python's start-up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _child(req: dict[str, Any], err_fd: int) -> None:
    from packager import repository
    from packager.builder import build

    if req.get("no_exchange"):  # the path for kernels without renameat2(RENAME_EXCHANGE)
        repository._exchange = lambda a, b: False  # type: ignore[assignment]

    try:
        build(
            req["model"],
            name=req["name"],
            output=req["output"],
            version=req.get("version"),
            force=bool(req.get("force")),
            backend=req.get("backend", "native"),
        )
    except Exception as exc:
        os.write(err_fd, f"{type(exc).__name__}: {exc}".encode()[:4000])
        os._exit(1)
    os._exit(0)


def run_one(req: dict[str, Any]) -> dict[str, Any]:
    """Build in a forked child; SIGKILL it after ``kill_after_s`` seconds unless it is done."""
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        _child(req, write_fd)
    os.close(write_fd)
    delay = req.get("kill_after_s")
    status: int | None = None
    if delay is not None:
        deadline = start + float(delay)
        while (now := time.monotonic()) < deadline:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                break
            time.sleep(min(0.0005, deadline - now))
        else:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - start
    with os.fdopen(read_fd, "rb") as f:
        error = f.read().decode(errors="replace")
    if os.WIFSIGNALED(status):
        return {"status": "killed", "elapsed_s": elapsed, "error": ""}
    ok = os.WEXITSTATUS(status) == 0
    return {"status": "done" if ok else "failed", "elapsed_s": elapsed, "error": error}


def main() -> None:
    from packager.builder import build
    from packager.sources import onnx_file  # noqa: F401  (import before forking, once)

    warm = json.loads(sys.stdin.readline())
    with tempfile.TemporaryDirectory() as tmp:  # lazy imports and template caches, once
        build(warm["model"], name="warmup", output=Path(tmp) / "repo")
        build(warm["model"], name="warmup_py", output=Path(tmp) / "repo", backend="python")
    print(json.dumps({"status": "ready"}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_one(json.loads(line))), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
