"""Deploy manifests: many models, Python steps and ensembles built into one repository, atomically.

::

    models:        # every option of `build MODEL` by its key (packager/options/declaration.py)
      - {name: classifier, source: models/classifier.onnx, max_batch_size: 8}
    python_steps:  # a user's .py file with a function or class (see packager.manifest.pysteps)
      - {name: tokenizer, file: steps/tokenizer.py, function: tokenize, inputs: [...], outputs: [...]}
    ensembles:     # ordered steps wired by tensor names (see packager.manifest.ensemble)
      - {name: pipeline, outputs: [LABELS], steps: [{model: tokenizer, inputs: {...}, outputs: {...}}]}

The order of work is what makes it all-or-nothing: the schema is checked first (every problem
at once, each naming file, line and key path); then every entry is planned by the same planners
as ``build`` (:mod:`packager.planners`: loaded, exported, checked and rendered, nothing written);
only then does ONE :func:`packager.repository.write_models` call stage and swap everything in. Relative paths
resolve from the manifest's folder. Nothing in the output depends on time or on where the
manifest lives, so building twice gives byte-identical repositories.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packager.builder import BuildOptions, BuiltModel, plan
from packager.errors import PackagerError, SpecError
from packager.manifest.ensemble import plan_ensemble
from packager.manifest.pysteps import STEP_INSTANCE_GROUPS, PythonStep, plan_step
from packager.manifest.schema import Entry, check_manifest
from packager.manifest.yamlcheck import Problems
from packager.planners import Plan, PlannedModel
from packager.render import render_config, spec_from_config
from packager.repository import ModelWrite, WriteResult, list_models, read_config, write_models
from packager.spec import DynamicBatching, ModelSpec

__all__ = ["BuiltModel", "ManifestResult", "build_manifest"]


@dataclass(frozen=True)
class ManifestResult:
    manifest: Path
    output: Path
    models: tuple[BuiltModel, ...]

    @property
    def written(self) -> bool:
        return any(m.written is not None for m in self.models)


# --------------------------------------------------------------------------- build


@contextlib.contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """Let ``module:factory`` references name modules that sit beside the manifest."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def build_manifest(
    path: str | Path, output: str | Path, *, force: bool = False, dry_run: bool = False
) -> ManifestResult:
    """Build everything ``path`` names into ``output`` in one atomic write (or nothing at all)."""
    manifest, out = Path(path), Path(output)
    entries, problems = check_manifest(manifest)
    existing = _existing_specs(out)
    if not force:
        for e in entries:
            if (out / e.name / str(e.version)).exists():
                problems.add(
                    (*e.path, "version"),
                    f"{e.name}/{e.version} already exists in {out}; pass --force to replace it, "
                    "or set another version",
                )
    plans: dict[str, Plan] = {}  # entry name -> its plan (a text entry plans several models)
    try:
        with _importable(manifest.resolve().parent):
            for e in entries:
                try:
                    if e.section == "models":
                        plans[e.name] = _plan_model(e)
                    elif e.section == "python_steps":
                        step = plan_step(_step(e), e.version, e.options["scheduling"])
                        plans[e.name] = Plan([step])
                except SpecError as exc:
                    for p in exc.problems:
                        problems.add(e.path, f"{e.name}: {p}")
                except PackagerError as exc:
                    problems.add(e.path, f"{e.name}: {exc}")
        members = {**existing, **{m.name: m.write.spec for p in plans.values() for m in p.models}}
        failed = {e.name for e in entries if e.section != "ensembles" and e.name not in plans}
        for e in entries:
            broken = [
                (i, s) for i, s in enumerate(e.options.get("steps", ())) if s.model_name in failed
            ]
            for i, s in broken:  # no second, misleading "does not exist" for these
                problems.add(
                    (*e.path, "steps", i, "model"),
                    f"{s.model_name!r} could not be built (see above); the wiring is checked once it builds",
                )
            if e.section == "ensembles" and not broken:
                planned = _plan_ensemble(e, members, problems)
                if planned is not None:
                    plans[e.name] = Plan([planned])
                    members[e.name] = planned.write.spec
        problems.raise_if_any()
        ordered = [m for e in entries for m in plans[e.name].models]
        for m in ordered:
            m.write.record = {**(m.write.record or {}), "manifest": manifest.name}
        written: list[WriteResult | None] = [None] * len(ordered)
        if not dry_run:
            written = list(write_models(out, [m.write for m in ordered], force=force))
        built = tuple(
            BuiltModel(m.name, m.kind, m.write.version, m.write.spec, m.config, r)
            for m, r in zip(ordered, written, strict=True)
        )
    finally:
        for each in plans.values():
            each.close()
    return ManifestResult(manifest, out, built)


def _existing_specs(out: Path) -> dict[str, ModelSpec]:
    """Models already in the output repository: ensembles may use them as members."""
    if not out.is_dir():
        return {}
    specs = {}
    for d in list_models(out):
        with contextlib.suppress(PackagerError):
            specs[d.name] = spec_from_config(read_config(d))
    return specs


def _plan_model(e: Entry) -> Plan:
    """The plan of a model entry: the same planners as ``build MODEL`` with the entry's options."""
    o = e.options
    options = BuildOptions.from_kwargs(**o["build"], name=e.name, version=e.version)
    source = str(o["source"]) if isinstance(o["source"], Path) else o["source"]
    p = plan(source, options)
    for m in p.models:
        # The tool's own version is left out so that the repository is the same whichever
        # triton-packager install rebuilds it (the committed example is compared byte for byte).
        m.write.record = {k: v for k, v in (m.write.record or {}).items() if k != "packager"}
    return p


def _step(e: Entry) -> PythonStep:
    o = e.options
    return PythonStep(
        name=e.name,
        file=o["file"],
        entry=o["entry"],
        kind=o["kind"],
        inputs=o["inputs"],
        outputs=o["outputs"],
        max_batch_size=o["max_batch_size"] or 0,
        instance_groups=o["instance_groups"] or STEP_INSTANCE_GROUPS,
        dynamic_batching=_batching(o["dynamic_batching"], o["max_batch_size"] or 0),
        version_policy=o["version_policy"],
        parameters=o["parameters"],
        labels=o["labels"],
        files=o["files"],
        source_name=o["source_name"],
        requires=o.get("requires") or (),
    )


def _batching(value: DynamicBatching | bool | None, max_batch_size: int) -> DynamicBatching | None:
    if isinstance(value, DynamicBatching):
        return value
    if value is None:  # like `build`: on whenever the model batches
        return DynamicBatching() if max_batch_size > 0 else None
    return DynamicBatching() if value else None


def _plan_ensemble(
    e: Entry, members: dict[str, ModelSpec], problems: Problems
) -> PlannedModel | None:
    o = e.options
    spec, issues = plan_ensemble(
        e.name,
        o["steps"],
        members,
        inputs=o["inputs"],
        outputs=o["outputs"],
        max_batch_size=o["max_batch_size"],
        version_policy=o["version_policy"],
        parameters=o["parameters"],
    )
    for rel, message in issues:
        problems.add((*e.path, *rel), message)
    if spec is None:
        return None
    record = {"format": "ensemble", "runtime": "ensemble"}
    return PlannedModel(
        ModelWrite(spec, {}, e.version, record, {}, render_config(spec)), "ensemble"
    )
