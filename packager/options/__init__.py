"""Build options: :class:`BuildOptions` (the typed object every build reads) and what is
generated from the one declaration in :mod:`packager.options.declaration`: the Python keywords
(:meth:`BuildOptions.from_kwargs`), the refusal of options a build kind ignores (:func:`refused`),
the CLI values (:func:`cli_values`) and the manifest keys (:func:`manifest_keys`,
:func:`read_manifest`). To add an option, read declaration.py's docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from packager.compress.pipeline import CompressOptions
from packager.options.declaration import BY_NAME, GROUPS, KINDS, OPTIONS, Option
from packager.scheduling import SchedulingOptions
from packager.sources import SourceOptions
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    VersionPolicy,
)

if TYPE_CHECKING:
    from packager.manifest.yamlcheck import KeyPath, Reader

__all__ = ["BY_NAME", "KINDS", "OPTIONS", "BuildOptions", "Option", "SourceOptions", "refused"]


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``build`` takes besides the model: one typed, immutable object filled by the
    CLI, the Python API (:meth:`from_kwargs`) and deploy manifests, all from :data:`OPTIONS`."""

    name: str
    output: Path = Path("model_repository")
    format: str = "auto"  # auto | a source or artifact format (formats.FORMATS)
    backend: str = "native"  # native | python | vllm (text generation)
    max_batch_size: int | None = None  # None: 32 when every tensor has a batch axis, else 0
    # Instances: explicit groups, or one group of `instances` of `kind` (on each of `gpus`).
    instance_groups: tuple[InstanceGroup, ...] | None = None
    kind: str = "auto"  # auto | gpu | cpu | model (spec.KIND_OPTIONS)
    gpus: tuple[int, ...] = ()
    instances: int = 1
    # Dynamic batching: None turns it on when the model batches or `batching` was set.
    dynamic_batching: bool | None = None
    batching: DynamicBatching = field(default_factory=DynamicBatching)
    version: int | None = None  # None: the next free version
    version_policy: VersionPolicy | None = None
    warmup: int = 0  # warm-up requests per instance at load
    parameters: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, Path] = field(default_factory=dict)  # output -> labels file
    gpu_optimization: GpuOptimization | None = None
    text: bool = False  # a Hugging Face folder as a text-in ensemble
    force: bool = False  # overwrite an existing version
    dry_run: bool = False
    compress: CompressOptions = field(default_factory=CompressOptions)
    source: SourceOptions = field(default_factory=SourceOptions)
    # Sequence batching / implicit state, response cache, rate limiter (packager.scheduling)
    scheduling: SchedulingOptions = field(default_factory=SchedulingOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus or ()))
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters or {})))
        labels = {str(k): Path(v) for k, v in (self.labels or {}).items()}
        object.__setattr__(self, "labels", MappingProxyType(labels))
        if self.instance_groups is not None:
            object.__setattr__(self, "instance_groups", tuple(self.instance_groups))
        if isinstance(self.version_policy, str):
            object.__setattr__(self, "version_policy", VersionPolicy.parse(self.version_policy))
        gpu = self.gpu_optimization
        if gpu is not None and gpu == GpuOptimization():
            # nothing asked: no optimization block
            object.__setattr__(self, "gpu_optimization", None)

    def replace(self, **changes: Any) -> BuildOptions:
        return replace(self, **changes)

    def groups(self, auto: str = "KIND_AUTO") -> tuple[InstanceGroup, ...]:
        """The instance groups: the explicit ones, or one group of ``instances`` of ``kind`` (on
        each of ``gpus``, which means KIND_GPU); ``auto`` is what kind ``auto`` means here."""
        if self.instance_groups is not None:
            return self.instance_groups
        kind = "KIND_GPU" if self.gpus else KIND_OPTIONS.get(self.kind, self.kind)
        return (InstanceGroup(auto if kind == "KIND_AUTO" else kind, self.instances, self.gpus),)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> BuildOptions:
        """The flat keywords of ``packager.build(model, name=..., max_batch_size=...)``: the
        names of :data:`OPTIONS` (or a whole group: ``batching=``, ``compress=``, ``source=``)."""
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for key, value in kwargs.items():
            opt = BY_NAME.get(key)
            if opt is None:
                if key in _OWN_FIELDS:  # a typed group or field given whole
                    top[key] = value
                    continue
                known = sorted({*BY_NAME, *_OWN_FIELDS})
                raise TypeError(
                    f"build() got an unknown option {key!r}; options: {', '.join(known)}"
                )
            value = opt.value.python(value)
            if not opt.is_set(value):
                continue  # a default: the field or group keeps its own
            group, _, attr = opt.field.rpartition(".")
            (grouped[group] if group else top)[attr] = value
        # innermost groups first, so that a queue policy lands in its batching group
        for group in sorted(GROUPS, key=lambda g: -g.count(".")):
            values = grouped[group]
            if not values:
                continue
            parent, _, attr = group.rpartition(".")
            made = GROUPS[group](**values)
            (grouped[parent] if parent else top)[attr] = made
        return cls(**top)


