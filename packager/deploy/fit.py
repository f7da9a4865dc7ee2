"""Will a repository fit? Memory per GPU and on the host, from instance groups and the graphs.

Per model (placement and served versions from :mod:`packager.deploy.footprint`): weights (ONNX
initializers incl. external data; a TorchScript file's size), activations at the max batch size
(:mod:`packager.deploy.onnx_memory`: ONNX shape inference, peak liveness), and a runtime overhead
per instance. Every instance holds its own weights and activations (Triton's ONNX Runtime and
libtorch backends give each instance its own session or module; each Python-backend instance is
a process). Per GPU and for the host, the sum, against the sizes asked for. The constants below
are the rules; docs/deploy.md ("Will it fit?") records how they were measured and the error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.deploy import footprint
from packager.deploy.footprint import MiB, ModelFootprint
from packager.deploy.onnx_memory import GraphMemory, graph_memory
from packager.errors import PackagerError
from packager.formats import of_config
from packager.repository import read_config
from packager.textable import format_table

# ---------------------------------------------------------------- measured here (CPU, no GPU)
# benchmarks/fit_vs_rss.py, 2-core EPYC, tritonserver 2.51.0: VmRSS of a Python-backend stub
# serving a trivial model (Python + numpy + the runtime it imports): onnxruntime 69.6 MiB,
# torch 246 MiB, a Python step 40 MiB; rounded up. Keyed by what the stub's model.py imports.
STUB_HOST_BYTES: Mapping[str | None, int] = {"onnx": 72 * MiB, "torch": 256 * MiB, None: 48 * MiB}
# tritonserver itself with its Python backend loaded, idle: 39 MiB measured, rounded up.
SERVER_HOST_BYTES = 64 * MiB
# One more ONNX Runtime session of a trivial model in a process that already loaded the library
# (the native backend's per-instance host cost): 0.16 MiB measured; 4 MiB leaves room for the
# backend's own input/output buffers.
NATIVE_INSTANCE_HOST_BYTES = 4 * MiB

# Activations are the peak of live tensors (what a planner that reuses buffers perfectly needs).
# ONNX Runtime keeps the arena its first run grew (in power-of-two steps) and, from the second
# run on, adds one block for its memory pattern: MiniLM at batch 8 x 128 tokens settled at
# 79.5 MiB over the arena's start for a 16.5 MiB peak (35 MiB pattern + 44 MiB first run).
# Each instance is given twice the peak; models of a few huge tensors need less (see the docs).
ACTIVATION_ALLOWANCE = 2.0

# ---------------------------------------------------------------- assumed (no GPU here)
# A CUDA 12 context with cuBLAS/cuDNN loaded, as nvidia-smi shows it per process: 300-500 MiB on
# A100/H100 class GPUs depending on driver and lazy loading. We take the top of the range, so
# that "fits" errs on the safe side. tritonserver holds one per GPU it sees, and so does every
# Python-backend stub (a process of its own) on the GPU it runs on.
CUDA_CONTEXT_BYTES = 512 * MiB
# Triton's default --cuda-memory-pool-byte-size (per GPU) and --pinned-memory-pool-byte-size
# (host, only when the server sees a GPU): allocated at start.
TRITON_GPU_POOL_BYTES = 64 * MiB
TRITON_PINNED_POOL_BYTES = 256 * MiB
# Per GPU instance of ONNX Runtime or libtorch: cuBLAS workspace (32 MiB on Hopper), cuDNN
# handle and the allocator's first chunk.
GPU_INSTANCE_BYTES = 64 * MiB

# An estimate within this fraction of the capacity is "tight": allocators round up (ONNX
# Runtime's arenas grow by powers of two) and the measured error of the rules is up to ~15 %.
DEFAULT_MARGIN = 0.10

FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"


@dataclass(frozen=True)
class ModelEstimate:
    """One model: what one instance needs, and where its instances run."""

    name: str
    runtime: str
    versions: tuple[int, ...]
    batch_size: int  # the batch its activations are sized for (0: the model does not batch)
    weight_bytes: int  # one instance of every served version
    activation_bytes: int  # peak at ``batch_size``: what could be sized
    activation_note: str | None  # None: exact; else why it is a lower bound or unknown
    cpu_instances: int  # per served version, host memory
    gpu_placement: tuple[tuple[int, int], ...]  # (GPU id, instances per served version)
    host_overhead: int  # per CPU instance (or per Python-backend stub on a GPU)
    gpu_overhead: int  # per GPU instance
    unresolved: tuple[str, ...] = ()  # inputs with dynamic dims that need --shape
    # One --shape value per unresolved input, full rank (MODEL.INPUT:DIMS, 128 for each -1).
    shape_hints: tuple[str, ...] = ()
    # vLLM: the fraction of each of these GPUs' memory it takes (gpu_memory_utilization)
    gpu_share: float = 0.0
    share_gpus: tuple[int, ...] = ()

    @property
    def ensemble(self) -> bool:
        return self.runtime == "ensemble"

    @property
    def lower_bound(self) -> bool:
        return self.activation_note is not None

    @property
    def python(self) -> bool:
        return self.runtime == "python"

    @property
    def model_bytes(self) -> int:
        """Weights plus the activation allowance of one instance (no runtime overhead)."""
        return self.weight_bytes + round(ACTIVATION_ALLOWANCE * self.activation_bytes)

    def per_instance(self, on_gpu: bool) -> int:
        """Bytes one instance needs on its device (all served versions)."""
        overhead = self.gpu_overhead if on_gpu else self.host_overhead
        return self.model_bytes + overhead * len(self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "versions": list(self.versions),
            "batch_size": self.batch_size,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "activation_note": self.activation_note,
            "lower_bound": self.lower_bound,
            "cpu_instances": self.cpu_instances,
            "gpu_instances": {str(g): n for g, n in self.gpu_placement},
            "per_instance_bytes": {
                "cpu": self.per_instance(False),
                "gpu": self.per_instance(True),
            },
            "unresolved_dims": list(self.unresolved),
            "gpu_memory_share": self.gpu_share,
            "share_gpus": list(self.share_gpus),
        }


@dataclass(frozen=True)
class Verdict:
    capacity: int
    free: int  # negative: short by that much
    verdict: str  # FITS, TIGHT or NO_FIT

    def to_dict(self) -> dict[str, Any]:
        return {"capacity_bytes": self.capacity, "free_bytes": self.free, "verdict": self.verdict}


@dataclass(frozen=True)
class DeviceEstimate:
    """One GPU, or the host: the sum of what runs there."""

    device: str  # "GPU 0", "host"
    instances: int
    bytes: int
    lower_bound: bool
    verdicts: tuple[Verdict, ...] = ()
    share: float = 0.0  # fraction of the GPU's memory claimed on top of ``bytes`` (vLLM)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "instances": self.instances,
            "bytes": self.bytes,
            "claimed_share": self.share,
            "lower_bound": self.lower_bound,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass(frozen=True)
class FitReport:
    gpus: int
    margin: float
    models: tuple[ModelEstimate, ...]
    devices: tuple[DeviceEstimate, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        """No device is short of memory at any size asked for ("tight" still fits)."""
        return all(v.verdict != NO_FIT for d in self.devices for v in d.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "margin": self.margin,
            "fits": self.fits,
            "models": [m.to_dict() for m in self.models],
            "devices": [d.to_dict() for d in self.devices],
            "notes": list(self.notes),
        }


def estimate(
    repo: Path | str,
    gpus: int | None = None,
    gpu_memory: Sequence[int] = (),
    host_memory: int | None = None,
    max_batch_size: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    margin: float = DEFAULT_MARGIN,
) -> FitReport:
    """Estimate the memory of every model of ``repo`` on a server that sees ``gpus`` GPUs.

    ``gpus`` None: as many as the instance groups name (at least one). ``gpu_memory``: sizes
    (bytes) to judge every GPU against (one verdict per size); ``host_memory`` likewise for the
    host. ``max_batch_size`` replaces each batching model's own; ``shapes`` gives inputs with
    dynamic dims their dims, batch excluded, by ``MODEL.INPUT`` (that model only) or by input
    name (every model with that input): ``{"bert.input_ids": (128,), "x": (3, 64, 64)}``.
    """
    if not 0 <= margin < 1:
        raise PackagerError(f"--margin {margin:g} must be a fraction from 0 to below 1, e.g. 0.1")
    if max_batch_size is not None and max_batch_size < 1:
        raise PackagerError(f"--max-batch-size {max_batch_size} must be 1 or more")
    if gpus is not None and gpus < 0:
        raise PackagerError(f"--gpu-count {gpus} must be 0 (CPU only) or more")
    from packager.generate.vllm import check_gpus as check_vllm_gpus
    from packager.generate.vllm import vllm_claims

    claims = vllm_claims(repo)
    scanned = footprint.scan(repo, 1 if gpus is None else gpus)
    if gpus is None:
        gpus = max((g + 1 for m in scanned for g in m.pinned_gpus), default=1)
        gpus = max([gpus, *(n for n, _ in claims.values())])  # vLLM shards over its GPUs
        if gpus != 1:
            scanned = footprint.scan(repo, gpus)
    footprint.check_gpus(scanned, gpus, "--gpu-count")
    check_vllm_gpus(repo, gpus, "--gpu-count")
    used: set[str] = set()
    shapes = shapes or {}
    models = tuple(
        _vllm(_model(m, max_batch_size, shapes, used), *claims[m.name])
        if m.name in claims
        else _model(m, max_batch_size, shapes, used)
        for m in scanned
    )
    unused = sorted(set(shapes) - used)
    if unused:
        raise PackagerError(
            f"--shape {', '.join(unused)}: no model of {repo} has an input of that name "
            "(MODEL.INPUT or INPUT; names are case-sensitive; each config.pbtxt lists its inputs)"
        )
    devices = _devices(models, gpus, gpu_memory, host_memory, margin)
    return FitReport(gpus, margin, models, devices, _notes(models, gpus))


# --------------------------------------------------------------------------- one model


def _model(
    m: ModelFootprint, max_batch: int | None, given: Mapping[str, Sequence[int]], used: set[str]
) -> ModelEstimate:
    assert m.model_dir is not None  # scan() always sets it
    config = read_config(m.model_dir)
    batch = config.max_batch_size
    if batch > 0 and max_batch is not None:
        batch = max_batch
    shapes = {}
    hints = {}
    for t in config.input:
        dims = list(t.dims)
        hints[t.name] = f"{m.name}.{t.name}:" + ",".join("128" if d < 0 else str(d) for d in dims)
        # MODEL.INPUT first: models that share an input name at different ranks are sized apart.
        key = next((k for k in (f"{m.name}.{t.name}", t.name) if k in given), None)
        if key is not None:
            used.add(key)
            if len(given[key]) != len(dims):
                raise PackagerError(
                    f"--shape {key}:{','.join(map(str, given[key]))} has "
                    f"{len(given[key])} dims but input {t.name!r} of model {m.name!r} has "
                    f"{len(dims)} ({list(dims)}, batch excluded); give all of them, e.g. "
                    f"--shape {hints[t.name]}"
                )
            dims = [g if d < 0 else d for d, g in zip(dims, given[key], strict=True)]
        shapes[t.name] = ([batch] if batch > 0 else []) + dims
    weights = activations = 0
    note: str | None = None
    unresolved: list[str] = []
    kind = _artifact_kind(m)
    ensemble = m.runtime == "ensemble"  # it only routes tensors: no memory of its own
    for v in () if ensemble else m.served_versions:
        artifact = m.model_dir / str(v) / m.artifact if m.artifact else None
        if kind == "onnx" and artifact is not None and artifact.is_file():
            g = graph_memory(artifact, shapes)
            weights += g.weight_bytes
            activations += g.activation_bytes
            note = note or _graph_note(g)
            unresolved += [s for s in g.unresolved if s not in unresolved]
        elif artifact is not None and artifact.is_file():
            weights += artifact.stat().st_size  # TorchScript: the archive holds the tensors
            note = "unknown: TorchScript has no shape inference"
        else:  # Python code: what it allocates is up to the code; its files are a floor
            weights += _folder_bytes(m.model_dir / str(v))
            note = "unknown: Python code"
    return ModelEstimate(
        name=m.name,
        runtime=m.runtime,
        versions=() if ensemble else m.served_versions,
        batch_size=batch,
        weight_bytes=weights,
        activation_bytes=activations,
        activation_note=note,
        cpu_instances=0 if ensemble else m.cpu_instances,
        gpu_placement=() if ensemble else m.gpu_placement,
        host_overhead=STUB_HOST_BYTES[m.python_runtime] if m.python else NATIVE_INSTANCE_HOST_BYTES,
        # A Python-backend instance is its own process: its own CUDA context on its GPU.
        gpu_overhead=GPU_INSTANCE_BYTES + (CUDA_CONTEXT_BYTES if m.python else 0),
        unresolved=tuple(unresolved),
        shape_hints=tuple(hints[n] for n in unresolved if n in hints),
    )


def _vllm(m: ModelEstimate, gpus: int, share: float) -> ModelEstimate:
    """A vLLM model takes ``share`` of each of its first ``gpus`` GPUs (weights, activations and
    KV cache inside it, whatever their size); its files are read from disk into that share, and
    its backend's stub is one Python process on the host."""
    from dataclasses import replace

    return replace(
        m,
        activation_bytes=0,
        activation_note=None,
        cpu_instances=0,
        gpu_placement=(),
        gpu_share=share,
        share_gpus=tuple(range(gpus)),
    )


