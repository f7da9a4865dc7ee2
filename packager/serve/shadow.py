"""The served copy of a repository: native models by Triton's own backends, else the Python runtime.

The tritonserver in the nvidia-pytriton wheel has only the Python backend. Where Triton's own ONNX
Runtime / PyTorch backend is built (:mod:`packager.serve.native`), :func:`served_copy` keeps such
models as they are (GPU instance groups moved to CPU). Otherwise - the fallback, the *shadow* -
each ``onnxruntime_onnx`` / ``pytorch_libtorch`` model keeps its name, versions, inputs, outputs,
batching and instance counts, but runs through the generated ``model.py`` of
:func:`packager.render.python_runtime_files`. Artifacts are linked, never copied, and the user's repository is
never written to. Python models and ensembles pass through unchanged (linked).

:class:`packager.serve.server.LocalServer` serves every repository through such a linked copy (except
in poll mode), so that the server's Python stubs write their ``__pycache__`` there and a
repository with SHA256SUMS stays exactly as built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import PackagerError, ServerError
from packager.formats import FORMATS, of_config

CONFIG = "config.pbtxt"


def _read_config(model_dir: Path) -> Any:
    from packager.repository import read_config

    return read_config(model_dir)


def _model_dirs(repository: Path) -> list[Path]:
    return sorted(
        p
        for p in repository.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).is_file()
    )


def native_format(config: Any) -> str | None:
    """``onnx`` / ``torchscript`` when the config names a native backend we can shadow."""
    fmt = of_config(config.platform, config.backend)
    return fmt.name if fmt is not None else None


def _config_or_none(model_dir: Path) -> Any:
    # A config that does not parse is Triton's to report, with its own message, at load time.
    try:
        return _read_config(model_dir)
    except PackagerError:
        return None


def needs_shadow(repository: Path | str, native: Collection[str] = ()) -> bool:
    """Whether any model needs a rewritten config to load on the embedded server.

    ``native`` are the formats whose backend the server has (:mod:`packager.serve.native`); a
    model of such a format still needs one when it asks for GPU instances, which the CPU-only
    backends cannot give.
    """
    configs = (_config_or_none(d) for d in _model_dirs(Path(repository)))
    for config in configs:
        fmt = native_format(config) if config is not None else None
        if fmt and (fmt not in native or _gpu_groups(config)):
            return True
    return False


def native_formats(repository: Path | str) -> set[str]:
    """The native formats (``onnx``, ``torchscript``) the repository's models use."""
    configs = (_config_or_none(d) for d in _model_dirs(Path(repository)))
    return {fmt for c in configs if c is not None and (fmt := native_format(c))}


@dataclass(frozen=True)
class ServedCopy:
    """What :func:`served_copy` did, one human-readable line per model it concerns."""

    shadowed: list[str]  # run through the Python runtime
    native: list[str]  # loaded by Triton's own backend, config as built


def shadow_repository(repository: Path | str, target: Path | str) -> list[str]:
    """Write the shadow of ``repository`` into ``target``: every native model via Python.

    Returns one human-readable line per model that now runs through the Python runtime.
    """
    return served_copy(repository, target).shadowed


def served_copy(
    repository: Path | str, target: Path | str, native: Mapping[str, str] | None = None
) -> ServedCopy:
    """Write the served copy of ``repository`` into ``target`` (created; must not exist).

    Every model folder becomes a tree of real folders holding links to the user's files, so
    whatever the server writes (Python's ``__pycache__``) lands in the copy, never in the
    user's repository. ``native`` maps the formats whose backend the server has to a
    description of it: those models keep their config (GPU instance groups moved to CPU,
    which the CPU-only backends need); other native-backend models get a rewritten config and
    the runtime ``model.py``.
    """
    from google.protobuf import text_format

    from packager.render import python_runtime_files as runtime_files

    native = native or {}
    src_root, dst_root = Path(repository).resolve(), Path(target)
    dst_root.mkdir(parents=True)
    shadowed: list[str] = []
    served_natively: list[str] = []
    for entry in sorted(src_root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() and (entry / CONFIG).is_file()):
            _link(entry, dst_root / entry.name)  # stray files and config-less folders as they are
            continue
        model_dst = dst_root / entry.name
        _mirror(entry, model_dst, skip_top=frozenset({CONFIG}))
        config = _config_or_none(entry)
        fmt = native_format(config) if config is not None else None
        if fmt is None:  # python models, ensembles, anything else: Triton decides
            _link(entry / CONFIG, model_dst / CONFIG)
            continue
        was = config.backend or config.platform
        if fmt in native:
            moved = _gpu_groups_to_cpu(config)
            if moved:
                (model_dst / CONFIG).write_text(
                    text_format.MessageToString(config), encoding="utf-8"
                )
            else:  # byte for byte what was built
                _link(entry / CONFIG, model_dst / CONFIG)
            extra = "; KIND_GPU instance groups run as KIND_CPU" if moved else ""
            served_natively.append(f"{entry.name}: {was} served by {native[fmt]}{extra}")
            continue
        if config.sequence_batching.state:
            # The Python runtime takes its inputs from the request: an implicit state the
            # server keeps would never reach the model ("Required inputs ... are missing").
            from packager.errors import ServerError

            raise ServerError(
                f"model '{entry.name}' keeps implicit state ({was}, built with --stateful), "
                "which only Triton's own backend can serve, and that backend is not available "
                "here or turned off (native=False, TRITON_PACKAGER_NATIVE=0; `triton-packager "
                "backends` says why, `--build` compiles it); or rebuild "
                "the model without --stateful (the client then sends the state)"
            )
        artifact = config.default_model_filename or FORMATS[fmt].artifact
        gpu_groups = _to_python_backend(config, artifact)
        files = runtime_files(fmt)
        version_dirs = sorted(
            (v for v in model_dst.iterdir() if _is_version_dir(v)), key=lambda v: int(v.name)
        )
        completed = ""
        # NVIDIA's ONNX Runtime backend fills missing inputs/outputs in from the graph; the
        # Python backend cannot, so do it here from the newest version.
        bare = fmt == "onnx" and (not config.input or not config.output) and version_dirs
        if bare and _complete_from_onnx(config, entry / version_dirs[-1].name / artifact):
            completed = f"; inputs/outputs read from {artifact}"
        for vdst in version_dirs:
            for name, text in files.items():
                (vdst / name).unlink(missing_ok=True)  # a link to a user file of that name
                (vdst / name).write_text(text, encoding="utf-8")
        (model_dst / CONFIG).write_text(text_format.MessageToString(config), encoding="utf-8")
        versions = ", ".join(v.name for v in version_dirs) or "none"
        extra = completed + ("; KIND_GPU instance groups run as KIND_CPU" if gpu_groups else "")
        shadowed.append(
            f"{entry.name}: {was} served through the Python runtime ({fmt}, versions {versions}{extra})"
        )
    return ServedCopy(shadowed, served_natively)


