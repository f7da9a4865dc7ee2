"""ONNX artifacts against the target container's ONNX Runtime (``releases.TARGET``).

The container's ONNX Runtime (1.19 for Triton 24.10) reads ONNX opset 21 and IR version 10 at
most; the user's own onnxruntime is often newer, so a model that runs here may not load there.
:func:`check` finds that before anything is written:

1. the IR version and every domain's opset against the target's limits (ONNX's checker too: it
   is stricter than ONNX Runtime, so what it alone refuses is a note, not a problem);
2. every node's operator: a schema of its domain at the model's opset (standard domains), a
   domain ONNX Runtime implements, or a function the model defines (anything else is a custom
   op the container has no library for);
3. the honest test: a session created by the target's ONNX Runtime itself, installed from its
   PyPI wheel into the cache (:func:`runtime_site`), in a subprocess (the user's onnxruntime
   stays what it is). The verdict is cached per artifact digest.

:func:`convert` is the way out for a too new opset: ONNX's version converter, then the result is
checked again and compared with the source model by the caller (``--opset N``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packager.errors import SourceError
from packager.releases import TARGET

# Domains ONNX Runtime 1.19's CPU build registers kernels or schemas for ("" is ai.onnx).
ORT_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "com.ms.internal.nhwc",
        "org.pytorch.aten",
    }
)
_STANDARD = {"": "ai.onnx", "ai.onnx": "ai.onnx", "ai.onnx.ml": "ai.onnx.ml"}
_SESSION_TIMEOUT_S = 600

_SESSION_SCRIPT = """
import json, sys
import onnxruntime as ort
opts = ort.SessionOptions()
opts.log_severity_level = 4
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
try:
    ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
    error = None
except Exception as exc:
    error = str(exc).strip()
