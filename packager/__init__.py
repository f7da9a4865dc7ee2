"""triton-packager: package trained models for NVIDIA Triton Inference Server.

The public API; heavy modules are imported on first use so ``import packager`` stays light.
"""

from __future__ import annotations

from typing import Any

from packager.errors import PackagerError
from packager.scheduling import (
    RateLimiter,
    RateLimitResource,
    SchedulingOptions,
    SequenceBatching,
    SequenceControl,
    SequenceState,
)
from packager.spec import (
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    Warmup,
    WarmupInput,
)

__all__ = [
    "BuildOptions",
    "DynamicBatching",
    "GpuOptimization",
    "InstanceGroup",
    "LocalServer",
    "ModelSpec",
    "PackagerError",
    "QueuePolicy",
    "RateLimitResource",
    "RateLimiter",
    "SchedulingOptions",
    "SequenceBatching",
    "SequenceControl",
    "SequenceState",
    "SourceOptions",
    "TensorSpec",
    "VersionPolicy",
    "Warmup",
    "WarmupInput",
    "build",
    "build_manifest",
    "inspect",
    "plan",
    "render_config",
    "validate",
]

# Module names and function names must differ (packager.builder.build, not packager.build.build):
# importing a submodule binds its name on the package and would shadow a same-named function.
_LAZY = {
    "build": "packager.builder:build",
    "BuildOptions": "packager.builder:BuildOptions",
    "SourceOptions": "packager.builder:SourceOptions",
    "inspect": "packager.builder:inspect",
    "plan": "packager.builder:plan",
    "validate": "packager.validation:validate",
    "render_config": "packager.render:render_config",
    "LocalServer": "packager.serve.server:LocalServer",
    "build_manifest": "packager.manifest.builder:build_manifest",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'packager' has no attribute {name!r}")
    import importlib

    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
