"""Magnitude pruning of a PyTorch module before export (``torch.nn.utils.prune``).

* unstructured (L1): in every Linear/Conv layer, the ``amount`` fraction of weights with the
  smallest absolute value become zero.
* structured (Ln, n=2): in every Linear/Conv layer except the last one, the ``amount`` fraction
  of output channels (rows) with the smallest L2 norm become zero. The last layer is kept whole
  because its rows *are* the model's outputs (zeroing one would delete a class).

Pruning is made permanent with ``prune.remove`` (the mask is folded into the weight and the
re-parametrization hooks are gone) so the exporter sees plain tensors. The weights stay dense:
pruning alone does not shrink the file; it makes the weights compressible and combines with
``--quantize``. The caller's module is left untouched: a deep copy is pruned.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packager.compress.report import CompressionReport, arrays_stage
from packager.errors import PackagerError

Evaluate = Callable[[Any], float]  # module -> metric, for the before/after table


@dataclass(frozen=True)
class PruneRequest:
    """What ``build --prune`` asks of the PyTorch source (passed through ``source_options``)."""

    amount: float
    structured: bool = False
    evaluate: Evaluate | None = None  # optional: metric of a module on evaluation data
    metric_name: str | None = None

    def __post_init__(self) -> None:
        check_amount(self.amount)


def check_amount(amount: float) -> None:
    if not 0.0 < float(amount) < 1.0:
        raise PackagerError(
            f"--prune takes the fraction of weights to remove, between 0 and 1 (e.g. 0.5); got {amount}"
        )


def prune_module(
    module: Any,
    amount: float,
    structured: bool = False,
    *,
    evaluate: Evaluate | None = None,
    metric_name: str | None = None,
    copy_module: bool = True,
) -> tuple[Any, CompressionReport]:
    """Prune ``amount`` of the weights of every Linear/Conv layer; returns (pruned module, report).

    The report's stages are the module before and after (figures from its parameters); with
    ``evaluate`` each stage also carries the metric.
    """
    import torch
    from torch.nn.utils import prune

    check_amount(amount)
    target = module
    note = ""
    if copy_module:
        try:
            target = copy.deepcopy(module)
        except Exception as exc:  # a module holding e.g. open handles cannot be copied
            note = f"pruned in place (the module cannot be deep-copied: {exc})"
    target.eval()
    prunable = _prunable()
    layers: list[tuple[str, Any]] = [
        (name, m)
        for name, m in target.named_modules()
        if isinstance(m, prunable) and isinstance(getattr(m, "weight", None), torch.Tensor)
    ]
    if structured:
        layers = layers[:-1]  # the output layer keeps all its rows (see module docstring)
    if not layers:
        raise PackagerError(
            "--prune found no layer to prune: it prunes the weights of Linear and Conv layers"
            + (" other than the output layer" if structured else "")
            + f", and {type(module).__name__} has none"
        )

    before = _stage(target, "original", evaluate)
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for name, layer in layers:
            if structured:
                prune.ln_structured(layer, "weight", amount=amount, n=2, dim=0)
            else:
                prune.l1_unstructured(layer, "weight", amount=amount)
            prune.remove(layer, "weight")  # permanent: mask folded in, hooks removed
            w = layer.weight
            per_layer[name or type(layer).__name__] = round(
                float((w == 0).sum().item()) / max(w.numel(), 1), 4
            )
    method = "ln structured (n=2, output channels)" if structured else "l1 unstructured"
    label = f"pruned {amount:.0%} ({'structured' if structured else 'unstructured'})"
    after = _stage(target, label, evaluate)
    details: dict[str, Any] = {
        "amount": amount,
        "method": method,
        "layers": per_layer,
    }
    if note:
        details["note"] = note
    report = CompressionReport(
        stages=(before, after),
        metric_name=metric_name if evaluate else None,
        steps=(f"prune {amount:g} {method}",),
        details={"prune": details},
    )
    return target, report


def _stage(module: Any, label: str, evaluate: Evaluate | None) -> Any:
    arrays = [
        t.detach().cpu().numpy() for t in module.state_dict().values() if t.is_floating_point()
    ]
    metric = evaluate(module) if evaluate is not None else None
    return arrays_stage(arrays, label, metric)


def _prunable() -> tuple[type, ...]:
    from torch import nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def prune_for_export(module: Any, request: PruneRequest | None) -> tuple[Any, dict[str, Any]]:
    """The PyTorch source's hook: (module to export, extra build-record entries)."""
    if request is None:
        return module, {}
    pruned, report = prune_module(
        module,
        request.amount,
        request.structured,
        evaluate=request.evaluate,
        metric_name=request.metric_name,
    )
    return pruned, {"prune": report.to_dict()}
