"""Serve native-backend models on the embedded server through the Python runtime.

The tritonserver in the nvidia-pytriton wheel has only the Python backend, so a repository built
for NVIDIA's container (``onnxruntime_onnx``, ``pytorch_libtorch``) cannot load there as it is.
:func:`shadow_repository` writes a copy of the repository in which each such model keeps its name,
versions, inputs, outputs, batching and instance counts, but runs through the generated
``model.py`` of :mod:`packager.pyruntime`. Artifacts are linked, never copied, and the user's
repository is never written to. Python models and ensembles pass through unchanged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from packager.errors import ServerError

# platform or backend name -> runtime format of packager.pyruntime
_NATIVE: dict[str, str] = {
    "onnxruntime_onnx": "onnx",
    "onnxruntime": "onnx",
    "pytorch_libtorch": "torchscript",
    "pytorch": "torchscript",
}
_DEFAULT_ARTIFACT = {"onnx": "model.onnx", "torchscript": "model.pt"}
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
    return _NATIVE.get(config.backend) or _NATIVE.get(config.platform)


def needs_shadow(repository: Path | str) -> bool:
    """Whether any model of the repository uses a backend that the embedded server lacks."""
    root = Path(repository)
    return any(native_format(_read_config(d)) for d in _model_dirs(root))


def shadow_repository(repository: Path | str, target: Path | str) -> list[str]:
    """Write the shadow of ``repository`` into ``target`` (created; must not exist).

    Returns one human-readable line per model that now runs through the Python runtime.
    """
    from google.protobuf import text_format

    from packager.pyruntime import runtime_files

    src_root, dst_root = Path(repository).resolve(), Path(target)
    dst_root.mkdir(parents=True)
    notes: list[str] = []
    for entry in sorted(src_root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not (entry.is_dir() and (entry / CONFIG).is_file()):
            _link(entry, dst_root / entry.name)  # stray files and config-less folders as they are
            continue
        config = _read_config(entry)
        fmt = native_format(config)
        if fmt is None:  # python models, ensembles, anything else: Triton decides
            _link(entry, dst_root / entry.name)
            continue
        model_dst = dst_root / entry.name
        model_dst.mkdir()
        artifact = config.default_model_filename or _DEFAULT_ARTIFACT[fmt]
        was = config.backend or config.platform
        gpu_groups = _to_python_backend(config, artifact)
        files = runtime_files(fmt)
        version_dirs = [v for v in sorted(entry.iterdir()) if _is_version_dir(v)]
        for item in sorted(entry.iterdir()):
            if item.name == CONFIG or item in version_dirs:
                continue
            _link(item, model_dst / item.name)  # labels files, etc.
        for vdir in version_dirs:
            vdst = model_dst / vdir.name
            vdst.mkdir()
            for item in sorted(vdir.iterdir()):
                if item.name not in files:
                    _link(item, vdst / item.name)
            for name, text in files.items():
                (vdst / name).write_text(text, encoding="utf-8")
        (model_dst / CONFIG).write_text(text_format.MessageToString(config), encoding="utf-8")
        versions = ", ".join(v.name for v in version_dirs) or "none"
        extra = "; KIND_GPU instance groups run as KIND_CPU" if gpu_groups else ""
        notes.append(
            f"{entry.name}: {was} served through the Python runtime ({fmt}, versions {versions}{extra})"
        )
    return notes


def _is_version_dir(path: Path) -> bool:
    return path.is_dir() and path.name.isdigit()


def _to_python_backend(config: Any, artifact: str) -> int:
    """Rewrite ``config`` in place for the Python backend; returns how many GPU groups moved."""
    from tritonclient.grpc import model_config_pb2 as pb

    config.platform = ""
    config.backend = "python"
    config.default_model_filename = ""
    if "artifact" not in config.parameters:
        config.parameters["artifact"].string_value = artifact
    moved = 0
    for group in config.instance_group:
        if group.kind == pb.ModelInstanceGroup.KIND_GPU:
            # Count applies per listed GPU; keep the total so concurrency stays comparable.
            group.count = max(1, group.count) * max(1, len(group.gpus))
            group.kind = pb.ModelInstanceGroup.KIND_CPU
            del group.gpus[:]
            moved += 1
        elif group.kind == pb.ModelInstanceGroup.KIND_MODEL:
            group.kind = pb.ModelInstanceGroup.KIND_CPU
    # GPU-only accelerators (TensorRT, CUDA graphs) mean nothing to the Python backend.
    config.ClearField("optimization")
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
