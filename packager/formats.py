"""The artifact formats a repository holds: the one table of platform, file name and runtime.

Every part that needs one of these facts reads it here: the sources (what they produce), the
builder (file names, ``default_model_filename``), validation (which file a config needs), the
shadow and the generated Python runtime (which library runs the file). Python-backend models
(``model.py``) and ensembles are not artifact formats; :data:`PYTHON_FILE` names the former's file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArtifactFormat:
    name: str  # "onnx" | "torchscript": the --format value and build.json's "format"
    platform: str  # Triton platform of NVIDIA's native backend
    backend: str  # the same backend by its backend name (configs may use either)
    artifact: str  # file name in the version folder (Triton's default_model_filename)
    runtime: str  # Python module that runs the artifact in the generated Python runtime


FORMATS: dict[str, ArtifactFormat] = {
    f.name: f
    for f in (
        ArtifactFormat("onnx", "onnxruntime_onnx", "onnxruntime", "model.onnx", "onnxruntime"),
        ArtifactFormat("torchscript", "pytorch_libtorch", "pytorch", "model.pt", "torch"),
    )
}
PYTHON_FILE = "model.py"  # Triton's file name for a Python-backend model


def of_config(platform: str, backend: str = "") -> ArtifactFormat | None:
    """The format a config's ``platform`` or ``backend`` names, or None (python, ensemble...)."""
    for f in FORMATS.values():
        if platform == f.platform or backend == f.backend or platform == f.backend:
            return f
    return None