print(json.dumps({"version": ort.__version__, "error": error}))
"""


@dataclass
class TargetCheck:
    """What :func:`check` found: problems (the container would refuse the model), and what
    could not be checked here (``unchecked``, empty when the target's runtime ran it)."""

    problems: list[str] = field(default_factory=list)
    unchecked: str = ""
    runtime: str = ""  # "onnxruntime 1.19.2" when its session was created
    checker: str = ""  # what ONNX's checker refused (a problem only if the runtime refuses too)


# ---------------------------------------------------------------------------------------------
# The target's ONNX Runtime, from its wheel, in the cache


def runtime_folder() -> Path:
    """``<cache>/runtimes/onnxruntime-1.19.2-cp311``: the target's wheel for this Python."""
    from packager.releases import cache_root

    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return cache_root() / "runtimes" / f"onnxruntime-{TARGET.onnxruntime}-{tag}"


def runtime_site(
    *, install: bool = False, progress: Callable[[str], None] | None = None
) -> tuple[Path | None, str]:
    """(the ``site`` folder holding the target's ``onnxruntime`` package, or None; why not).

    With ``install``, a missing one is installed from PyPI (``pip install --no-deps --target``,
    once; ``scripts/setup.sh`` does it on a fresh machine).
    """
    folder = runtime_folder()
    site = folder / "site"
    if (folder / "ok").is_file():
        return site, ""
    if not install:
        return None, (
            f"ONNX Runtime {TARGET.onnxruntime} (the container's) is not installed in "
            f"{folder}; `triton-packager backends --build` installs it (needs PyPI once)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(folder.name + ".lock")):
        if (folder / "ok").is_file():
            return site, ""
        if progress:
            progress(
                f"installing ONNX Runtime {TARGET.onnxruntime} (the container's) into {folder} ..."
            )
        work = Path(tempfile.mkdtemp(prefix=".install-", dir=folder.parent))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                 "--disable-pip-version-check", "--target", str(work / "site"),
                 f"onnxruntime=={TARGET.onnxruntime}"],
                capture_output=True, text=True, check=False, timeout=900,
            )  # fmt: skip
            if done.returncode != 0:
                tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
                return None, (
                    f"cannot install onnxruntime=={TARGET.onnxruntime} (the container's ONNX "
                    f"Runtime) for Python {sys.version_info.major}.{sys.version_info.minor}: {tail}"
                )
            (work / "ok").write_text(TARGET.onnxruntime + "\n", encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)
            work.rename(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return site, ""


def runtime_library(site: Path) -> Path:
    """The ``libonnxruntime.so.1.19.2`` inside the installed wheel."""
    found = sorted((site / "onnxruntime" / "capi").glob("libonnxruntime.so.*"))
    if not found:
        raise SourceError(f"the ONNX Runtime wheel in {site} has no libonnxruntime.so")
    return found[-1]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# Checks


def check(path: Path, label: str | None = None, *, session: bool = True) -> TargetCheck:
    """Check the ONNX file ``path`` (its data files beside it) against the target."""
    from packager.sources.onnx_file import load_proto

    label = label or path.name
    result = TargetCheck()
    try:
        model = load_proto(path, external=False)
    except SourceError as exc:
        result.problems.append(str(exc))
        return result
    result.checker = checker_problem(path)
    result.problems = static_problems(model, label)
    if result.problems or not session:
        return _with_checker(result, label)
    site, why = runtime_site()
    if site is None:
        result.unchecked = f"no session was created with the container's ONNX Runtime: {why}"
        return _with_checker(result, label)
    version, error = _session(path, site)
    if version is None:  # the check itself could not run: say so, refuse nothing
        result.unchecked = f"no session was created with the container's ONNX Runtime: {error}"
        return _with_checker(result, label)
    result.runtime = f"onnxruntime {version}"
    if version != TARGET.onnxruntime:
        result.unchecked = f"the cached runtime is onnxruntime {version}, not {TARGET.onnxruntime}"
    elif error:
        first = error.splitlines()[0]
        result.problems.append(
            f"{label}: ONNX Runtime {version} ({TARGET.describe()}) cannot load it: {first}"
        )
    return _with_checker(result, label)


def _with_checker(result: TargetCheck, label: str) -> TargetCheck:
    """ONNX's checker is stricter than ONNX Runtime (e.g. node order, which ORT sorts itself):
    what it refuses explains a problem found otherwise, and is a note when the runtime loads it."""
    if not result.checker:
        return result
    what = f"{label}: ONNX's checker refuses it: {result.checker}"
    if result.problems:
        result.problems.append(what)
    else:
        loaded = f" (ONNX Runtime {TARGET.onnxruntime} loads it)" if result.runtime else ""
        result.unchecked = "; ".join(filter(None, [result.unchecked, what + loaded]))
    return result


def checker_problem(path: Path) -> str:
    """The first line of what ``onnx.checker`` refuses in the file (by path: > 2 GB works)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx.checker.ValidationError and friends
        return str(exc).strip().splitlines()[0]
    return ""


def static_problems(model: Any, label: str) -> list[str]:
    """IR version, opsets and operators against the target, without running anything."""
    out = []
    target = TARGET.describe()
    if model.ir_version > TARGET.onnx_ir:
        out.append(
            f"{label} has IR version {model.ir_version}; {target} reads IR {TARGET.onnx_ir} at "
            f"most. Rebuild with --opset {TARGET.onnx_opset} (ONNX's version converter, checked "
            "against this model), or re-export with an older exporter"
        )
    opsets = {d.domain or "": d.version for d in model.opset_import}
    default = opsets.get("", opsets.get("ai.onnx"))
    if default is not None and default > TARGET.onnx_opset:
        out.append(
            f"{label} uses ONNX opset {default}; {target} reads opset {TARGET.onnx_opset} at "
            f"most, so the container would refuse to load it. Rebuild with --opset "
            f"{TARGET.onnx_opset} (ONNX's version converter; the result is compared with this model)"
        )
    ml = opsets.get("ai.onnx.ml")
    uses_ml = any(n.domain == "ai.onnx.ml" for n in _nodes(model.graph))
    if ml is not None and ml > TARGET.onnx_ml_opset and uses_ml:  # an unused import is harmless
        out.append(
            f"{label} uses ai.onnx.ml opset {ml}; ONNX Runtime {TARGET.onnxruntime_minor} reads "
            f"{TARGET.onnx_ml_opset} at most (ONNX's converter does not convert that domain): "
            "re-export with an older converter"
        )
    out += _op_problems(model, opsets, label)
    return out


def _op_problems(model: Any, opsets: dict[str, int], label: str) -> list[str]:
    import onnx

    functions = {(f.domain, f.name) for f in model.functions}
    seen: set[tuple[str, str]] = set()
    out = []
    for node in _nodes(model.graph):
        key = (node.domain or "", node.op_type)
        if key in seen or key in functions:
            continue
        seen.add(key)
        domain, op = key
        where = f"op {domain + '::' if domain else ''}{op}"
        if domain not in ORT_DOMAINS:
            out.append(
                f"{label}: {where} is in the custom domain {domain!r}: ONNX Runtime "
                f"{TARGET.onnxruntime_minor} in the container has no implementation for it (a custom "
                "op library would have to be built into the image); replace the op or re-export "
                "without it"
            )
            continue
        if domain not in _STANDARD:
            continue  # com.microsoft & co: only a session with the target runtime can tell
        schema_domain = "" if _STANDARD[domain] == "ai.onnx" else _STANDARD[domain]
        version = opsets.get(domain, opsets.get(_STANDARD[domain], opsets.get(schema_domain, 0)))
        try:
            onnx.defs.get_schema(op, version, schema_domain)
        except Exception:  # onnx.defs.SchemaError: no such op at or below that opset
            known = onnx.defs.has(op, schema_domain)
            why = f"does not exist at opset {version}" if known else "is not an ONNX operator"
            out.append(
                f"{label}: {where} {why}: no ONNX Runtime (the container's "
                f"{TARGET.onnxruntime_minor} included) can run it"
            )
    return out


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node, those of subgraphs (If, Loop, Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def _session(path: Path, site: Path) -> tuple[str | None, str | None]:
    """(runtime version, error or None) of a session created by the target's runtime; cached.
    The version is None when the subprocess itself failed (then the error says why)."""
    from packager.releases import cache_root
    from packager.repository import sha256_file

    digest = hashlib.sha256(sha256_file(path).encode())
    for data in sorted(p for p in path.parent.iterdir() if p.is_file() and p != path):
        digest.update(f"{data.name}:{data.stat().st_size}".encode())  # external data beside it
    key = f"{digest.hexdigest()[:32]}-onnxruntime{TARGET.onnxruntime}.json"
    cached = cache_root() / "runtimes" / "checks" / key
    if cached.is_file():
        with contextlib.suppress(ValueError, KeyError):
            got = json.loads(cached.read_text(encoding="utf-8"))
            return str(got["version"]), got["error"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SESSION_SCRIPT, str(path)],
            capture_output=True, text=True, env=env, timeout=_SESSION_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"creating a session took over {_SESSION_TIMEOUT_S} s"
    try:
        got = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        if done.returncode < 0:  # killed by a signal while loading: the container's would be too
            return TARGET.onnxruntime, f"the runtime crashed loading it (signal {-done.returncode})"
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        return None, f"the session process failed (exit {done.returncode}): {tail}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(got), encoding="utf-8")
    tmp.replace(cached)
    return str(got["version"]), got["error"]


# ---------------------------------------------------------------------------------------------
# The way out: --opset N


def convert(model: Any, opset: int, label: str) -> Any:
    """``model`` converted to default-domain ``opset`` with ONNX's version converter.

    The IR version becomes the lowest one those opsets need (opset 21 -> IR 10), so that a model
    stamped IR 11 only because its exporter was new loads in the container.
    """
    import onnx
    from onnx import version_converter

    if opset < 7:
        raise SourceError(f"--opset {opset}: ONNX Runtime runs opset 7 and later only")
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as exc:
        raise SourceError(
            f"{label}: ONNX's version converter cannot convert it to opset {opset}: "
            f"{str(exc).strip().splitlines()[0]}. Re-export the model at opset {opset} instead"
        ) from exc
    opsets = [(d.domain, d.version) for d in converted.opset_import]
    converted.ir_version = min(
        converted.ir_version,
        max(onnx.helper.find_min_ir_version_for(
            [onnx.helper.make_opsetid(d, v) for d, v in opsets], ignore_unknown=True), 3),
    )  # fmt: skip
    return converted
