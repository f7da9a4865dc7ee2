"""Finding tritonserver processes (and their Python stubs) that tests started."""

from __future__ import annotations

from pathlib import Path

from packager.serve.server import started_pids


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``.

    LocalServer starts each tritonserver in its own group (pgid == its pid), and the server's
    Python backend stubs stay in that group.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def leftover_processes(pids: list[int] | None = None) -> list[int]:
    """Processes still alive from the given servers (default: all this process started)."""
    left: list[int] = []
    for pid in started_pids() if pids is None else pids:
        left += group_members(pid)
    return left


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            lines.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
        except OSError:
            lines.append(str(pid))
    return "\n".join(lines)


def native_ready(fmt: str = "onnx") -> bool:
    """Whether servers started now serve ``fmt`` models with Triton's own backend.

    The suite runs both ways (scripts/test.sh): with the native backends built by setup, and
    with ``TRITON_PACKAGER_NATIVE=0`` (every native model through the Python runtime).
    """
    from packager.serve import native

    return native.enabled() and native.status(native.BACKENDS[fmt]).ready
