"""Python steps: a user's ``.py`` file with a function or class, served as a Python-backend model.

A :class:`PythonStep` names the file, the entry point and the tensors it takes and returns.
:func:`step_files` renders ``templates/python_step.py.j2`` into ``model.py`` and copies the
user's file beside it as ``step.py``; the generated model batches every dynamic batch into one
call and speaks BYTES (see the template's docstring for the calling convention).

The user's file is checked by reading its syntax tree, never by running it: building must not
execute user code, and the server's environment may have packages the build machine lacks.
:class:`StepRunner` runs a *built* step in this process through the very same ``model.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from packager.errors import PackagerError, SpecError
from packager.planners import PlannedModel
from packager.render import render_config, render_template
from packager.repository import CHECKSUMS, CONFIG, RECORD, ModelWrite, read_config, sha256_file
from packager.scheduling import DEFAULT_CANDIDATE_SEQUENCES, SchedulingOptions, SequenceBatching
from packager.spec import DynamicBatching, InstanceGroup, ModelSpec, TensorSpec, VersionPolicy

TEMPLATE = "python_step.py.j2"
MODEL_FILE = "model.py"
STEP_FILE = "step.py"
_RESERVED = {MODEL_FILE, STEP_FILE, CHECKSUMS, RECORD, CONFIG}


# Steps are pre/post-processing in Python: one CPU instance unless the manifest says otherwise.
# Triton's own default (no instance_group) is one instance per GPU on a GPU host, each a stub
# process that holds a GPU for nothing (NVIDIA's ensemble examples set KIND_CPU for the same reason).
STEP_INSTANCE_GROUPS = (InstanceGroup("KIND_CPU", 1),)


@dataclass(frozen=True)
class PythonStep:
    """A pre/post-processing step. ``labels`` maps an output to a labels file (one label per line)
    that is shipped beside config.pbtxt and named by the output's ``label_filename``; ``files``
    are extra files for the version folder (name there -> file here)."""

    name: str
    file: Path
    entry: str
    kind: Literal["function", "class"]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 0
    instance_groups: tuple[InstanceGroup, ...] = STEP_INSTANCE_GROUPS
    dynamic_batching: DynamicBatching | None = None
    version_policy: VersionPolicy | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, Path] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)
    source_name: str = ""  # how the record names the file (e.g. relative to the manifest)
    requires: tuple[str, ...] = ()  # pip requirements step.py imports (build.json; Docker images)


def step_spec(step: PythonStep) -> ModelSpec:
    """The Python-backend ModelSpec of ``step`` (label files named by ``label_filename``)."""
    outputs = tuple(
        TensorSpec(t.name, t.dtype, t.dims, label_filename=step.labels[t.name].name)
        if t.name in step.labels
        else t
        for t in step.outputs
    )
    return ModelSpec(
        name=step.name,
        backend="python",
        inputs=step.inputs,
        outputs=outputs,
        max_batch_size=step.max_batch_size,
        instance_groups=step.instance_groups,
        dynamic_batching=step.dynamic_batching,
        version_policy=step.version_policy,
        parameters=dict(step.parameters),
    )


def step_problems(step: PythonStep) -> list[str]:
    """Everything wrong with ``step`` that can be told without running the user's code."""
    out: list[str] = []
    for role, tensors in (("input", step.inputs), ("output", step.outputs)):
        for t in tensors:
            if not t.name.isidentifier() or keyword.iskeyword(t.name) or t.name == "context":
                out.append(
                    f"{role} {t.name!r}: a Python step passes tensors as keyword arguments, so "
                    "names must be Python identifiers (letters, digits, _) and not 'context'"
                )
            if t.dtype.wire == "BF16":
                out.append(f"{role} {t.name!r}: BF16 has no numpy type; use FP16 or FP32")
    outputs = {t.name for t in step.outputs}
    for name, path in step.labels.items():
        if name not in outputs:
            out.append(f"labels for {name!r}: no such output; outputs are: {', '.join(outputs)}")
        if not Path(path).is_file():
            out.append(f"labels file {path} does not exist")
    label_names = [Path(p).name for p in step.labels.values()]
    if len(set(label_names)) != len(label_names) or set(label_names) & {CONFIG}:
        out.append(f"label files need distinct names other than {CONFIG}: {label_names}")
    for name, path in step.files.items():
        if name in _RESERVED or "/" in name or name.startswith("."):
            out.append(
                f"file {name!r}: choose another name (reserved: {', '.join(sorted(_RESERVED))}; "
                "no folders, no leading dot)"
            )
        if not Path(path).is_file():
            out.append(f"file {path} does not exist")
    if step.kind not in ("function", "class"):
        out.append(f"kind must be 'function' or 'class', got {step.kind!r}")
        return out
    out.extend(_entry_problems(step))
    out.extend(import_problems(step))
    return out


