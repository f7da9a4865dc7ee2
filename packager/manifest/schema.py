"""The deploy manifest's schema: which keys each section takes, and checked :class:`Entry` items.

:func:`check_manifest` parses the YAML (:mod:`packager.manifest.yamlcheck` keeps the line of every key)
and returns one :class:`Entry` per model, Python step and ensemble, with typed options and paths
resolved from the manifest's folder; it raises :class:`ManifestError` listing every problem of
the file at once, each as ``deploy.yaml:12: models[0].max_batch_size: expected ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.manifest.ensemble import EnsembleStep
from packager.manifest.yamlcheck import KeyPath, Problems, Reader, load
from packager.options import BY_NAME, manifest_keys, read_manifest
from packager.options.values import Policy
from packager.scheduling import SchedulingOptions
from packager.spec import (
    KIND_OPTIONS,
    DynamicBatching,
    InstanceGroup,
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
# A model entry takes every option of `build MODEL` (packager.options.declaration) by its key.
MODEL_KEYS = {
    "name": _COMMON["name"],
    "source": "model file, SavedModel or Hugging Face folder, or PyTorch module:factory",
    "version": _COMMON["version"],
    **manifest_keys(),
}
STEP_KEYS = {
    **_COMMON,
    "file": "the step's .py file",
    "function": "name of the function to call",
    "class": "name of the class to instantiate and call",
    "inputs": "list of {name, dtype, dims}",
    "outputs": "list of {name, dtype, dims}",
    "files": "list of extra files for the version folder",
    "requires": "list of pip requirements the step imports (added to Docker images)",
    "response_cache": MODEL_KEYS["response_cache"],
    "sequence_batching": MODEL_KEYS["sequence_batching"] + " (the step gets `sequence`)",
    "sequence_strategy": MODEL_KEYS["sequence_strategy"],
    "max_candidate_sequences": MODEL_KEYS["max_candidate_sequences"],
    "sequence_idle_us": MODEL_KEYS["sequence_idle_us"],
    "rate_limit_resources": MODEL_KEYS["rate_limit_resources"],
    "rate_limit_priority": MODEL_KEYS["rate_limit_priority"],
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
        kind = r.text(gm.get("kind", "cpu"), (*gp, "kind"), tuple(KIND_OPTIONS)) or "cpu"
        count = r.integer(gm.get("count", 1), (*gp, "count"), 1) or 1
        gpus = r.int_list(gm.get("gpus"), (*gp, "gpus"), 0)
        groups.append(InstanceGroup(KIND_OPTIONS[kind], count, gpus))
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
    """A Python step's or ensemble's version policy, read as a model's (the one declaration)."""
    policy: VersionPolicy | None = Policy().manifest(r, value, path)
    return policy


def _head(
    r: Reader, item: Any, path: KeyPath, keys: dict[str, str], required: tuple[str, ...]
) -> tuple[dict[str, Any], Entry]:
    m = r.mapping(item, path, keys, required) or {}
    name = r.text(m.get("name"), (*path, "name")) or ""
    version = r.integer(m.get("version", 1), (*path, "version"), 1) or 1
    return m, Entry(str(path[0]), int(path[1]), name, version)


def _model_entry(r: Reader, item: Any, path: KeyPath) -> Entry:
    m, e = _head(r, item, path, MODEL_KEYS, ("name", "source"))
    e.options["source"] = r.source(m.get("source"), (*path, "source"))
    # the keywords of packager.build(), read by the one declaration of build options
    e.options["build"] = read_manifest(r, m, path)
    if "instance_groups" in m and any(k in m for k in ("kind", "instances", "gpus")):
        r.p.add(path, "give instance_groups or kind/instances/gpus, not both")
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
    reqs = r.items(m.get("requires"), (*path, "requires"), "pip requirements")
    o["requires"] = tuple(t for i, q in enumerate(reqs) if (t := r.text(q, (*path, "requires", i))))
    o["source_name"] = str(m.get("file"))
    _common(r, m, path, o)
    o["scheduling"] = _scheduling(r, m, path)
    return e


def _scheduling(r: Reader, m: dict[str, Any], path: KeyPath) -> SchedulingOptions:
    """A step's scheduling keys (response cache, sequence batcher, rate limiter), read by the
    declaration of those options."""
    values = {}
    for name in STEP_KEYS:
        opt = BY_NAME.get(name)
        if opt is None or not opt.field.startswith("scheduling."):
            continue
        value = opt.value.manifest(r, m.get(name), (*path, name))
        if value is not None:
            values[opt.field.rpartition(".")[2]] = value
    return SchedulingOptions(**values)


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