def _artifact_kind(m: ModelFootprint) -> str | None:
    """``onnx`` or ``torch``: what runs the model's artifact (None: no artifact)."""
    if m.python:
        return m.python_runtime
    fmt = of_config(m.runtime, m.runtime)
    return None if fmt is None else "onnx" if fmt.name == "onnx" else "torch"


def _graph_note(g: GraphMemory) -> str | None:
    if g.problem:
        return f"unknown: shape inference failed ({g.problem.splitlines()[0][:120]})"
    if g.unresolved:
        return f"lower bound: dynamic dims of {', '.join(g.unresolved)} (give --shape)"
    if g.unknown:
        return f"lower bound: {len(g.unknown)} tensors of unknown shape"
    return None


def _folder_bytes(folder: Path) -> int:
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


# --------------------------------------------------------------------------- devices


def _devices(
    models: Sequence[ModelEstimate],
    gpus: int,
    gpu_memory: Sequence[int],
    host_memory: int | None,
    margin: float,
) -> tuple[DeviceEstimate, ...]:
    out = []
    for gpu in range(gpus):
        total = CUDA_CONTEXT_BYTES + TRITON_GPU_POOL_BYTES  # the server's own, on every GPU
        count, lower, share = 0, False, 0.0
        for m in models:
            n = dict(m.gpu_placement).get(gpu, 0)
            if n:
                total += n * m.per_instance(on_gpu=True)
                count += n * len(m.versions)
                lower = lower or m.lower_bound
            if gpu in m.share_gpus:  # vLLM: a fraction of the GPU, whatever its size
                share += m.gpu_share
                count += 1
        verdicts = tuple(_verdict(total + round(share * c), c, margin) for c in gpu_memory)
        out.append(DeviceEstimate(f"GPU {gpu}", count, total, lower, verdicts, share))
    host = SERVER_HOST_BYTES + (TRITON_PINNED_POOL_BYTES if gpus else 0)
    count, lower = 0, False
    for m in models:
        if m.cpu_instances:
            host += m.cpu_instances * m.per_instance(on_gpu=False)
            count += m.cpu_instances * len(m.versions)
            lower = lower or m.lower_bound
        if m.python:  # a stub on a GPU still lives on the host: Python and its imports
            stubs = sum(n for _, n in m.gpu_placement) * len(m.versions)
            host += stubs * m.host_overhead
        if m.share_gpus:  # the vLLM backend's stub process
            host += STUB_HOST_BYTES[None]
    verdicts = (_verdict(host, host_memory, margin),) if host_memory else ()
    out.append(DeviceEstimate("host", count, host, lower, verdicts))
    return tuple(out)


