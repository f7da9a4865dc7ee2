"""The generic Python-backend runtime: a ``model.py`` that runs an ONNX or TorchScript artifact.

``build --backend python`` writes it next to the artifact, and :mod:`packager.shadow` uses it to
serve native-backend repositories on the embedded server. The generated file is self-contained
(numpy + onnxruntime or torch), so it also runs in NVIDIA's container without triton-packager.
"""

from __future__ import annotations

import importlib.metadata

from packager.errors import PackagerError

TEMPLATE = "python_model.py.j2"
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
DEFAULT_ARTIFACT: dict[str, str] = {"onnx": "model.onnx", "torchscript": "model.pt"}


def _version() -> str:
    try:
        return importlib.metadata.version("triton-packager")
    except importlib.metadata.PackageNotFoundError:
        return "(source tree)"


def runtime_files(fmt: str) -> dict[str, str]:
    """Files for a Python-backend version folder: ``{"model.py": text}`` for ``fmt``.

    The artifact itself is not included; the config names it with the parameter ``artifact``
    (default ``model.onnx`` / ``model.pt``).
    """
    if fmt not in FORMATS:
        raise PackagerError(
            f"the Python runtime runs {', '.join(FORMATS)} artifacts, not {fmt!r}; "
            "export the model to ONNX or TorchScript first"
        )
    from packager.render import render_template

    return {"model.py": render_template(TEMPLATE, fmt=fmt, version=_version())}
