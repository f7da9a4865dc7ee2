"""Deploy manifests: many models, Python steps and ensembles built into one repository, atomically.

::

    models:        # model files or PyTorch module:factory references (see packager.builder)
      - {name: classifier, source: models/classifier.onnx, max_batch_size: 8}
    python_steps:  # a user's .py file with a function or class (see packager.manifest.pysteps)
      - {name: tokenizer, file: steps/tokenizer.py, function: tokenize, inputs: [...], outputs: [...]}
    ensembles:     # ordered steps wired by tensor names (see packager.manifest.ensemble)
      - {name: pipeline, outputs: [LABELS], steps: [{model: tokenizer, inputs: {...}, outputs: {...}}]}

The order of work is what makes it all-or-nothing: the schema is checked first (every problem
at once, each naming file, line and key path); then every model is loaded or exported into a
private scratch folder and every spec is checked; only then does ONE
:func:`packager.repository.write_models` call stage and swap everything in. Relative paths
resolve from the manifest's folder. Nothing in the output depends on time or on where the
manifest lives, so building twice gives byte-identical repositories.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packager.errors import PackagerError, SpecError
from packager.manifest.ensemble import plan_ensemble
from packager.manifest.pysteps import (
    STEP_INSTANCE_GROUPS,
    PythonStep,
    step_files,
    step_problems,
    step_spec,
)
from packager.manifest.schema import Entry, check_manifest
from packager.manifest.yamlcheck import Problems
from packager.render import render_config, spec_from_config
from packager.repository import (
    CHECKSUMS,
    RECORD,
    ModelWrite,
    WriteResult,
    list_models,
    read_config,
    write_models,
)
from packager.scheduling import DEFAULT_CANDIDATE_SEQUENCES, SchedulingOptions, SequenceBatching
from packager.spec import DynamicBatching, ModelSpec, TensorSpec


@dataclass(frozen=True)
class BuiltModel:
    """One model of the manifest: what was (or, on a dry run, would be) written."""

    name: str
    kind: str  # "model" | "python_step" | "ensemble"
    version: int
    spec: ModelSpec
    config: str
    written: WriteResult | None = None


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
    with tempfile.TemporaryDirectory(prefix="tp-manifest-") as scratch:
        plans: dict[str, tuple[Entry, ModelWrite]] = {}
        with _importable(manifest.resolve().parent):
            for e in entries:
                try:
                    if e.section == "models":
                        plans[e.name] = (e, _plan_model(e, Path(scratch), manifest.name))
                    elif e.section == "python_steps":
                        plans[e.name] = (e, _plan_step(e, problems))
                except SpecError as exc:
                    for p in exc.problems:
                        problems.add(e.path, f"{e.name}: {p}")
                except PackagerError as exc:
                    problems.add(e.path, f"{e.name}: {exc}")
        members = {**existing, **{n: w.spec for n, (_, w) in plans.items()}}
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
                w = _plan_ensemble(e, members, problems)
                if w is not None:
                    plans[e.name] = (e, w)
                    members[e.name] = w.spec
        problems.raise_if_any()
        ordered = [plans[e.name] for e in entries]
        for _, w in ordered:
            w.record = {**(w.record or {}), "manifest": manifest.name}
        written: list[WriteResult | None] = [None] * len(ordered)
        if not dry_run:
            written = list(write_models(out, [w for _, w in ordered], force=force))
        built = tuple(
            BuiltModel(e.name, _KIND_OF[e.section], e.version, w.spec, render_config(w.spec), r)
            for (e, w), r in zip(ordered, written, strict=True)
        )
    return ManifestResult(manifest, out, built)


_KIND_OF = {"models": "model", "python_steps": "python_step", "ensembles": "ensemble"}


def _existing_specs(out: Path) -> dict[str, ModelSpec]:
    """Models already in the output repository: ensembles may use them as members."""
    if not out.is_dir():
        return {}
    specs = {}
    for d in list_models(out):
        with contextlib.suppress(PackagerError):
            specs[d.name] = spec_from_config(read_config(d))
    return specs


def _with_labels(spec: ModelSpec, labels: dict[str, Path]) -> ModelSpec:
    unknown = sorted(set(labels) - {t.name for t in spec.outputs})
    if unknown:
        raise SpecError(
            [
                f"labels for {', '.join(unknown)}: no such output; outputs are: "
                f"{', '.join(t.name for t in spec.outputs)}"
            ]
        )
    outputs = tuple(
        TensorSpec(t.name, t.dtype, t.dims, label_filename=labels[t.name].name)
        if t.name in labels
        else t
        for t in spec.outputs
    )
    return spec.replace(outputs=outputs)


def _plan_model(e: Entry, scratch: Path, manifest_name: str) -> ModelWrite:
    """Load/export the model into a private scratch repository, then plan its real write."""
    from packager.builder import BuildOptions, SourceOptions, build

    o = e.options
    db = o["dynamic_batching"]  # a DynamicBatching, or True/False/None (on/off/by the model)
    options = BuildOptions(
        name=e.name,
        output=scratch,
        format=o["format"],
        backend=o["backend"],
        max_batch_size=o["max_batch_size"],
        instance_groups=o["instance_groups"],
        dynamic_batching=None if isinstance(db, DynamicBatching) else db,
        batching=db if isinstance(db, DynamicBatching) else DynamicBatching(),
        version=e.version,
        version_policy=o["version_policy"],
        warmup=o["warmup"],
        parameters=o["parameters"],
        scheduling=o["scheduling"],
        force=True,
        source=SourceOptions(
            input_specs=o["inputs"] or (),
            example_inputs=o.get("example_inputs"),
            weights=o.get("weights"),
            output_names=o["output_names"] or (),
            opset=o.get("opset"),
            torchscript_mode=o.get("torchscript_mode"),
            verify=o.get("verify") is not False,
            atol=o.get("atol"),
            rtol=o.get("rtol"),
        ),
    )
    source = str(o["source"]) if isinstance(o["source"], Path) else o["source"]
    result = build(source, options)
    assert result.written is not None
    vdir = result.written.model_dir / str(e.version)
    files = {
        p.relative_to(vdir).as_posix(): p
        for p in sorted(vdir.rglob("*"))
        if p.is_file() and p.name not in (CHECKSUMS, RECORD)
    }
    # The tool's own version is left out so that the repository is the same whichever
    # triton-packager install rebuilds it (the committed example is compared byte for byte).
    record = {k: v for k, v in result.record.items() if k != "packager"}
    spec = _with_labels(result.spec, o["labels"])
    model_files = {p.name: p for p in o["labels"].values()}
    return ModelWrite(spec, files, e.version, record, model_files)


def _plan_step(e: Entry, problems: Problems) -> ModelWrite:
    o = e.options
    step = PythonStep(
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
    found = step_problems(step)
    if found:
        raise SpecError(found)
    spec = _with_scheduling(step_spec(step), o["scheduling"])
    render_config(spec)  # SpecError with every config problem
    files, model_files, record = step_files(step)
    return ModelWrite(spec, files, e.version, record, model_files)


def _with_scheduling(spec: ModelSpec, s: SchedulingOptions) -> ModelSpec:
    """A Python step's response cache, rate limiter and sequence batcher (the keys a step
    takes; a step keeps its state itself, so its sequence batcher has no implicit state)."""
    limiter = s.rate_limiter()
    groups = spec.instance_groups
    if limiter is not None:
        groups = tuple(dataclasses.replace(g, rate_limiter=limiter) for g in groups)
    spec = spec.replace(instance_groups=groups, response_cache=s.response_cache)
    if s.sequence_batching:
        oldest = s.sequence_strategy == "oldest"
        batcher = SequenceBatching(
            s.sequence_strategy,  # type: ignore[arg-type]  # checked by the spec
            s.sequence_idle_us,
            max_candidate_sequences=s.max_candidate_sequences
            or (DEFAULT_CANDIDATE_SEQUENCES if oldest else 0),
        )
        spec = spec.replace(sequence_batching=batcher, dynamic_batching=None)
    return spec


def _batching(value: DynamicBatching | bool | None, max_batch_size: int) -> DynamicBatching | None:
    if isinstance(value, DynamicBatching):
        return value
    if value is None:  # like `build`: on whenever the model batches
        return DynamicBatching() if max_batch_size > 0 else None
    return DynamicBatching() if value else None


def _plan_ensemble(
    e: Entry, members: dict[str, ModelSpec], problems: Problems
) -> ModelWrite | None:
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
    return ModelWrite(spec, {}, e.version, {"format": "ensemble", "runtime": "ensemble"}, {})
