"""``packager.validate``: check an existing model repository, model by model.

Checks: the config parses with Triton's schema and passes the spec rules; its name equals the
folder; there is at least one version folder and each holds the model file; checksums match
(the model-level SHA256SUMS covers config.pbtxt and label files, each version's covers every file
of the version); no compiled Python (``__pycache__``, ``.pyc``) is anywhere in a model folder;
the config's tensors agree with the model file (ONNX) and its external data files are there
and complete; every version's artifact loads in the target container (``releases.TARGET``:
ONNX checker, opset, IR, operators through a session of the container's ONNX Runtime); ensembles
name models that exist and
wire tensors that exist with agreeing dtypes and shapes (:mod:`packager.manifest.ensemble`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager import spec as specs
from packager.errors import PackagerError, SourceError
from packager.formats import FORMATS, PYTHON_FILE, of_config
from packager.render import spec_from_config
from packager.repository import (
    CONFIG,
    STAGING_PREFIX,
    bytecode_problems,
    list_models,
    read_config,
    triton_version,
    verify_checksums,
    verify_model_checksums,
    versions,
)


@dataclass
class ModelReport:
    name: str
    runtime: str = "?"
    versions: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked here, and why

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ValidationReport:
    repository: Path
    models: list[ModelReport]

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.models) and bool(self.models)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            "ok": self.ok,
            "models": [
                {
                    "name": m.name,
                    "runtime": m.runtime,
                    "versions": m.versions,
                    "ok": m.ok,
                    "problems": m.problems,
                    "notes": m.notes,
                }
                for m in self.models
            ],
        }


def validate(repository: str | Path, *, checksums: bool = True) -> ValidationReport:
    """Report every problem in every model of ``repository`` (never raises for model problems)."""
    root = Path(repository)
    models = list_models(root)
    reports = [_check_model(d, checksums) for d in models]
    specs = _specs(models)
    for r, d in zip(reports, models, strict=True):
        r.problems.extend(_ensemble_problems(specs.get(d.name), specs))
    stray = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and not (p / CONFIG).exists()
    )
    for s in stray:
        reports.append(
            ModelReport(s, problems=[f"folder {s}/ has no {CONFIG}; Triton will fail to load it"])
        )
    # Triton tries to load every folder of a repository as a model, hidden ones included.
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.startswith("."):
            why = (
                "was left by an interrupted build: delete it (the next build into this "
                "repository removes it too)"
                if p.name.startswith(STAGING_PREFIX)
                else "is hidden, but Triton still tries to load it as a model and fails: move it out"
            )
            reports.append(ModelReport(p.name, problems=[f"folder {p.name}/ {why}"]))
    return ValidationReport(root, reports)


def _check_model(model_dir: Path, checksums: bool) -> ModelReport:
    report = ModelReport(model_dir.name)
    report.problems.extend(_symlink_problems(model_dir))
    report.problems.extend(bytecode_problems(model_dir))
    if checksums:
        report.problems.extend(verify_model_checksums(model_dir))
    try:
        config = read_config(model_dir)
    except PackagerError as exc:
        report.problems.append(str(exc).replace("\n", " "))
        return report
    try:
        spec = spec_from_config(config)
    except PackagerError as exc:
        report.problems.append(str(exc))
        return report
    report.runtime = spec.runtime
    if spec.name != model_dir.name:
        report.problems.append(
            f"config name {spec.name!r} differs from folder {model_dir.name!r}; Triton refuses to load it"
        )
    report.problems.extend(specs.problems(spec))
    report.versions = versions(model_dir)
    for odd in sorted(model_dir.iterdir()):
        v = triton_version(odd.name)
        if odd.is_dir() and v is not None and odd.name != str(v):
            report.problems.append(
                f"folder {odd.name!r}: Triton reads it as version {v}; rename it to {v}/ "
                "(or move it out of the model folder)"
            )
    if not report.versions:
        report.problems.append("no version folder (a positive integer such as 1/)")
    for v in report.versions:
        vdir = model_dir / str(v)
        if checksums:  # every version, ensembles too: every file Triton or Python reads
            report.problems.extend(verify_checksums(vdir))
        problems, notes = version_problems(spec, vdir)
        report.problems.extend(problems)
        report.notes.extend(notes)
        report.problems.extend(_torchscript_dims_problems(spec, vdir))
    return report


def _torchscript_dims_problems(spec: specs.ModelSpec, vdir: Path) -> list[str]:
    """A TorchScript file records no shapes: run it at the config's dims and compare."""
    artifact = vdir / FORMATS["torchscript"].artifact
    if not artifact.is_file() or not spec.inputs:
        return []
    from packager.sources.torchscript_file import dims_problems

    inputs = [
        specs.TensorSpec(t.name, t.dtype, t.reshape if t.reshape is not None else t.dims)
        for t in spec.inputs
    ]
    found = dims_problems(artifact, inputs, spec.outputs, spec.max_batch_size > 0)
    return [f"{vdir.name}: {p}" for p in found]


