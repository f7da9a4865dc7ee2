"""PyTorch ``nn.Module`` source: a live module or a ``module.path:factory_or_class`` reference.

The module is exported (ONNX by default, or TorchScript) and verified by :mod:`packager.sources.pytorch.export`;
the artifact then follows the same spec -> render -> repository path as a model file.
torch is imported only inside ``load``: the registry imports this module eagerly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from packager.errors import SourceError
from packager.sources import LoadedModel, SourceOptions, register
from packager.sources.pytorch.weights import (
    import_reference,
    instantiate,
    is_reference,
    load_weights,
)
from packager.sources.verify import DEFAULT_ATOL, DEFAULT_RTOL


class PyTorchModuleSource:
    name = "pytorch"
    description = "PyTorch nn.Module (live, or module.path:factory) exported to ONNX or TorchScript"

    def sniff(self, ref: Any) -> bool:
        torch = sys.modules.get("torch")  # a live module implies torch is already imported
        if torch is not None and isinstance(ref, torch.nn.Module):
            return True
        return is_reference(ref)

    def load(self, ref: Any, options: SourceOptions) -> LoadedModel:
        from packager.repository import sha256_file
        from packager.sources.pytorch.export import export_module

        if is_reference(ref):
            module = instantiate(import_reference(ref), ref)
            source: dict[str, Any] = {"format": "pytorch", "reference": ref}
        elif self.sniff(ref):
            module = ref
            cls = type(ref)
            source = {"format": "pytorch", "class": f"{cls.__module__}.{cls.__qualname__}"}
        else:
            raise SourceError(
                f"{ref!r} is neither an nn.Module nor a module.path:factory reference"
            )
        weights = options.weights
        if weights:
            unused = load_weights(module, weights)
            source["weights"] = Path(weights).name
            if unused:  # in the checkpoint but not in the model (e.g. training-only tensors)
                source["weights_unused"] = unused
            source["weights_sha256"] = sha256_file(Path(weights))
        # build --prune: a pruned copy of the module is exported (packager.compress.prune)
        from packager.compress.prune import prune_for_export

        module, pruned = prune_for_export(module, options.prune)
        return export_module(
            module,
            format=_target(options.format),
            example_inputs=options.example,
            more_examples=options.more_examples,
            input_specs=options.input_specs,
            output_names=options.output_names,
            dynamic_axes=options.dynamic_axes,
            fixed_axes=options.fixed_axes,
            opset=options.opset,
            torchscript_mode=options.torchscript_mode,
            verify=options.verify,
            atol=_number(options.atol, DEFAULT_ATOL),
            rtol=_number(options.rtol, DEFAULT_RTOL),
            batch_size=options.batch_size,
            record={"source": source, **pruned},
        )


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _target(fmt: Any) -> str:
    # "auto" and the source's own name mean: the default export target.
    return "onnx" if fmt in (None, "", "auto", "pytorch") else str(fmt)


register("pytorch", PyTorchModuleSource)