# Modules a step may import without ``requires:``: the standard library, numpy (every image
# gets it, releases.PYTHON_BACKEND_BASE) and the module Triton's Python backend provides.
PROVIDED_MODULES = frozenset({"numpy", "triton_python_backend_utils"})
# pip names whose import name differs from the normalized pip name.
IMPORT_NAMES: Mapping[str, str] = {
    "scikit_learn": "sklearn",
    "pillow": "PIL",
    "opencv_python": "cv2",
    "opencv_python_headless": "cv2",
    "pyyaml": "yaml",
    "beautifulsoup4": "bs4",
    "python_dateutil": "dateutil",
    "onnxruntime_gpu": "onnxruntime",
    "protobuf": "google",
    "sentencepiece": "sentencepiece",
}


def requirement_module(requirement: str) -> str:
    """The module a pip requirement most likely installs: ``scikit-learn>=1`` -> ``sklearn``."""
    name = re.split(r"[<>=!~;\[ @]", requirement.strip(), maxsplit=1)[0]
    norm = re.sub(r"[-_.]+", "_", name).lower()
    return IMPORT_NAMES.get(norm, norm)


def imported_modules(tree: ast.Module, entry: str | None = None) -> dict[str, int]:
    """Top-level modules ``tree`` imports (absolute imports) -> first line: at module level and,
    with ``entry``, inside that function or class only (one file may hold several steps, each
    importing what it needs inside its own code). Imports guarded by ``try: ... except
    ImportError`` (optional ones) are left out."""
    found: dict[str, int] = {}
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) if h.type is not None else "" for h in node.handlers}
            optional = bool(catches & {"ImportError", "ModuleNotFoundError", "Exception", ""})
            for stmt in node.body:
                visit(stmt, guarded or optional)
            rest: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
            for other in rest:
                visit(other, guarded)
            return
        if not guarded and isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name.split(".")[0], node.lineno)
        elif not guarded and isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.setdefault(node.module.split(".")[0], node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    for top in tree.body:
        if entry is not None and isinstance(top, defs) and top.name != entry:
            continue  # another step's code
        visit(top, False)
    return found


def import_problems(step: PythonStep) -> list[str]:
    """Imports of ``step``'s file that neither the image nor its ``requires:`` provide: the
    server would fail to load the step, and ``docker``/``k8s`` images would not install them."""
    path = Path(step.file)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []  # reported by _entry_problems
    declared = {requirement_module(r) for r in step.requires}
    shipped = {Path(name).stem for name in step.files if name.endswith(".py")}
    allowed = set(sys.stdlib_module_names) | PROVIDED_MODULES | declared | shipped
    imported = imported_modules(tree, step.entry)
    missing = {m: line for m, line in imported.items() if m not in allowed}
    return [
        f"{path}:{line}: imports {module!r}, which the step's requires: does not list (the "
        "Triton image has only the standard library and numpy); add the pip package, e.g. "
        f"requires: [{module}], so that the server and the docker/k8s images get it"
        for module, line in sorted(missing.items(), key=lambda kv: kv[1])
    ]


def _entry_problems(step: PythonStep) -> list[str]:
    path = Path(step.file)
    if not path.is_file():
        return [f"Python file {path} does not exist"]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno}: Python syntax error: {exc.msg}"]
    except UnicodeDecodeError:
        return [f"{path} is not UTF-8 text"]
    defs: dict[str, ast.AST] = {}
    for top in tree.body:
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[top.name] = top
        elif isinstance(top, (ast.Assign, ast.ImportFrom, ast.Import)):
            targets = (
                [t.id for t in top.targets if isinstance(t, ast.Name)]
                if isinstance(top, ast.Assign)
                else [a.asname or a.name.split(".")[0] for a in top.names]
            )
            for t in targets:
                defs.setdefault(t, top)
    node: ast.AST | None = defs.get(step.entry)
    if node is None:
        found = sorted(n for n, d in defs.items() if isinstance(d, (ast.FunctionDef, ast.ClassDef)))
        return [
            f"{path} defines no {step.kind} {step.entry!r} at top level; "
            f"functions and classes there: {', '.join(found) or 'none'}"
        ]
    if isinstance(node, ast.AsyncFunctionDef):
        return [f"{path}:{node.lineno}: {step.entry} is async; a step must be a plain function"]
    if step.kind == "function" and isinstance(node, ast.ClassDef):
        return [f"{path}:{node.lineno}: {step.entry} is a class; use class: {step.entry}"]
    if step.kind == "class" and isinstance(node, ast.FunctionDef):
        return [f"{path}:{node.lineno}: {step.entry} is a function; use function: {step.entry}"]
    fn: ast.FunctionDef | None = None
    if isinstance(node, ast.FunctionDef):
        fn = node
    elif isinstance(node, ast.ClassDef):
        fn = next(
            (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__call__"),
            None,
        )
    if fn is None:  # assigned, imported or inherited: only the server can tell
        return []
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if isinstance(node, ast.ClassDef) and names:
        names = names[1:]  # self
    if args.vararg is not None and not names:
        return []
    if args.kwarg is not None:
        return []
    missing = [t.name for t in step.inputs if t.name not in names]
    where = (
        f"{path}:{fn.lineno}: {step.entry}{'.__call__' if isinstance(node, ast.ClassDef) else ''}"
    )
    out = []
    if missing:
        out.append(
            f"{where} takes ({', '.join(names)}) but the step's inputs are passed as keyword "
            f"arguments {', '.join(t.name for t in step.inputs)}; add parameter(s) "
            f"{', '.join(missing)} (or **inputs)"
        )
    n_defaults = len(args.defaults)
    positional = [a.arg for a in args.posonlyargs + args.args]
    if isinstance(node, ast.ClassDef):
        positional = positional[1:]
    required = positional[: len(positional) - n_defaults] + [
        a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
    ]
    # context and sequence are passed by the generated model (templates/python_step.py.j2).
    extra = [
        n for n in required if n not in {t.name for t in step.inputs} | {"context", "sequence"}
    ]
    if extra:
        out.append(f"{where} requires argument(s) {', '.join(extra)}, which are not step inputs")
    return out


def step_files(
    step: PythonStep,
) -> tuple[dict[str, str | Path], dict[str, Path], dict[str, Any]]:
    """(version-folder files, model-folder files, build record) for ``step``."""
    problems = step_problems(step)
    if problems:
        raise SpecError(problems, subject=f"Python step {step.name!r}")
    source = step.source_name or Path(step.file).name
    model_py = render_template(
        TEMPLATE, step_name=step.name, entry=step.entry, kind=step.kind, source=source
    )
    files: dict[str, str | Path] = {MODEL_FILE: model_py, STEP_FILE: Path(step.file)}
    files.update({name: Path(p) for name, p in sorted(step.files.items())})
    model_files = {Path(p).name: Path(p) for _, p in sorted(step.labels.items())}
    record = {
        "format": "python_step",
        "runtime": "python",
        "source": {
            "file": source,
            "sha256": sha256_file(Path(step.file)),
            step.kind: step.entry,
        },
    }
    if step.requires:
        record["requires"] = list(step.requires)
    return files, model_files, record


def plan_step(
    step: PythonStep, version: int | None, scheduling: SchedulingOptions | None = None
) -> PlannedModel:
    """The plan of ``step``'s version folder (SpecError lists every problem); ``scheduling``
    gives it a response cache, a rate limiter and a sequence batcher (the keys a step takes)."""
    found = step_problems(step)
    if found:
        raise SpecError(found)
    spec = step_spec(step)
    if scheduling is not None:
        limiter = scheduling.rate_limiter()
        groups = spec.instance_groups
        if limiter is not None:
            groups = tuple(dataclasses.replace(g, rate_limiter=limiter) for g in groups)
        spec = spec.replace(instance_groups=groups, response_cache=scheduling.response_cache)
        if scheduling.sequence_batching:  # a step keeps its state itself: no implicit state
            oldest = scheduling.sequence_strategy == "oldest"
            batcher = SequenceBatching(
                scheduling.sequence_strategy,  # type: ignore[arg-type]  # checked by the spec
                scheduling.sequence_idle_us,
                max_candidate_sequences=scheduling.max_candidate_sequences
                or (DEFAULT_CANDIDATE_SEQUENCES if oldest else 0),
            )
            spec = spec.replace(sequence_batching=batcher, dynamic_batching=None)
    config = render_config(spec)  # SpecError with every config problem
    files, model_files, record = step_files(step)
    return PlannedModel(
        ModelWrite(spec, files, version, record, model_files, config), "python_step"
    )


class StepRunner:
    """Run a built Python step in this process, through the same ``model.py`` the server runs.

    ``StepRunner(repo / "tokenizer" / "1")(TEXT=np.array([[b"hi"]], dtype=object))``
    """

    def __init__(self, version_dir: Path | str) -> None:
        from google.protobuf.json_format import MessageToDict

        vdir = Path(version_dir).resolve()
        model_dir = vdir.parent
        config = MessageToDict(read_config(model_dir), preserving_proto_field_name=True)
        if config.get("backend") != "python" or not (vdir / STEP_FILE).is_file():
            raise PackagerError(f"{vdir} is not a Python step built by triton-packager")
        module_name = "tp_model_" + re.sub(r"\W", "_", f"{model_dir.name}_{vdir.name}")
        spec = importlib.util.spec_from_file_location(module_name, vdir / MODEL_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        write_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = write_bytecode
        self.caller = module.StepCaller(config, str(model_dir), str(vdir))
        self.max_batch_size = int(config.get("max_batch_size", 0))

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        feeds = {name: _as_served(np.asarray(v)) for name, v in inputs.items()}
        size = None
        if self.max_batch_size > 0 and feeds:
            size = next(iter(feeds.values())).shape[0]
        result: dict[str, np.ndarray] = self.caller(feeds, size)
        return result

    def close(self) -> None:
        self.caller.close()


def _as_served(array: np.ndarray) -> np.ndarray:
    """Text arrays as the server hands them over: object arrays of ``bytes``."""
    if array.dtype.kind not in "OUS":
        return array
    flat = np.empty(array.size, dtype=object)
    flat[:] = [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in array.reshape(-1)]
    return flat.reshape(array.shape)