def version_problems(spec: specs.ModelSpec, vdir: Path) -> tuple[list[str], list[str]]:
    """(why version ``vdir`` would not load under the model's config ``spec``, notes on what
    could not be checked): its artifact is there, agrees with the config's tensors, and loads in
    the target container (``releases.TARGET``: ONNX checker, opset, IR and operators through a
    session of the container's ONNX Runtime; TorchScript archive version and custom ops)."""
    from packager.sources import onnx_target, torchscript_target

    problems: list[str] = []
    notes: list[str] = []
    filename = spec.default_model_filename or _default_file(spec)
    if spec.runtime != "ensemble" and filename and not (vdir / filename).exists():
        problems.append(f"{vdir.name}/{filename} is missing")
    problems += _dims_problems(spec, vdir)
    for fmt, check in (("onnx", onnx_target.check), ("torchscript", torchscript_target.check)):
        artifact = vdir / FORMATS[fmt].artifact
        if artifact.is_file():
            found = check(artifact, f"{vdir.name}/{artifact.name}")
            problems += found.problems
            if found.unchecked:
                notes.append(f"{vdir.name}/{artifact.name}: {found.unchecked}")
    return problems, notes


def _symlink_problems(model_dir: Path) -> list[str]:
    """Links that lead out of the repository: Triton follows them, but SHA256SUMS, copies of the
    repository (docker build, kubectl cp) and its reviewers do not see what they point to."""
    root = model_dir.parent.resolve()
    links = [model_dir] if model_dir.is_symlink() else []
    for here, dirs, files in os.walk(model_dir):  # os.walk does not descend into linked folders
        links += [Path(here, n) for n in dirs + files if Path(here, n).is_symlink()]
    out = []
    for link in links:
        target = link.resolve()
        if not target.is_relative_to(root):
            out.append(
                f"{link.relative_to(model_dir.parent).as_posix()} is a symlink to {target}, "
                "outside the repository; copy the file(s) into the repository instead"
            )
    return out


def _default_file(spec: specs.ModelSpec) -> str | None:
    fmt = of_config(spec.platform or "", spec.backend or "")
    if fmt is not None:
        return fmt.artifact
    return PYTHON_FILE if spec.backend == "python" else None


def _dims_problems(spec: specs.ModelSpec, vdir: Path) -> list[str]:
    """Compare the config's tensors with the ONNX graph (the artifact of native or python models),
    and check the external data files the graph names."""
    artifact = vdir / FORMATS["onnx"].artifact
    if not artifact.is_file():
        return []
    from packager.sources.onnx_external import data_problems
    from packager.sources.onnx_file import load_proto, signature_of

    try:
        model = load_proto(artifact, external=False)
        sig = signature_of(model, artifact)
    except SourceError as exc:
        return [f"{vdir.name}/{artifact.name}: {exc}"]
    # Weights kept beside the graph: each data file present, inside the folder, long enough.
    out = data_problems(model, vdir, f"{vdir.name}/{artifact.name}")
    strip = 1 if spec.max_batch_size > 0 else 0
    for role, declared, actual in (
        ("input", spec.inputs, sig.inputs),
        ("output", spec.outputs, sig.outputs),
    ):
        have = {t.name: t for t in actual}
        for t in declared:
            m = have.get(t.name)
            if m is None:
                out.append(
                    f"{vdir.name}: config {role} {t.name!r} is not in {artifact.name} ({', '.join(have)})"
                )
                continue
            if m.dtype != t.dtype:
                out.append(
                    f"{vdir.name}: {role} {t.name!r} is {t.dtype.config} in config but {m.dtype.config} in {artifact.name}"
                )
            model_dims = m.dims[strip:]
            if strip and m.dims and m.dims[0] != -1:
                out.append(
                    f"{vdir.name}: {role} {t.name!r} has a fixed first dim {m.dims[0]} but max_batch_size > 0"
                )
            dims = t.reshape if t.reshape is not None else t.dims  # the model's own shape
            if len(model_dims) != len(dims) or any(
                a != -1 and b != -1 and a != b for a, b in zip(model_dims, dims, strict=False)
            ):
                out.append(
                    f"{vdir.name}: {role} {t.name!r} dims {list(dims)} contradict {artifact.name} "
                    f"{list(model_dims)} (batch dim {'excluded' if strip else 'included'})"
                )
    return out


def _specs(model_dirs: list[Path]) -> dict[str, specs.ModelSpec]:
    """Specs of every model whose config parses (the others are reported by _check_model)."""
    out = {}
    for d in model_dirs:
        try:
            out[d.name] = spec_from_config(read_config(d))
        except PackagerError:
            continue
    return out


def _ensemble_problems(
    spec: specs.ModelSpec | None, members: dict[str, specs.ModelSpec]
) -> list[str]:
    """Ensembles: members exist, every tensor is wired, dtypes/shapes agree, no cycle, batching."""
    if spec is None or spec.platform != "ensemble":
        return []
    from packager.manifest.ensemble import wiring_problems

    return [f"ensemble {p}" for p in wiring_problems(spec, members)]
