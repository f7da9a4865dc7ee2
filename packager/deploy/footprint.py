"""What a deployment needs to know about a model repository, and the sizing rules built on it.

``scan`` reads each model's config.pbtxt (Triton's own schema) and its served version folders;
the sizing functions turn that into shared-memory, memory and CPU figures for Docker and
Kubernetes. The rules are documented estimates (docs/deploy.md), not measurements: every figure
can be overridden on the command line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packager import releases as rel
from packager.errors import PackagerError
from packager.formats import of_config
from packager.repository import list_models, read_config
from packager.repository import versions as version_numbers
from packager.spec import VersionPolicy

MiB = 1 << 20
GiB = 1 << 30

# instance_group.kind values of model_config_pb2 (KIND_AUTO=0, KIND_GPU=1, KIND_CPU=2, KIND_MODEL=3).
_KIND_AUTO, _KIND_GPU, _KIND_CPU, _KIND_MODEL = 0, 1, 2, 3
_RUNTIME_BY_SUFFIX = {".onnx": "onnx", ".pt": "torch", ".pth": "torch", ".ts": "torch"}


@dataclass(frozen=True)
class ModelFootprint:
    """One model as a deployment sees it."""

    name: str
    runtime: str  # config platform or backend: onnxruntime_onnx, pytorch_libtorch, python, ensemble
    # The file it runs: a python-backend model.py's ``artifact`` parameter, or the native
    # backend's default_model_filename (else the format's file name); None for the rest.
    artifact: str | None
    served_versions: tuple[int, ...]
    file_bytes: int  # bytes of every file in the served version folders
    cpu_instances: int
    gpu_instances: int  # for the number of GPUs the server sees
    pinned_gpus: tuple[int, ...]  # device ids named in instance_group.gpus
    needs_gpu: bool = False  # has an explicit KIND_GPU instance group
    requires: tuple[str, ...] = ()  # pip requirements its build records (Python steps)
    # (GPU id, instances on it) for each GPU that runs instances of one served version.
    gpu_placement: tuple[tuple[int, int], ...] = ()
    model_dir: Path | None = None

    @property
    def python(self) -> bool:
        return self.runtime == "python"

    @property
    def instances(self) -> int:
        return self.cpu_instances + self.gpu_instances

    @property
    def python_runtime(self) -> str | None:
        """``onnx`` or ``torch``: what the python-backend model.py imports, from its artifact."""
        if not self.python or not self.artifact:
            return None
        return _RUNTIME_BY_SUFFIX.get(Path(self.artifact).suffix.lower())


def _recorded_requires(model_dir: Path, served: list[int]) -> tuple[str, ...]:
    """The pip requirements the served versions' build.json files record."""
    import json

    out: list[str] = []
    for v in served:
        try:
            record = json.loads((model_dir / str(v) / "build.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.extend(r for r in record.get("requires", ()) if isinstance(r, str) and r not in out)
    return tuple(out)


def scan(repo: Path | str, gpus: int) -> list[ModelFootprint]:
    """Footprints of every model in ``repo``, for a server that sees ``gpus`` GPUs."""
    models = list_models(repo)
    if not models:
        raise PackagerError(
            f"no models in {repo} (expected {repo}/<model>/config.pbtxt); "
            "build one first with `triton-packager build`"
        )
    return [_footprint(model_dir, gpus) for model_dir in models]


def _footprint(model_dir: Path, gpus: int) -> ModelFootprint:
    config = read_config(model_dir)
    runtime = config.backend or config.platform or "unknown"
    artifact = (
        config.parameters["artifact"].string_value if "artifact" in config.parameters else None
    )
    fmt = of_config(config.platform, config.backend)
    if fmt is not None:
        artifact = config.default_model_filename or fmt.artifact
    served = _served_versions(config, version_numbers(model_dir))
    size = sum(
        p.stat().st_size
        for v in served
        for p in (model_dir / str(v)).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    cpu = gpu = 0
    pinned: set[int] = set()
    placement: dict[int, int] = {}
    needs_gpu = False
    groups = list(config.instance_group)
    if runtime == "ensemble":
        groups = []  # an ensemble only routes tensors; its steps are counted as their own models
    elif not groups:
        # Triton's default: one instance per visible GPU, else one CPU instance.
        gpu, cpu = (gpus, 0) if gpus > 0 else (0, 1)
        placement = dict.fromkeys(range(gpus), 1)
    for group in groups:
        count = max(group.count, 1)  # Triton normalizes an unset count to 1
        kind = group.kind
        needs_gpu = needs_gpu or kind == _KIND_GPU
        if kind == _KIND_AUTO:
            kind = _KIND_GPU if gpus > 0 else _KIND_CPU
        if kind == _KIND_GPU:
            pinned.update(group.gpus)
            gpu += count * (len(group.gpus) if group.gpus else gpus)
            for device in group.gpus or range(gpus):
                placement[device] = placement.get(device, 0) + count
        else:  # KIND_CPU, and KIND_MODEL (the framework places it; sized like one CPU instance)
            cpu += count
    return ModelFootprint(
        name=model_dir.name,
        requires=_recorded_requires(model_dir, served),
        runtime=runtime,
        artifact=artifact,
        served_versions=tuple(served),
        file_bytes=size,
        cpu_instances=cpu,
        gpu_instances=gpu,
        pinned_gpus=tuple(sorted(pinned)),
        needs_gpu=needs_gpu,
        gpu_placement=tuple(sorted(placement.items())),
        model_dir=model_dir,
    )


def _served_versions(config: object, available: list[int]) -> list[int]:
    """The version folders Triton loads under the config's version_policy (default latest:1)."""
    from packager.render import version_policy_of

    return (version_policy_of(config) or VersionPolicy()).served(available)


def check_gpus(models: Sequence[ModelFootprint], gpus: int | None, option: str) -> None:
    """Refuse a GPU count that some model's instance groups cannot run on (``None``: unknown)."""
    if gpus is None:
        return
    problems = []
    for m in models:
        if gpus == 0 and m.needs_gpu:
            problems.append(f"model {m.name!r} has KIND_GPU instances but {option} gives no GPU")
        bad = [g for g in m.pinned_gpus if g >= gpus > 0]
        if bad:
            problems.append(
                f"model {m.name!r} pins GPU {', '.join(map(str, bad))} but {option} gives "
                f"{gpus} GPU{'s' if gpus != 1 else ''} (numbered 0..{gpus - 1} in the container)"
            )
    if problems:
        raise PackagerError(
            "; ".join(problems)
            + f"; give more GPUs with {option} or rebuild the model with other instance groups"
        )


# --------------------------------------------------------------------------- sizing rules


def shm_bytes(models: Iterable[ModelFootprint]) -> int:
    """/dev/shm for the server: Python-backend stubs exchange every tensor through it.

    Docker's default 64 MB fails under load with a few Python-backend instances; give 1 GiB, and
    128 MiB per instance beyond eight. Native backends use /dev/shm only for client shared memory.
    """
    python_instances = sum(m.instances for m in models if m.python)
    if not python_instances:
        return 256 * MiB
    return max(GiB, 128 * MiB * python_instances)


def memory_bytes(models: Iterable[ModelFootprint]) -> int:
    """Host memory the server needs (working set, excluding /dev/shm), rounded up to 256 MiB.

    512 MiB for the server itself; every CPU instance and every Python-backend stub process holds
    its own copy of the weights (x1.5 for runtime buffers), GPU instances of native backends stage
    one copy in host memory while loading; a Python stub imports its runtime (~512 MiB for torch,
    ~256 MiB otherwise).
    """
    total = 512 * MiB
    for m in models:
        host_copies = m.instances if m.python else m.cpu_instances + (1 if m.gpu_instances else 0)
        total += math.ceil(1.5 * m.file_bytes * host_copies)
        if m.python:
            total += m.instances * (512 * MiB if m.python_runtime == "torch" else 256 * MiB)
    return _round_up(total, 256 * MiB)


def cpu_millicores(models: Iterable[ModelFootprint]) -> int:
    """CPU request: half a core for the server, one per CPU instance, a quarter per GPU instance."""
    total = 500
    for m in models:
        total += 1000 * m.cpu_instances + 250 * m.gpu_instances
    return _round_up(total, 100)


def target_pins() -> dict[str, str]:
    """Normalized name -> requirement of every package the target profile pins for its image."""
    pins = [*rel.PYTHON_BACKEND_BASE, *rel.GENERATION_PACKAGES]
    pins += [r for runtime in rel.PYTHON_BACKEND_RUNTIMES.values() for r in runtime]
    return {requirement_name(r): r for r in pins}


def pip_packages(models: Iterable[ModelFootprint], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Packages Python-backend models import, then ``extra``; an extra replaces a default pin.

    A package the target profile pins is installed at the profile's version even where a build
    recorded another (an older build recorded the versions installed on the build machine, e.g.
    a transformers that needs a newer Python than the image has).
    """
    auto: list[str] = []
    pinned = target_pins()
    python_models = [m for m in models if m.python]
    if python_models:
        auto.extend(rel.PYTHON_BACKEND_BASE)
        runtimes = {m.python_runtime for m in python_models if m.python_runtime}
        for runtime in sorted(r for r in runtimes if r):
            auto.extend(rel.PYTHON_BACKEND_RUNTIMES[runtime])
        for m in python_models:
            for req in m.requires:  # recorded by the build: checked like --pip before use
                check_requirement(req)
                req = pinned.get(requirement_name(req), req)
                if req not in auto:
                    auto.append(req)
    for req in extra:
        check_requirement(req)
    overridden = {requirement_name(r) for r in extra}
    out = [r for r in auto if requirement_name(r) not in overridden]
    for r in extra:
        if r not in out:
            out.append(r)
    return tuple(out)


# name[extras] then optional comma-separated version clauses; nothing a shell would interpret.
_REQ_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?"
    r"((===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(,(===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?$"
)


def check_requirement(req: str) -> None:
    if not _REQ_RE.match(req):
        raise PackagerError(
            f"--pip {req!r} is not a package requirement like 'scipy==1.13.1' or 'pillow>=10,<11' "
            "(no spaces, URLs or shell characters)"
        )


def requirement_name(req: str) -> str:
    """PEP 503 normalized project name of a requirement string."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    return re.sub(r"[-_.]+", "-", name.group(0) if name else req).lower()


# --------------------------------------------------------------------------- size formats

# Units are binary, as Docker reads them (1g = 1 GiB); 16GiB and Kubernetes' 16Gi read the same.
_SIZE_RE = re.compile(r"^(\d+)(?:([kmg])(?:i?b|i)?|b?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB}


def parse_size(text: str, option: str = "--shm-size") -> int:
    """Docker's size syntax (``1g``, ``512m``, ``1gb``, bytes; also ``16GiB``, ``16Gi``) -> bytes."""
    match = _SIZE_RE.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise PackagerError(f"{option} {text!r} is not a size like 512m, 2g or 16GiB")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def docker_size(n: int) -> str:
    """Bytes -> Docker size (``1g``, ``1280m``), rounded up to a MiB."""
    return f"{n // GiB}g" if n % GiB == 0 else f"{math.ceil(n / MiB)}m"


def k8s_quantity(n: int) -> str:
    """Bytes -> Kubernetes quantity (``1Gi``, ``1280Mi``), rounded up to a MiB."""
    return f"{n // GiB}Gi" if n % GiB == 0 else f"{math.ceil(n / MiB)}Mi"


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step
