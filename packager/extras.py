"""Which install extra brings which optional module: the one table, and the message built from it.

The core install (ONNX packaging, validate, render, versions, the client, Docker/Kubernetes
assets) needs none of these. A command that reaches for one that is missing gets
:func:`missing_extra` instead of a bare ``ModuleNotFoundError`` (``packager.cli`` maps it).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from packager.errors import MissingExtra

# extra -> what it is for (pyproject.toml's [project.optional-dependencies] defines them)
PURPOSE: dict[str, str] = {
    "pytorch": "export PyTorch modules and TorchScript files",
    "huggingface": "export Hugging Face model folders (and their text pipelines)",
    "server": "serve on the embedded Triton server",
    "compress": "quantization and fp16",
    "plots": "tune, bench and explain plots",
    "tensorflow": "convert Keras .keras files and TensorFlow SavedModels",
    "openai": "serve the OpenAI-compatible API (triton-packager openai, serve --openai-port)",
}
# top-level module -> the extras that install it
MODULE_EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("pytorch",),
    "safetensors": ("pytorch",),
    "onnxscript": ("pytorch",),
    "onnxruntime": ("server", "compress", "pytorch"),
    "matplotlib": ("plots",),
    "transformers": ("huggingface",),
    "tokenizers": ("huggingface",),
    "tensorflow": ("tensorflow",),
    "tf2onnx": ("tensorflow",),
    "keras": ("tensorflow",),
    "starlette": ("openai",),
    "uvicorn": ("openai",),
}


# packager module (prefix) -> the extra of its feature: when a module several extras bring is
# missing (onnxruntime), the code that imported it says which feature was asked for.
AREA_EXTRAS: dict[str, str] = {
    "packager.compress": "compress",
    "packager.serve": "server",
    "packager.tune": "server",
    "packager.sources.pytorch": "pytorch",
    "packager.sources.torchscript_file": "pytorch",
    "packager.sources.huggingface": "huggingface",
    "packager.sources.hf_": "huggingface",
    "packager.sources.keras_file": "tensorflow",
    "packager.sources.tf_": "tensorflow",
    "packager.explain.plot": "plots",
    "packager.tune.report": "plots",
}


def install_target(extra: str, root: Path | None = None) -> str:
    """What ``pip install`` takes for ``extra`` from where this package runs: the published name
    for an installed wheel, the source folder (``-e '.[pytorch]'``) for a checkout."""
    root = _checkout() if root is None else root
    if root is None:
        return f"'triton-packager[{extra}]'"
    try:
        where = "." if root.resolve() == Path.cwd().resolve() else str(root)
    except OSError:  # the working directory was removed
        where = str(root)
    return f"-e '{where}[{extra}]'"


def _checkout() -> Path | None:
    """The source checkout this package is imported from, or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    try:
        is_ours = project.is_file() and 'name = "triton-packager"' in project.read_text()
    except OSError:
        return None
    return root if is_ours else None


def _asking_area(tb: TracebackType | None) -> str | None:
    """The extra of the deepest packager module on the traceback that names one."""
    found = None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        for prefix, extra in AREA_EXTRAS.items():
            if module.startswith(prefix):
                found = extra
        tb = tb.tb_next
    return found


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The error to show for ``exc``, or None when the module is not an optional dependency."""
    top = (exc.name or "").split(".")[0]
    extras = MODULE_EXTRAS.get(top)
    if not extras:
        return None
    asked = _asking_area(exc.__traceback__)
    if asked in extras:  # the feature's own extra first
        extras = (asked, *(e for e in extras if e != asked))
    choices = [f"[{e}] to {PURPOSE[e]}" for e in extras]
    which = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
    return MissingExtra(
        f"this needs {top}, which the core install leaves out: pip install "
        f"{install_target(extras[0])} (extras: {which}; [all] installs everything)"
    )
