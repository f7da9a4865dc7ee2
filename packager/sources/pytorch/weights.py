"""Find a user's PyTorch model by reference and load its weights without running foreign code.

``module.path:attr`` names a class, a factory function or a module instance, imported from the
working directory or an installed package. Weights come from a ``state_dict`` saved with
``torch.save`` (read with ``weights_only=True``: a checkpoint that needs arbitrary unpickling is
refused, because unpickling it could run any code) or from a ``.safetensors`` file.
torch is imported inside functions: the sources registry imports this module eagerly.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from packager.errors import SourceError
from packager.sources.progress import slow_step

# module.path:attr or module.path:Outer.attr — what `python -c "from m import a"` could name.
REFERENCE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# Where the tensors of a training checkpoint usually live, when it holds more than a state_dict.
_NESTED_KEYS = (
    "state_dict", "model_state_dict", "model_state", "model", "module", "net", "network",
    "weights", "params", "ema",
)  # fmt: skip


def is_reference(ref: Any) -> bool:
    """True for a ``module.path:attr`` string that is not an existing file."""
    return isinstance(ref, str) and bool(REFERENCE_RE.match(ref)) and not Path(ref).exists()


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    # `python -m` puts the working directory first on sys.path; a CLI entry point does not.
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_reference(ref: str) -> Any:
    """The object named by ``module.path:attr`` (imported from the working directory first)."""
    if not REFERENCE_RE.match(ref):
        raise SourceError(
            f"{ref!r} is not a model reference of the form module.path:factory_or_class"
        )
    module_name, _, attr_path = ref.partition(":")
    with _cwd_on_path(), slow_step(f"importing {module_name} (and torch)"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise SourceError(
                    f"cannot import {module_name!r} for {ref!r}: no such module in the working "
                    f"directory ({os.getcwd()}) or installed packages; run from the folder that "
                    "holds it or pip install the package"
                ) from exc
            raise SourceError(f"importing {module_name!r} failed: {exc}") from exc
        except Exception as exc:  # the user's module raised while importing
            raise SourceError(
                f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:20]
            raise SourceError(
                f"{module_name!r} has no attribute {attr_path!r}; it defines: {', '.join(public)}"
            )
        obj = getattr(obj, part)
    return obj


def instantiate(obj: Any, ref: str) -> Any:
    """An ``nn.Module`` from a module instance, a class, or a zero-argument factory."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise SourceError(f"{ref!r} is a {type(obj).__name__}, not an nn.Module, class or factory")
    try:
        required = [
            p.name
            for p in inspect.signature(obj).parameters.values()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    except (TypeError, ValueError):  # builtins without a signature: just try to call them
        required = []
    if required:
        raise SourceError(
            f"{ref!r} needs argument(s) {', '.join(required)}; point the reference at a factory "
            "function that takes no arguments (e.g. def make_model(): return Net(width=64))"
        )
    try:
        model = obj()
    except Exception as exc:
        raise SourceError(f"calling {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise SourceError(f"{ref!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: Path | str) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``d state_dict, loaded safely."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise SourceError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            with slow_step(f"reading the weights in {p.name}"):
                return dict(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SourceError(f"{p} is not a readable safetensors file: {exc}") from exc
    try:
        with slow_step(f"reading the weights in {p.name}"):
            data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            found = re.search(r"Unsupported global: GLOBAL ([^\s]+)", text)
            what = f" (it references {found.group(1)})" if found else ""
            raise SourceError(
                f"refusing to load {p}: it is not a plain state_dict{what}. Unpickling it would import "
                "and run arbitrary Python code, so triton-packager only reads checkpoints with "
                "torch.load(weights_only=True). Re-save the weights from a trusted environment with "
                "torch.save(model.state_dict(), 'weights.pt') or safetensors.torch.save_file(...)"
            ) from exc
        raise SourceError(
            f"{p} is not a readable PyTorch checkpoint: {text.splitlines()[0]}"
        ) from exc
    return _state_dict_of(data, p)


def _state_dict_of(data: Any, p: Path) -> dict[str, Any]:
    import torch

    if isinstance(data, Mapping):
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return dict(data)
        # A training checkpoint: {"epoch": 3, "state_dict": {...}, "optimizer": {...}}.
        for key in _NESTED_KEYS:
            inner = data.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return dict(inner)
    found = ""
    if isinstance(data, Mapping):
        found = (
            "; its keys: "
            + ", ".join(f"{k!r} ({_kind(v)})" for k, v in list(data.items())[:12])
            + (" ..." if len(data) > 12 else "")
        )
    raise SourceError(
        f"{p} holds a {type(data).__name__} with no state_dict in it (looked for a mapping of "
        f"tensors at the top level or under {', '.join(repr(k) for k in _NESTED_KEYS)}){found}. "
        "Save the weights with torch.save(model.state_dict(), path), or save the entry that "
        "holds them: torch.save(ckpt[KEY], path)"
    )


def _kind(value: Any) -> str:
    """A few words on a checkpoint entry, for the list of what a checkpoint holds."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor {list(value.shape)}"
    if isinstance(value, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        return f"mapping of {len(value)}, {tensors} tensors"
    return type(value).__name__


def load_weights(model: Any, path: Path | str) -> list[str]:
    """Load a state_dict into ``model`` with torch's own ``load_state_dict``, so that the
    module's load hooks run (e.g. weight norm renaming old ``weight_g``/``weight_v`` keys).

    Every parameter and buffer the model expects must be found: a missing key raises, naming
    them. Keys the model does not use (training-only tensors such as a loss's parameters) are
    returned, for the build record and a note, instead of refusing the checkpoint.
    """
    state = read_state_dict(path)
    expected = set(model.state_dict())
    # nn.DataParallel / DDP checkpoints prefix every key with "module.".
    if expected and not (set(state) & expected) and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    # Buffers the module registers as non-persistent (e.g. BERT's embeddings.position_ids) are
    # not in its state_dict, but older checkpoints saved them: they are rebuilt by the module,
    # so drop them, as transformers does, instead of refusing the checkpoint.
    stale = {k for k in set(state) - expected if k in _non_persistent_buffers(model)}
    state = {k: v for k, v in state.items() if k not in stale}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln][:3]
        raise SourceError(
            f"weights {path} do not fit the model: {'; '.join(first) or str(exc).splitlines()[0]}"
        ) from exc
    missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    if missing:
        parts = [f"missing {len(missing)} key(s): {_few(missing)}"]
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
        raise SourceError(
            f"weights {path} do not fit the model ({'; '.join(parts)}); check that the reference "
            "builds the same architecture the checkpoint was trained with"
        )
    return unexpected


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")


def _non_persistent_buffers(model: Any) -> set[str]:
    """Full names of the buffers ``model`` keeps out of its state_dict."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            names.add(f"{prefix}.{name}" if prefix else name)
    return names
