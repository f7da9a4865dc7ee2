"""``packager.build`` and ``packager.inspect``: pick the planner of a build, write its plan.

Every kind of build is a planner (:mod:`packager.planners`): it loads, exports, verifies,
compresses, checks and renders everything with no repository I/O; then ONE
:func:`packager.repository.write_models` call writes the plan atomically. So every check happens
before the first byte is written, and a dry run is the same plan, not written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager import sources
from packager.errors import SpecError
from packager.generate.build import is_causal_lm, plan_generation
from packager.options import BuildOptions, refused
from packager.planners import Plan, PlannedModel
from packager.planners.model import check_file, load_source, plan_model
from packager.planners.text import plan_text
from packager.repository import WriteResult, write_models
from packager.sources import Signature, SourceOptions
from packager.sources.huggingface import GENERATION_TASK, TASKS
from packager.spec import ModelSpec, TensorSpec

__all__ = [
    "BuildOptions",
    "BuildResult",
    "BuiltModel",
    "InspectResult",
    "SourceOptions",
    "build",
    "inspect",
    "plan",
]

# The planner of each Hugging Face task (--task; by default a causal LM generates, other
# architectures take the source's own default): one table.
HF_TASK_KINDS: dict[str, str] = {**{t: "huggingface" for t in TASKS}, GENERATION_TASK: "generation"}


def _one(planned: Callable[[Any, BuildOptions], PlannedModel]) -> Callable[..., Plan]:
    return lambda model, o: Plan([planned(model, o)])


# Build kind (options.declaration.KINDS) -> its planner; a model file's kind is its source's name.
PLANNERS: dict[str, Callable[[Any, BuildOptions], Plan]] = {
    "text": plan_text,
    "generation": _one(plan_generation),
}
_MODEL_PLANNER = _one(plan_model)


@dataclass(frozen=True)
class BuiltModel:
    """One model of a build: what was (or, on a dry run, would be) written."""

    name: str
    kind: str  # "model" | "python_step" | "ensemble"
    version: int | None  # None: the next free number, on a dry run
    spec: ModelSpec
    config: str
    written: WriteResult | None = None  # None for a dry run


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made (or, with ``dry_run``, would make): the model asked for, and every
    model the build wrote (a text pipeline writes its steps and model before the ensemble)."""

    spec: ModelSpec
    config: str
    signature: Signature
    record: dict[str, Any]
    written: WriteResult | None = None  # None for a dry run
    models: tuple[BuiltModel, ...] = ()

    @property
    def model_dir(self) -> Path | None:
        return self.written.model_dir if self.written else None

    @property
    def version(self) -> int | None:
        return self.written.version if self.written else None


@dataclass(frozen=True)
class InspectResult:
    """What ``inspect`` found in a model."""

    format: str
    platform: str
    signature: Signature
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def batchable(self) -> bool:
        return self.signature.batchable

    def to_dict(self) -> dict[str, Any]:
        def t(x: TensorSpec) -> dict[str, Any]:
            return {
                "name": x.name,
                "dtype": x.dtype.wire,
                "config_type": x.dtype.config,
                "dims": list(x.dims),
            }

        return {
            "format": self.format,
            "platform": self.platform,
            "batch_axis": self.batchable,
            "inputs": [t(x) for x in self.signature.inputs],
            "outputs": [t(x) for x in self.signature.outputs],
        }


def inspect(model: Any, *, format: str = "auto", **options: Any) -> InspectResult:
    """Read a model's signature without writing anything (``options``: SourceOptions fields)."""
    loaded = load_source(model, SourceOptions(format=format, **options))
    try:
        return InspectResult(loaded.format, loaded.platform, loaded.signature, dict(loaded.record))
    finally:
        loaded.close()


def build_kind(model: Any, options: BuildOptions) -> str:
    """Which kind of build ``model`` with ``options`` is (a key of options.declaration.KINDS)."""
    if options.text:
        return "text"
    if options.backend == "vllm":
        return "generation"
    # A Hugging Face folder's task (by default a causal LM generates) picks its planner; the
    # generation planner says itself what it needs (a causal LM folder with weights).
    task = options.source.task or (GENERATION_TASK if is_causal_lm(model) else None)
    if task is not None and HF_TASK_KINDS.get(task) == "generation":
        return "generation"
    check_file(model)
    return sources.detect(model).name


def plan(model: Any, options: BuildOptions) -> Plan:
    """The plan of building ``model``: nothing is written; close the plan when done."""
    kind = build_kind(model, options)
    if problems := refused(options, kind) + options.compress.problems():
        raise SpecError(problems, subject=f"build of {options.name!r}")
    return PLANNERS.get(kind, _MODEL_PLANNER)(model, options)


def build(model: Any, options: BuildOptions | None = None, /, **kwargs: Any) -> BuildResult:
    """Package ``model`` (a file path, a ``module:factory`` reference, an ``nn.Module`` or a
    Hugging Face folder) as ``<output>/<name>/<version>``. Nothing is written when anything is
    wrong or ``dry_run`` is set.

    Options come as one :class:`BuildOptions`, or as its flat keywords (``name=``,
    ``max_batch_size=``, ``preferred_batch_sizes=``, ``quantize=``, ``weights=``...; every
    option of packager/options/declaration.py). Compression figures go to
    ``record["compression"]``.
    """
    if options is None:
        options = BuildOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise TypeError("pass either a BuildOptions or keyword options to build(), not both")
    o = options
    with plan(model, o) as p:
        written: list[WriteResult | None] = [None] * len(p.models)
        if not o.dry_run:
            written = list(write_models(o.output, p.writes(), force=o.force))
    models = tuple(
        BuiltModel(m.name, m.kind, w.version if w else m.write.version, m.write.spec, m.config, w)
        for m, w in zip(p.models, written, strict=True)
    )
    main = p.main
    spec = main.write.spec
    signature = main.signature or Signature(spec.inputs, spec.outputs)
    return BuildResult(
        spec, main.config, signature, dict(main.write.record or {}), written[-1], models
    )