_OWN_FIELDS = {f.name for f in fields(BuildOptions)}


def value_of(options: BuildOptions, opt: Option) -> Any:
    """``opt``'s value in ``options`` (the default where its group is absent)."""
    node: Any = options
    for part in opt.field.split("."):
        if node is None:
            return opt.default
        node = getattr(node, part)
    return node


def refused(options: BuildOptions, kind: str) -> list[str]:
    """The options set in ``options`` that a build of ``kind`` would ignore, each named."""
    return [
        f"{o.cli_name or o.name} does not apply to {KINDS[kind]} (it applies to "
        f"{', '.join(KINDS[k] for k in KINDS if k in o.kinds)}); leave it out"
        for o in OPTIONS
        if kind not in o.kinds and o.is_set(value_of(options, o))
    ]


def cli_values(params: Mapping[str, Any], fail: Callable[[Option, str], Exception]) -> dict:
    """Typed keyword values of the click parameters named after :data:`OPTIONS`."""
    out = {}
    for o in OPTIONS:
        if o.flag is None or o.name not in params:
            continue
        try:
            out[o.name] = o.value.cli(params[o.name])
        except ValueError as exc:
            raise fail(o, str(exc)) from None
    return out


def manifest_keys() -> dict[str, str]:
    """Model-entry keys of a manifest -> what each expects (nested groups shown whole)."""
    out: dict[str, str] = {}
    nested: dict[str, list[str]] = {}
    for o in OPTIONS:
        if o.manifest is None:
            continue
        head, _, sub = o.manifest.partition(".")
        if sub:
            nested.setdefault(head, []).append(sub)
        else:
            out[head] = f"{o.value.describe()}: {o.help}"
    for head, subs in nested.items():
        whole = f"{out[head]} or " if head in out else ""
        out[head] = whole + "{" + ", ".join(subs) + "}"
    return out


def read_manifest(r: Reader, entry: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
    """The build keywords of one manifest model entry (problems recorded in ``r``)."""
    values: dict[str, Any] = {}
    groups = {o.manifest.split(".")[0] for o in OPTIONS if o.manifest and "." in o.manifest}
    subkeys: dict[str, dict[str, str]] = {g: {} for g in groups}
    for o in OPTIONS:
        head, _, sub = (o.manifest or "").partition(".")
        if sub:
            subkeys[head][sub] = o.help
    for o in OPTIONS:
        if o.manifest is None or o.name in ("name", "version"):
            continue  # name and version are the entry's own (schema._head)
        head, _, sub = o.manifest.partition(".")
        raw = entry.get(head)
        if sub:
            if not isinstance(raw, dict):
                continue
            raw, where = raw.get(sub), (*path, head, sub)
        else:
            where = (*path, head)
            if head in groups and isinstance(raw, dict):
                continue  # the group's mapping form: its keys are other options
        value = o.value.manifest(r, raw, where)
        if value is not None:
            values[o.name] = value
    for g in groups:  # unknown keys inside a group; a group that is no option must be a mapping
        value, standalone = entry.get(g), any(o.manifest == g for o in OPTIONS)
        if isinstance(value, dict) or (value is not None and not standalone):
            r.mapping(value, (*path, g), subkeys[g])
    return values
