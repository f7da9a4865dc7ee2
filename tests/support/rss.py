"""Measured memory of a served repository: the resident set of each Python-backend stub process.

The embedded server runs every model instance in a ``triton_python_backend_stub`` process of
the server's process group; its command line names the model's ``model.py`` and the instance
(``<model>_<group>_<index>``). ``/proc/<pid>/status`` gives its resident set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import group_members

STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class StubMemory:
    model: str
    instance: str  # Triton's instance name, e.g. big_0_1
    pid: int
    rss: int  # VmRSS, bytes
    anon: int  # RssAnon: private memory (weights, activations, Python's heap)
    shmem: int  # RssShmem: the /dev/shm regions the stub exchanges tensors through


def stub_memory(server_pid: int) -> list[StubMemory]:
    """Every live stub of the server ``server_pid``, by model and instance."""
    out = []
    for pid in group_members(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # gone meanwhile
            continue
        if not argv or not argv[0].endswith(STUB):
            continue
        # argv: stub, <repo>/<model>/<version>/model.py, shm region, sizes, parent pid, backend
        # folder, ipc timeout, instance name, ...
        model = Path(argv[1]).parent.parent.name
        instance = next((a for a in argv[2:] if a.startswith(model + "_")), "?")
        fields = {
            line.split(":")[0]: int(line.split()[1]) * 1024
            for line in status.splitlines()
            if line.startswith(("VmRSS:", "RssAnon:", "RssShmem:"))
        }
        out.append(
            StubMemory(model, instance, pid, fields["VmRSS"], fields["RssAnon"], fields["RssShmem"])
        )
    return sorted(out, key=lambda s: s.instance)


def by_model(stubs: list[StubMemory]) -> dict[str, list[StubMemory]]:
    out: dict[str, list[StubMemory]] = {}
    for s in stubs:
        out.setdefault(s.model, []).append(s)
    return out