def _verdict(needed: int, capacity: int, margin: float) -> Verdict:
    free = capacity - needed
    if needed <= capacity * (1 - margin):
        return Verdict(capacity, free, FITS)
    return Verdict(capacity, free, TIGHT if free >= 0 else NO_FIT)


def _notes(models: Sequence[ModelEstimate], gpus: int) -> tuple[str, ...]:
    notes = []
    for m in models:
        if m.share_gpus:
            notes.append(
                f"{m.name}: vLLM takes {m.gpu_share:.0%} of the memory of GPU "
                f"{','.join(map(str, m.share_gpus))} (gpu_memory_utilization in model.json; "
                "its weights and KV cache live inside that share), on top of the rest"
            )
    for m in models:
        if m.unresolved:
            notes.append(
                f"{m.name}: inputs {', '.join(m.unresolved)} have dynamic dims, so tensors that "
                f"depend on them are left out; give e.g. --shape "
                f"{m.shape_hints[0] if m.shape_hints else m.unresolved[0] + ':128'}"
            )
    if gpus:
        notes.append(
            f"GPU figures assume {human(CUDA_CONTEXT_BYTES)} per CUDA context (the server's, "
            "and one per Python-backend instance on a GPU); nothing here measured a GPU"
        )
    return tuple(notes)


