"""The generic Python-backend runtime: a ``model.py`` that runs an ONNX or TorchScript artifact.

``build --backend python`` writes it next to the artifact, and :mod:`packager.serve.shadow` uses it to
serve native-backend repositories on the embedded server. The generated file is self-contained
(numpy + onnxruntime or torch), so it also runs in NVIDIA's container without triton-packager.
"""

from __future__ import annotations

import importlib.metadata

from packager.errors import PackagerError
from packager.sources.formats import FORMATS, PYTHON_FILE

TEMPLATE = "python_model.py.j2"


def _version() -> str:
    try:
        return importlib.metadata.version("triton-packager")
    except importlib.metadata.PackageNotFoundError:
        return "(source tree)"


def runtime_files(fmt: str) -> dict[str, str]:
    """Files for a Python-backend version folder: ``{"model.py": text}`` for ``fmt``.

    The artifact itself is not included; the config names it with the parameter ``artifact``
    (default: the format's file name in :data:`packager.sources.formats.FORMATS`).
    """
    if fmt not in FORMATS:
        raise PackagerError(
            f"the Python runtime runs {', '.join(FORMATS)} artifacts, not {fmt!r}; "
            "export the model to ONNX or TorchScript first"
        )
    from packager.render import render_template

    f = FORMATS[fmt]
    text = render_template(
        TEMPLATE, fmt=f.name, artifact=f.artifact, runtime=f.runtime, version=_version()
    )
    return {PYTHON_FILE: text}
