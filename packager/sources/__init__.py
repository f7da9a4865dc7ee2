"""Model sources: one small module per input format, and the registry that maps names to them.

A source turns what the user gave (a file path, a ``module:factory`` reference, a live module)
into a :class:`LoadedModel`: the artifact file(s) for a version folder, the platform that runs
them, and the tensor :class:`Signature`. Everything downstream (spec, render, repository) is
format-agnostic; adding a format means adding a module here and one ``register`` call.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from packager.errors import SourceError
from packager.spec import TensorSpec

if TYPE_CHECKING:
    from packager.compress.prune import PruneRequest


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs with FULL shapes (batch dim included, -1 where dynamic).

    ``batchable`` is true when every tensor's first dim is dynamic: Triton can then own the
    batch dim (max_batch_size > 0) and the spec's dims drop it.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        tensors = self.inputs + self.outputs
        return bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)


@dataclass
class LoadedModel:
    """What a source hands to the builder."""

    format: str  # artifact format in the repository: "onnx" | "torchscript"
    platform: str  # Triton platform that runs the artifact natively
    signature: Signature
    files: dict[str, Path]  # name inside the version folder -> file to copy there
    record: dict[str, Any] = field(default_factory=dict)  # facts for the build record
    # Holds temporary files (e.g. an export) alive until the build is written.
    workdir: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None


def example_sets(value: Any) -> tuple[Any, ...]:
    """Example inputs as a tuple of example sets. A list of files (or of name -> array
    mappings) is several sets whose differing axes become dynamic; anything else (one file, one
    mapping, one array, a list of arrays for positional inputs) is one set."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if not value:
            return ()
        if all(isinstance(v, (str, Path, Mapping)) for v in value):
            return tuple(value)
    return (value,)


@dataclass(frozen=True)
class SourceOptions:
    """What a source reads, typed (declared once in :mod:`packager.build_options`).

    The builder fills ``format``, ``max_batch_size`` and ``prune`` from the build's options."""

    input_specs: tuple[Any, ...] = ()  # "NAME:DTYPE:DIMS" strings or TensorSpecs
    example_inputs: tuple[Any, ...] = ()  # example sets (see example_sets): .npz, mapping, array
    weights: str | Path | None = None  # state_dict file for a module reference
    output_names: tuple[str, ...] = ()
    dynamic_axes: Mapping[str, Sequence[int]] | None = None  # beyond the batch axis
    # Input axes kept at the example's size without probing (PyTorch modules): name -> axes.
    fixed_axes: Mapping[str, Sequence[int]] | None = None
    opset: int | None = None
    torchscript_mode: str = "trace"  # "trace" | "script"
    verify: bool = True  # compare the export/conversion with the original
    atol: float | None = None
    rtol: float | None = None
    # Hugging Face folders: feature-extraction | sequence-classification | text-generation
    task: str | None = None
    format: str = "auto"  # auto, the source's name, or an export target (onnx | torchscript)
    max_batch_size: int | None = None  # 0: no batch axis (TorchScript --input dims are full)
    prune: PruneRequest | None = None  # build --prune: applied to a module before export
    batch_size: int = 2  # batch of generated examples

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_specs", tuple(self.input_specs or ()))
        object.__setattr__(self, "output_names", tuple(self.output_names or ()))
        object.__setattr__(self, "example_inputs", example_sets(self.example_inputs))

    @property
    def example(self) -> Any:
        """The first example set, or None."""
        return self.example_inputs[0] if self.example_inputs else None

    @property
    def more_examples(self) -> tuple[Any, ...]:
        """Example sets after the first (other shapes: their differing axes become dynamic)."""
        return self.example_inputs[1:]


class Source(Protocol):
    """One input format."""

    name: str
    description: str

    def sniff(self, ref: Any) -> bool:
        """True when ``ref`` (a path, string or object) is in this format; judged by content."""

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        """Read/export ``ref``; raise :class:`SourceError` with a clear message on failure."""


_REGISTRY: dict[str, Callable[[], Source]] = {}


def register(name: str, factory: Callable[[], Source]) -> None:
    """Register a source format under ``name`` (factory is called lazily)."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered format names, for CLI choices and docs."""
    _load_builtin()
    return list(_REGISTRY)


def get(name: str) -> Source:
    _load_builtin()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise SourceError(
            f"unknown source format {name!r}; choose from: {', '.join(_REGISTRY)}"
        ) from None


def detect(ref: Any) -> Source:
    """The first registered source whose ``sniff`` accepts ``ref``."""
    _load_builtin()
    if isinstance(ref, (str, Path)) and not _looks_like_reference(ref) and not Path(ref).exists():
        raise SourceError(f"model file {str(ref)!r} does not exist")
    for name in _REGISTRY:
        src = _REGISTRY[name]()
        if src.sniff(ref):
            return src
    if isinstance(ref, (str, Path)) and Path(ref).is_file():
        raise SourceError(_unreadable(Path(ref)))
    raise SourceError(
        f"cannot tell the format of {ref!r}: it is not one of {', '.join(_REGISTRY)}. "
        "Pass an ONNX file, a TorchScript file, a Keras .keras file, a SavedModel folder, "
        "a Hugging Face folder or a PyTorch 'module:factory' reference"
    )


def _unreadable(path: Path) -> str:
    """Why no source accepts an existing file: the ONNX parser's reason for ``.onnx``, else a hint."""
    import zipfile

    if path.suffix.lower() == ".onnx":
        from packager.sources.onnx_file import load_proto

        try:
            load_proto(path, external=False)
        except SourceError as exc:
            return str(exc)
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":  # the TensorFlow Lite flatbuffer identifier
        return (
            f"{path} is a TensorFlow Lite model (.tflite flatbuffer), which triton-packager does not "
            "build: build the model it was converted from (a SavedModel folder or a Keras file), "
            "or convert it to ONNX first (python -m tf2onnx.convert --tflite FILE --output "
            "model.onnx) and build that"
        )
    if zipfile.is_zipfile(path):
        return (
            f"{path} is a zip archive without TorchScript code (a torch.save() checkpoint?); "
            "pass the model as module.path:factory with --weights FILE, or save it with torch.jit.save"
        )
    return (
        f"{path} ({path.stat().st_size} bytes) is neither an ONNX model nor a TorchScript archive: "
        "it is truncated, corrupt or in another format; export or copy it again"
    )


def _looks_like_reference(ref: str | Path) -> bool:
    text = str(ref)
    return ":" in text and not Path(text).exists() and "/" not in text.split(":", 1)[1]


_loaded = False


def _load_builtin() -> None:
    # Importing the modules registers them; they import their heavy libraries (torch,
    # onnxruntime) lazily, so every format is listed even where its extra is not installed.
    global _loaded
    if _loaded:
        return
    _loaded = True
    from packager.sources import (  # noqa: F401
        huggingface,
        keras_file,
        onnx_file,
        tf_savedmodel,
        torchscript_file,
    )
    from packager.sources.pytorch import module  # noqa: F401
