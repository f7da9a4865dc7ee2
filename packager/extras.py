"""Which install extra brings which optional module: the one table, and the message built from it.

The core install (ONNX packaging, validate, render, versions, the client, Docker/Kubernetes
assets) needs none of these. A command that reaches for one that is missing gets
:func:`missing_extra` instead of a bare ``ModuleNotFoundError`` (``packager.cli`` maps it).
"""

from __future__ import annotations

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


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The error to show for ``exc``, or None when the module is not an optional dependency."""
    top = (exc.name or "").split(".")[0]
    extras = MODULE_EXTRAS.get(top)
    if not extras:
        return None
    choices = [f"[{e}] to {PURPOSE[e]}" for e in extras]
    which = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
    return MissingExtra(
        f"this needs {top}, which the core install leaves out: pip install "
        f"'triton-packager[{extras[0]}]' (extras: {which}; [all] installs everything)"
    )
