"""Deploy manifests: many models, Python steps and ensembles built into one repository, atomically.

::

    models:        # model files or PyTorch module:factory references (see packager.builder)
      - {name: classifier, source: models/classifier.onnx, max_batch_size: 8}
    python_steps:  # a user's .py file with a function or class (see packager.pysteps)
      - {name: tokenizer, file: steps/tokenizer.py, function: tokenize, inputs: [...], outputs: [...]}
    ensembles:     # ordered steps wired by tensor names (see packager.ensemble)
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
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.ensemble import EnsembleStep, plan_ensemble
from packager.errors import PackagerError, SpecError
from packager.manifest_schema import KeyPath, Problems, Reader, load
from packager.pysteps import PythonStep, step_files, step_problems, step_spec
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
from packager.spec import (
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
    name_problem,
)

SECTIONS = {
    "models": "model files or PyTorch module:factory references",
    "python_steps": "Python pre/post-processing steps",
    "ensembles": "pipelines of models and steps",
}
_COMMON = {
    "name": "model name (folder and URL name)",
    "max_batch_size": "integer >= 0 (0 = the model does not batch)",
    "instance_groups": "list of {kind, count, gpus}",
    "dynamic_batching": "true/false or {preferred_batch_sizes, max_queue_delay_us, ...}",
    "version": "version folder to write (default 1)",
    "version_policy": "latest[:N] | all | specific:V1,V2",
    "parameters": "mapping of config parameters",
    "labels": "mapping of output name -> labels file (label_filename)",
}
MODEL_KEYS = {
    **_COMMON,
    "source": "model file (.onnx, TorchScript .pt) or PyTorch module:factory",
    "weights": "PyTorch weights file (.pt state_dict or .safetensors)",
    "format": "auto | onnx | torchscript (export target for PyTorch)",
    "backend": "native | python",
    "inputs": "list of {name, dtype, dims} (TorchScript / PyTorch)",
    "output_names": "list of output names (PyTorch export)",
    "example_inputs": ".npz file of example inputs, batch dim first",
    "warmup": "batch size of a random-data warmup request (0 = none)",
    "export": "{opset, torchscript_mode, verify, atol, rtol} for PyTorch export",
}
STEP_KEYS = {
    **_COMMON,
    "file": "the step's .py file",
    "function": "name of the function to call",
    "class": "name of the class to instantiate and call",
    "inputs": "list of {name, dtype, dims}",
    "outputs": "list of {name, dtype, dims}",
    "files": "list of extra files for the version folder",
}
ENSEMBLE_KEYS = {
    "name": "ensemble name",
    "steps": "ordered list of {model, version, inputs, outputs}",
    "inputs": "list of tensor names or {name, dtype, dims} (default: inferred)",
    "outputs": "list of tensor names or {name, dtype, dims}",
    "max_batch_size": "integer >= 0 (default: the smallest of the members')",
    "version": "version folder to write (default 1)",
    "version_policy": "latest[:N] | all | specific:V1,V2",
    "parameters": "mapping of config parameters",
}
ENSEMBLE_STEP_KEYS = {
    "model": "name of the model to run",
    "version": "model version (-1 = newest, the default)",
    "inputs": "mapping of model input -> ensemble tensor",
    "outputs": "mapping of model output -> ensemble tensor",
}
EXPORT_KEYS = {
    "opset": "ONNX opset",
    "torchscript_mode": "trace | script",
    "verify": "true/false",
    "atol": "absolute tolerance",
    "rtol": "relative tolerance",
}
_KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU", "model": "KIND_MODEL"}


@dataclass
class Entry:
    """One model, step or ensemble of the manifest after the schema check."""

    section: str
    index: int
    name: str
    version: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> KeyPath:
        return (self.section, self.index)


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


# --------------------------------------------------------------------------- schema


def check_manifest(path: str | Path) -> tuple[list[Entry], Problems]:
    """Parse and schema-check ``path``; raise ManifestError listing every problem."""
    file = Path(path)
    data, problems = load(file)
    r = Reader(problems, file.resolve().parent)
    if data is None:
        data = {}
    top = r.mapping(data, (), SECTIONS)
    entries: list[Entry] = []
    if top is not None:
        for i, item in enumerate(r.items(top.get("models"), ("models",), "models")):
            entries.append(_model_entry(r, item, ("models", i)))
        for i, item in enumerate(r.items(top.get("python_steps"), ("python_steps",), "steps")):
            entries.append(_step_entry(r, item, ("python_steps", i)))
        for i, item in enumerate(r.items(top.get("ensembles"), ("ensembles",), "ensembles")):
            entries.append(_ensemble_entry(r, item, ("ensembles", i)))
        if not any(top.get(s) for s in SECTIONS) and not problems.items:
            problems.add((), f"the manifest names nothing to build; add {', '.join(SECTIONS)}")
    seen: dict[str, Entry] = {}
    for e in entries:
        if not e.name:
            continue
        if (p := name_problem(e.name)) is not None:
            problems.add((*e.path, "name"), p)
        elif e.name in seen:
            first = seen[e.name]
            problems.add(
                (*e.path, "name"),
                f"{e.name!r} is already used by {first.section}[{first.index}]; names are unique",
            )
        seen.setdefault(e.name, e)
    problems.raise_if_any()
    return entries, problems


def _common(r: Reader, m: dict[str, Any], path: KeyPath, opts: dict[str, Any]) -> None:
    opts["max_batch_size"] = r.integer(m.get("max_batch_size"), (*path, "max_batch_size"), 0)
    groups = []
    for i, g in enumerate(r.items(m.get("instance_groups"), (*path, "instance_groups"), "groups")):
        gp = (*path, "instance_groups", i)
        gm = r.mapping(g, gp, {"kind": "auto|cpu|gpu|model", "count": ">= 1", "gpus": "GPU ids"})
        if gm is None:
            continue
        kind = r.text(gm.get("kind", "cpu"), (*gp, "kind"), tuple(_KINDS)) or "cpu"
        count = r.integer(gm.get("count", 1), (*gp, "count"), 1) or 1
        gpus = r.int_list(gm.get("gpus"), (*gp, "gpus"), 0)
        groups.append(InstanceGroup(_KINDS[kind], count, gpus))
    opts["instance_groups"] = tuple(groups) or None
    db = m.get("dynamic_batching")
    dp = (*path, "dynamic_batching")
    if isinstance(db, dict):
        keys = {
            "preferred_batch_sizes": "list of ints",
            "max_queue_delay_us": "integer >= 0",
            "preserve_ordering": "true/false",
            "priority_levels": "integer >= 0",
            "default_priority_level": "integer >= 0",
        }
        r.mapping(db, dp, keys)
        opts["dynamic_batching"] = DynamicBatching(
            r.int_list(db.get("preferred_batch_sizes"), (*dp, "preferred_batch_sizes"), 1),
            r.integer(db.get("max_queue_delay_us"), (*dp, "max_queue_delay_us"), 0) or 0,
            r.flag(db.get("preserve_ordering"), (*dp, "preserve_ordering")) or False,
            r.integer(db.get("priority_levels"), (*dp, "priority_levels"), 0) or 0,
            r.integer(db.get("default_priority_level"), (*dp, "default_priority_level"), 0) or 0,
        )
    else:
        opts["dynamic_batching"] = r.flag(db, dp)
    opts["version_policy"] = _policy(r, m.get("version_policy"), (*path, "version_policy"))
    opts["parameters"] = r.str_map(m.get("parameters"), (*path, "parameters"), "parameters")
    labels = r.str_map(m.get("labels"), (*path, "labels"), "output name -> labels file")
    opts["labels"] = {
        k: f for k, v in labels.items() if (f := r.file(v, (*path, "labels", k))) is not None
    }


def _policy(r: Reader, value: Any, path: KeyPath) -> VersionPolicy | None:
    text = r.text(None if value is None else str(value), path)
    if text is None:
        return None
    try:
        return VersionPolicy.parse(text)
    except SpecError:
        r.p.add(path, f"expected latest[:N], all or specific:V1,V2, got {text!r}")
        return None


def _head(
    r: Reader, item: Any, path: KeyPath, keys: dict[str, str], required: tuple[str, ...]
) -> tuple[dict[str, Any], Entry]:
    m = r.mapping(item, path, keys, required) or {}
    name = r.text(m.get("name"), (*path, "name")) or ""
    version = r.integer(m.get("version", 1), (*path, "version"), 1) or 1
    return m, Entry(str(path[0]), int(path[1]), name, version)


def _model_entry(r: Reader, item: Any, path: KeyPath) -> Entry:
    m, e = _head(r, item, path, MODEL_KEYS, ("name", "source"))
    o = e.options
    o["source"] = r.source(m.get("source"), (*path, "source"))
    o["weights"] = r.file(m.get("weights"), (*path, "weights"))
    o["format"] = (
        r.text(m.get("format"), (*path, "format"), ("auto", "onnx", "torchscript")) or "auto"
    )
    o["backend"] = r.text(m.get("backend"), (*path, "backend"), ("native", "python")) or "native"
    o["inputs"] = r.tensors(m.get("inputs"), (*path, "inputs"), "input")
    names = r.items(m.get("output_names"), (*path, "output_names"), "names")
    o["output_names"] = [n for i, n in enumerate(names) if r.text(n, (*path, "output_names", i))]
    o["example_inputs"] = r.file(m.get("example_inputs"), (*path, "example_inputs"))
    o["warmup"] = r.integer(m.get("warmup"), (*path, "warmup"), 0) or 0
    export = m.get("export")
    xp = (*path, "export")
    if export is not None and r.mapping(export, xp, EXPORT_KEYS) is not None:
        o["opset"] = r.integer(export.get("opset"), (*xp, "opset"), 7)
        o["torchscript_mode"] = r.text(
            export.get("torchscript_mode"), (*xp, "torchscript_mode"), ("trace", "script")
        )
        o["verify"] = r.flag(export.get("verify"), (*xp, "verify"))
        o["atol"] = r.number(export.get("atol"), (*xp, "atol"))
        o["rtol"] = r.number(export.get("rtol"), (*xp, "rtol"))
    _common(r, m, path, o)
    return e


def _step_entry(r: Reader, item: Any, path: KeyPath) -> Entry:
    m, e = _head(r, item, path, STEP_KEYS, ("name", "file", "inputs", "outputs"))
    o = e.options
    o["file"] = r.file(m.get("file"), (*path, "file"))
    fn, cls = m.get("function"), m.get("class")
    if (fn is None) == (cls is None):
        r.p.add(path, "give exactly one of 'function' or 'class' (the entry point in the file)")
    o["kind"] = "function" if fn is not None else "class"
    o["entry"] = r.text(fn if fn is not None else cls, (*path, o["kind"])) or ""
    o["inputs"] = r.tensors(m.get("inputs"), (*path, "inputs"), "input")
    o["outputs"] = r.tensors(m.get("outputs"), (*path, "outputs"), "output")
    files = {}
    for i, f in enumerate(r.items(m.get("files"), (*path, "files"), "files")):
        if (p := r.file(f, (*path, "files", i))) is not None:
            files[p.name] = p
    o["files"] = files
    o["source_name"] = str(m.get("file"))
    _common(r, m, path, o)
    return e


def _ensemble_entry(r: Reader, item: Any, path: KeyPath) -> Entry:
    m, e = _head(r, item, path, ENSEMBLE_KEYS, ("name", "steps", "outputs"))
    o = e.options
    o["max_batch_size"] = r.integer(m.get("max_batch_size"), (*path, "max_batch_size"), 0)
    o["version_policy"] = _policy(r, m.get("version_policy"), (*path, "version_policy"))
    o["parameters"] = r.str_map(m.get("parameters"), (*path, "parameters"), "parameters")
    for role in ("inputs", "outputs"):
        if role == "inputs" and m.get("inputs") is None:
            o["inputs"] = None
            continue
        tensors: list[TensorSpec | str] = []
        for i, t in enumerate(r.items(m.get(role), (*path, role), "tensor names or specs")):
            if isinstance(t, str):
                tensors.append(t)
            elif (
                spec := r.tensor(t, (*path, role, i), {"name": "", "dtype": "", "dims": ""})
            ) is not None:
                tensors.append(spec)
        o[role] = tensors
    steps = []
    for i, s in enumerate(r.items(m.get("steps"), (*path, "steps"), "steps")):
        sp = (*path, "steps", i)
        sm = r.mapping(s, sp, ENSEMBLE_STEP_KEYS, ("model",))
        if sm is None:
            continue
        version = r.integer(sm.get("version", -1), (*sp, "version"), -1)
        if version == 0:
            r.p.add((*sp, "version"), "expected -1 (newest) or a positive version, got 0")
        steps.append(
            EnsembleStep(
                r.text(sm.get("model"), (*sp, "model")) or "",
                version if version is not None else -1,
                tuple(
                    r.str_map(sm.get("inputs"), (*sp, "inputs"), "model input -> tensor").items()
                ),
                tuple(
                    r.str_map(sm.get("outputs"), (*sp, "outputs"), "model output -> tensor").items()
                ),
            )
        )
    o["steps"] = tuple(steps)
    if isinstance(m.get("steps"), list) and not m["steps"]:
        r.p.add((*path, "steps"), "expected at least one step")
    return e


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
    from packager.builder import build

    o = e.options
    kwargs: dict[str, Any] = {
        "name": e.name,
        "output": scratch,
        "format": o["format"],
        "backend": o["backend"],
        "max_batch_size": o["max_batch_size"],
        "instance_groups": o["instance_groups"],
        "version": e.version,
        "version_policy": o["version_policy"],
        "warmup": o["warmup"],
        "parameters": o["parameters"],
        "force": True,
    }
    if isinstance(o["dynamic_batching"], DynamicBatching):
        db = o["dynamic_batching"]
        kwargs.update(
            preferred_batch_sizes=db.preferred_batch_sizes,
            max_queue_delay_us=db.max_queue_delay_us,
            preserve_ordering=db.preserve_ordering,
            priority_levels=db.priority_levels,
            default_priority_level=db.default_priority_level,
        )
    elif o["dynamic_batching"] is not None:
        kwargs["dynamic_batching"] = o["dynamic_batching"]
    for key in ("weights", "example_inputs", "opset", "torchscript_mode", "verify", "atol", "rtol"):
        if o.get(key) is not None:
            kwargs[key] = o[key]
    if o["inputs"]:
        kwargs["input_specs"] = list(o["inputs"])
    if o["output_names"]:
        kwargs["output_names"] = o["output_names"]
    source = str(o["source"]) if isinstance(o["source"], Path) else o["source"]
    result = build(source, **kwargs)
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
        instance_groups=o["instance_groups"] or (),
        dynamic_batching=_batching(o["dynamic_batching"], o["max_batch_size"] or 0),
        version_policy=o["version_policy"],
        parameters=o["parameters"],
        labels=o["labels"],
        files=o["files"],
        source_name=o["source_name"],
    )
    found = step_problems(step)
    if found:
        raise SpecError(found)
    spec = step_spec(step)
    render_config(spec)  # SpecError with every config problem
    files, model_files, record = step_files(step)
    return ModelWrite(spec, files, e.version, record, model_files)


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