# --------------------------------------------------------------------------- display


def human(n: int) -> str:
    """Bytes in binary units, about three significant digits: ``68.2 MiB``, ``1.25 GiB``."""
    size, unit = float(abs(n)), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1000 or unit == "TiB":
            break
        size /= 1024
    digits = 0 if unit == "B" or size >= 100 else 1 if size >= 10 else 2
    return f"{'-' if n < 0 else ''}{size:.{digits}f} {unit}"


def format_report(report: FitReport) -> str:
    """The models table and the devices table, as ``triton-packager fit`` prints them."""
    header = ["model", "device", "instances", "weights", "activations", "per instance", "total"]
    rows = []
    for m in report.models:
        if m.ensemble:
            rows.append([m.name, "-", "0", "-", "-", "-", "-", "ensemble: routes only"])
            continue
        name = m.name if len(m.versions) == 1 else f"{m.name} (v{','.join(map(str, m.versions))})"
        if m.share_gpus:
            share = f"{m.gpu_share:.0%} of each GPU"
            gpus = ",".join(map(str, m.share_gpus))
            rows.append([name, f"GPU {gpus}", "vLLM", human(m.weight_bytes), "-", share, share,
                         "vLLM: gpu_memory_utilization"])  # fmt: skip
            continue
        for device, count, on_gpu, devices in _placements(m):
            per = m.per_instance(on_gpu)
            rows.append([
                name, device, f"{count} each" if devices > 1 else str(count),
                human(m.weight_bytes), _bound(m, m.activation_bytes, m.batch_size),
                _bound(m, per), _bound(m, per * count * devices), m.activation_note or "",
            ])  # fmt: skip
    gpu_sizes = [v.capacity for v in report.devices[0].verdicts] if report.gpus else []
    host = report.devices[-1]
    dev_header = ["device", "instances", "estimate"] + [f"{human(c)} GPU" for c in gpu_sizes]
    if host.verdicts:
        dev_header.append(f"{human(host.verdicts[0].capacity)} host")
    dev_rows = []
    for d in report.devices:
        cells = [_verdict_text(v) for v in d.verdicts]
        if d is host:
            cells = ["-"] * len(gpu_sizes) + cells
        elif host.verdicts:
            cells.append("-")
        estimate = _bound(d, d.bytes) + (f" + {d.share:.0%}" if d.share else "")
        dev_rows.append([d.device, str(d.instances), estimate, *cells])
    if any(r[-1] for r in rows):
        header.append("note")
    else:
        rows = [r[:-1] for r in rows]
    return format_table(header, rows) + "\n\n" + format_table(dev_header, dev_rows)


def _placements(m: ModelEstimate) -> list[tuple[str, int, bool, int]]:
    """(device text, instances per device, on a GPU, devices) for each row of one model."""
    out = []
    counts = {n for _, n in m.gpu_placement}
    if len(counts) == 1:  # the same count on every GPU it uses: one row
        ids = ",".join(str(g) for g, _ in m.gpu_placement)
        out.append((f"GPU {ids}", counts.pop(), True, len(m.gpu_placement)))
    else:
        out += [(f"GPU {g}", n, True, 1) for g, n in m.gpu_placement]
    if m.cpu_instances:
        out.append(("CPU", m.cpu_instances, False, 1))
    return out


def _bound(item: ModelEstimate | DeviceEstimate, n: int, batch: int | None = None) -> str:
    """A size, marked as a lower bound where something could not be sized."""
    if isinstance(item, ModelEstimate) and batch is not None:
        if item.activation_note and n == 0:
            return "?"
        text = human(n) + (f" @{batch}" if batch else "")
    else:
        text = human(n)
    return f">= {text}" if item.lower_bound else text


def _verdict_text(v: Verdict) -> str:
    if v.verdict == NO_FIT:
        return f"no ({human(-v.free)} short)"
    return f"{v.verdict} ({human(v.free)} free)"