def _mirror(src: Path, dst: Path, skip_top: frozenset[str] = frozenset()) -> None:
    """Recreate ``src``'s folders under ``dst`` with every file linked, not copied."""
    dst.mkdir()
    for item in sorted(src.iterdir()):
        if item.name in skip_top:
            continue
        if item.is_dir() and not item.is_symlink():
            _mirror(item, dst / item.name)
        else:
            _link(item, dst / item.name)


def _complete_from_onnx(config: Any, path: Path) -> bool:
    """Fill missing config inputs/outputs from the ONNX graph (dims without the batch dim).

    False when the graph cannot be read: the model then fails to load with Triton's own message,
    and only that model (in explicit mode it may never be loaded at all).
    """
    import onnx
    from tritonclient.grpc import model_config_pb2 as pb

    from packager import dtypes

    if path.is_dir():
        path = path / FORMATS["onnx"].artifact
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:
        return False
    initializers = {init.name for init in graph.initializer}
    strip = 1 if config.max_batch_size > 0 else 0
    for values, field in (
        ([v for v in graph.input if v.name not in initializers], config.input),
        (list(graph.output), config.output),
    ):
        if len(field):
            continue
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            item = field.add()
            item.name = value.name
            item.data_type = pb.DataType.Value(dtypes.from_onnx(tensor.elem_type).config)
            item.dims.extend(dims[strip:])
    return True


def _is_version_dir(path: Path) -> bool:
    from packager.repository import triton_version

    return path.is_dir() and triton_version(path.name) is not None


def _to_python_backend(config: Any, artifact: str) -> int:
    """Rewrite ``config`` in place for the Python backend; returns how many GPU groups moved."""
    config.platform = ""
    config.backend = "python"
    config.default_model_filename = ""
    if "artifact" not in config.parameters:
        config.parameters["artifact"].string_value = artifact
    moved = _gpu_groups_to_cpu(config)
    for group in config.instance_group:
        if group.kind == group.KIND_MODEL:
            group.kind = group.KIND_CPU
    # GPU-only accelerators (TensorRT, CUDA graphs) mean nothing to the Python backend.
    config.ClearField("optimization")
    return moved


def _gpu_groups(config: Any) -> int:
    return sum(1 for group in config.instance_group if group.kind == group.KIND_GPU)


def _gpu_groups_to_cpu(config: Any) -> int:
    """Turn KIND_GPU groups into KIND_CPU ones with the same instance total; how many moved."""
    moved = 0
    for group in config.instance_group:
        if group.kind == group.KIND_GPU:
            # Count applies per listed GPU; keep the total so concurrency stays comparable.
            group.count = max(1, group.count) * max(1, len(group.gpus))
            group.kind = group.KIND_CPU
            del group.gpus[:]
            moved += 1
    return moved


def _link(src: Path, dst: Path) -> None:
    """Symlink ``src`` at ``dst``; hard-link files where symlinks are refused."""
    try:
        os.symlink(src, dst, target_is_directory=src.is_dir())
        return
    except OSError as exc:
        if src.is_dir():
            raise ServerError(f"cannot link {src} into the shadow repository: {exc}") from exc
    try:
        os.link(src, dst)
    except OSError:
        # Last resort across file systems that refuse both: a copy keeps serving possible.
        shutil.copy2(src, dst)
