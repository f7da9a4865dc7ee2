"""The model repository: layout, versions, checksums, and the ONLY code that writes into one.

Layout::

    <repo>/<model>/config.pbtxt
    <repo>/<model>/<extra model-level files, e.g. labels.txt>
    <repo>/<model>/SHA256SUMS                 sha256 of every file outside the version folders
    <repo>/<model>/<version>/<artifacts>      model.onnx | model.pt | model.py + artifact
    <repo>/<model>/<version>/SHA256SUMS       sha256 of every other file in the folder (sha256sum -c format)
    <repo>/<model>/<version>/build.json       how the version was made (deterministic: no timestamps)

Together the two checksum files cover every file Triton or Python reads: the config, label files
and every file of every version. Compiled Python (``__pycache__``, ``.pyc``) never enters a
repository: Python runs a ``.pyc`` in place of (or beside) the source it claims to come from, so
one is refused wherever it is found (:func:`bytecode_problems`).

Writes are staged: the model folder is rebuilt in a hidden folder inside the repository (same
file system), then exchanged with the live one in one ``renameat2(RENAME_EXCHANGE)`` where the
kernel has it, so a crash leaves either the old or the new model, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import RepositoryError
from packager.render import parse_config, render_config
from packager.spec import ModelSpec, name_problem

CONFIG = "config.pbtxt"
CHECKSUMS = "SHA256SUMS"
RECORD = "build.json"
STAGING_PREFIX = ".tp-staging-"
# Files we write beside artifacts: not covered by the checksum file itself.
_META = {CHECKSUMS}
# Compiled Python: refused in a repository (it executes, and it is not what was built).
BYTECODE_SUFFIXES = (".pyc", ".pyo")

FileSource = Path | bytes | str  # a path to copy, or content (str is written as UTF-8)


@dataclass(frozen=True)
class WriteResult:
    """Where a build went."""

    model_dir: Path
    version: int
    files: tuple[str, ...]  # paths relative to the repository, sorted


# --------------------------------------------------------------------------- reading


def read_config(model_dir: Path | str) -> Any:
    """Parse ``<model_dir>/config.pbtxt`` with Triton's schema (``model_config_pb2.ModelConfig``)."""
    path = Path(model_dir) / CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RepositoryError(f"{path} does not exist; is {model_dir} a model folder?") from None
    return parse_config(text)


def list_models(repo: Path | str) -> list[Path]:
    """Model folders (those holding a config.pbtxt), sorted by name; hidden folders skipped."""
    root = Path(repo)
    if not root.is_dir():
        raise RepositoryError(f"repository {root} does not exist or is not a folder")
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).is_file()
    )


def server_flags(repo: Path | str) -> list[str]:
    """tritonserver flags the repository's models need (response cache, rate limiter)."""
    from packager.scheduling import server_flags as flags_for

    return flags_for(read_config(d) for d in list_models(repo))


def triton_version(name: str) -> int | None:
    """The version Triton reads from a folder name, or None when it ignores the folder.

    Triton's rule (its model repository manager): skip ``warmup`` and ``initial_state``, skip
    names longer than one character that start with ``0``, then parse with C++ ``std::stoll``:
    leading whitespace, an optional sign, then ASCII digits only (``²`` and ``٣`` are not
    digits to it), and the number ends at the first other character, within int64.
    """
    if name in ("warmup", "initial_state") or (len(name) > 1 and name[0] == "0"):
        return None
    text = name.lstrip(" \t\n\v\f\r")
    sign = text[:1] if text[:1] in "+-" else ""
    digits = text[len(sign) :]
    end = 0
    while end < len(digits) and "0" <= digits[end] <= "9":
        end += 1
    if end == 0:
        return None
    value = int(sign + digits[:end])
    return value if -(2**63) <= value < 2**63 else None


def versions(model_dir: Path | str) -> list[int]:
    """Version folders, ascending: names that are exactly a version number (``1``, ``12``).
    Names Triton would also read as a version (``3abc`` as 3: see :func:`triton_version`)
    are not listed; ``validate`` reports them."""
    out = []
    for p in Path(model_dir).iterdir():
        v = triton_version(p.name)
        if p.is_dir() and v is not None and v > 0 and p.name == str(v):
            out.append(v)
    return sorted(out)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path, skip: Callable[[str], bool]) -> list[tuple[str, Path]]:
    """(relative path, file) under ``folder``, sorted, without the checksum file and ``skip``."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in _META and not skip(rel):
            out.append((rel, p))
    return out


def _outside_versions(model_dir: Path) -> Callable[[str], bool]:
    """True for paths inside a version folder (covered by that version's own SHA256SUMS)."""
    numbers = {str(v) for v in versions(model_dir)}
    return lambda rel: rel.split("/", 1)[0] in numbers


def checksum_lines(version_dir: Path) -> list[str]:
    """``sha256sum``-format lines for every file under ``version_dir`` except the checksum file."""
    return [f"{sha256_file(p)}  {rel}" for rel, p in _files(version_dir, lambda rel: False)]


def model_checksum_lines(model_dir: Path) -> list[str]:
    """Lines for every file of ``model_dir`` outside its version folders: config.pbtxt, label
    files and whatever else a Python model could open beside them."""
    return [
        f"{sha256_file(p)}  {rel}" for rel, p in _files(model_dir, _outside_versions(model_dir))
    ]


def _sums_text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _verify(folder: Path, actual_lines: list[str], where: str) -> list[str]:
    """Problems of ``folder``'s SHA256SUMS against ``actual_lines``; paths prefixed by ``where``."""
    path = folder / CHECKSUMS
    if not path.is_file():
        return [f"{where}: no {CHECKSUMS} file (was it built by triton-packager?)"]
    expected = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, rel = line.partition("  ")
        expected[rel] = digest
    actual = {rel: digest for digest, _, rel in (line.partition("  ") for line in actual_lines)}
    problems = []
    for rel, digest in expected.items():
        if rel not in actual:
            problems.append(f"{where}{rel}: listed in {CHECKSUMS} but missing")
        elif actual[rel] != digest:
            problems.append(f"{where}{rel}: checksum mismatch (file changed after build)")
    for rel in sorted(set(actual) - set(expected)):
        problems.append(f"{where}{rel}: not listed in {CHECKSUMS} (added after build)")
    return problems


def verify_checksums(version_dir: Path) -> list[str]:
    """Problems with ``version_dir``'s SHA256SUMS: missing file, changed file, extra file."""
    return _verify(version_dir, checksum_lines(version_dir), f"{version_dir.name}/")


def verify_model_checksums(model_dir: Path) -> list[str]:
    """Problems with the model-level SHA256SUMS (config.pbtxt, label files, other model files)."""
    return _verify(model_dir, model_checksum_lines(model_dir), "")


def bytecode_problems(model_dir: Path) -> list[str]:
    """Compiled Python anywhere in the model folder: Python imports a ``.pyc`` instead of (or
    without) the source beside it, so what runs is not what was built, reviewed or checksummed."""
    found = []
    for p in sorted(model_dir.rglob("*")):
        inside_cache = "__pycache__" in p.relative_to(model_dir).parts[:-1]
        if p.name == "__pycache__" or (
            p.is_file() and p.suffix in BYTECODE_SUFFIXES and not inside_cache
        ):
            found.append(p.relative_to(model_dir).as_posix())
    return [
        f"{rel}: compiled Python, which the server would run instead of the source that was "
        "built; delete it (a server given a writable folder needs PYTHONDONTWRITEBYTECODE=1)"
        for rel in found
    ]


def verify_repository(
    repo: Path | str, models: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Check the SHA256SUMS of ``models`` (default: all) before serving: the model-level file and
    every version's, and that no compiled Python is there.

    Returns (problems, unverified): files changed, missing, added or compiled since the build;
    and folders with no SHA256SUMS at all (made by hand or another tool: nothing to check).
    """
    problems: list[str] = []
    unverified: list[str] = []
    for model_dir in list_models(repo):
        if models is not None and model_dir.name not in models:
            continue
        problems += [f"{model_dir.name}/{p}" for p in bytecode_problems(model_dir)]
        if (model_dir / CHECKSUMS).is_file():
            problems += [f"{model_dir.name}/{p}" for p in verify_model_checksums(model_dir)]
        else:
            unverified.append(f"{model_dir.name}/")
        for vdir in iter_version_dirs(model_dir):
            if not (vdir / CHECKSUMS).is_file():
                unverified.append(f"{model_dir.name}/{vdir.name}/")
                continue
            problems += [f"{model_dir.name}/{p}" for p in verify_checksums(vdir)]
    return problems, unverified


def read_record(version_dir: Path) -> dict[str, Any]:
    path = Path(version_dir) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# --------------------------------------------------------------------------- writing


def write_model(
    repo: Path | str,
    spec: ModelSpec,
    files: Mapping[str, FileSource],
    *,
    version: int | None = None,
    force: bool = False,
    record: Mapping[str, Any] | None = None,
    model_files: Mapping[str, FileSource] | None = None,
) -> WriteResult:
    """Write one model version (and its config) into ``repo`` atomically.

    ``files`` go into the version folder; ``model_files`` (e.g. a labels file) beside config.pbtxt.
    ``version`` None means the next free number. An existing version is replaced only with ``force``.
    """
    return write_models(
        repo, [ModelWrite(spec, files, version, record or {}, model_files or {})], force=force
    )[0]


@dataclass
class ModelWrite:
    """One model version to write; several of them go in together with :func:`write_models`."""

    spec: ModelSpec
    files: Mapping[str, FileSource]
    version: int | None = None
    record: Mapping[str, Any] | None = None
    model_files: Mapping[str, FileSource] | None = None
    config: str | None = None  # the rendered config.pbtxt of ``spec`` (None: rendered here)


def write_models(
    repo: Path | str, writes: list[ModelWrite], *, force: bool = False
) -> list[WriteResult]:
    """Write several models all-or-nothing: everything is staged and checked before any swap."""
    root = Path(repo)
    names = [w.spec.name for w in writes]
    problems = [p for n in names if (p := name_problem(n)) is not None]
    if len(set(names)) != len(names):
        problems.append(
            f"the same model is written twice: {sorted(n for n in names if names.count(n) > 1)}"
        )
    if root.exists() and not root.is_dir():
        problems.append(f"output {root} exists and is not a folder")
    if problems:
        raise RepositoryError("; ".join(problems))
    # a plan's config was rendered (and checked) when planned; SpecError before any I/O
    configs = {w.spec.name: w.config or render_config(w.spec) for w in writes}

    created_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepositoryError(f"cannot create repository folder {root}: {exc.strerror}") from exc
    stage = lock = None
    try:
        lock = _lock(root)
        _recover(root)
        stage = _new_stage(root)
        results = [_stage_one(root, stage, w, configs[w.spec.name], force) for w in writes]
        _swap_all(root, stage, [w.spec.name for w in writes])
        return results
    except OSError as exc:
        raise RepositoryError(
            f"writing to {root} failed: {exc.strerror or exc}; the repository was left as it was"
        ) from exc
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if lock is not None:
            os.close(lock)
        if created_root and not any(root.iterdir()):
            root.rmdir()


def _stage_one(root: Path, stage: Path, w: ModelWrite, config: str, force: bool) -> WriteResult:
    name = w.spec.name
    live = root / name
    staged = stage / name
    if live.is_symlink():
        raise RepositoryError(f"{live} is a symlink; refusing to write through it")
    if live.exists():
        # Hard links make the copy cheap; we only ever add or replace whole files in the stage.
        shutil.copytree(live, staged, symlinks=True, copy_function=_link_or_copy)
    else:
        staged.mkdir()
    _check_model_files(staged, w)
    existing = versions(staged)
    version = w.version if w.version is not None else (max(existing) + 1 if existing else 1)
    if version < 1:
        raise RepositoryError(f"version must be a positive integer, got {version}")
    others = [v for v in existing if v != version]
    if others:
        _check_same_runtime(staged, w.spec, others)
        if signature_differences(read_spec(staged), w.spec):
            _refuse_or_replace(staged, w.spec, others, force)
    vdir = staged / str(version)
    if vdir.is_symlink():
        raise RepositoryError(f"{live / str(version)} is a symlink; refusing to write through it")
    if vdir.exists():
        if not force:
            raise RepositoryError(
                f"{name}/{version} already exists; pass --force to replace it, or omit --version "
                f"to add version {max(existing) + 1}"
            )
        shutil.rmtree(vdir)
    vdir.mkdir()
    for rel, src in w.files.items():
        _put(vdir / rel, src)
    for rel, src in (w.model_files or {}).items():
        target = staged / rel
        if target.exists():
            target.unlink()
        _put(target, src)
    record = dict(w.record or {})
    record.setdefault("model", name)
    record["version"] = version
    _put(vdir / RECORD, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    (staged / CONFIG).unlink(missing_ok=True)
    _put(staged / CONFIG, config)
    _put(vdir / CHECKSUMS, _sums_text(checksum_lines(vdir)))
    _write_model_sums(staged)
    files = sorted(p.relative_to(stage).as_posix() for p in staged.rglob("*") if p.is_file())
    return WriteResult(root / name, version, tuple(files))


def _check_model_files(staged: Path, w: ModelWrite) -> None:
    """Refuse compiled Python among the files to write or already in the model, and model-level
    files changed since their build that this write would otherwise checksum as if built."""
    shadowing = sorted(
        n
        for n in w.model_files or {}
        if n in (CONFIG, CHECKSUMS, RECORD) or triton_version(n) is not None or "/" in n
    )
    if shadowing:
        raise RepositoryError(
            f"{w.spec.name}: a model-level file (a label file) cannot be named "
            f"{', '.join(repr(n) for n in shadowing)}: it would replace the model's own "
            f"{CONFIG}, {CHECKSUMS}, {RECORD} or a version folder; rename the file"
        )
    named = [*w.files, *(w.model_files or {})]
    bad = [n for n in named if "__pycache__" in n.split("/") or n.endswith(BYTECODE_SUFFIXES)]
    if bad:
        raise RepositoryError(
            f"{w.spec.name}: {', '.join(sorted(bad))} is compiled Python; it would run in the "
            "server instead of its source. Leave __pycache__ and .pyc files out of the build"
        )
    problems = bytecode_problems(staged)
    if (staged / CHECKSUMS).is_file():
        replaced = {CONFIG, *(w.model_files or {})}
        problems += [
            p
            for p in verify_model_checksums(staged)
            if p.partition(":")[0] not in replaced  # rewritten by this build anyway
        ]
    if problems:
        raise RepositoryError(
            f"model {w.spec.name!r} changed since it was built, and this build would keep it:\n"
            + "\n".join(f"  - {w.spec.name}/{p}" for p in problems)
            + "\nrestore or delete those files first (`triton-packager validate` lists them)"
        )


def _write_model_sums(model_dir: Path) -> None:
    """(Re)write the model-level SHA256SUMS: every writer of config.pbtxt or a label file ends so."""
    (model_dir / CHECKSUMS).unlink(missing_ok=True)  # a fresh file: never write through a link
    _put(model_dir / CHECKSUMS, _sums_text(model_checksum_lines(model_dir)))


def _runtime_of(platform: str, backend: str, params: Mapping[str, str]) -> str:
    artifact = params.get("artifact")
    return f"{platform or backend}" + (f" ({artifact})" if artifact else "")


def _check_same_runtime(staged: Path, spec: ModelSpec, others: list[int]) -> None:
    """Refuse a build whose config would no longer fit the versions already in the folder.

    The config is per model, not per version: switching e.g. onnxruntime_onnx to the python
    backend would leave the older versions without the files the new config needs.
    """
    old = read_config(staged)
    before = _runtime_of(
        old.platform, old.backend, {k: v.string_value for k, v in old.parameters.items()}
    )
    after = _runtime_of(spec.platform or "", spec.backend or "", dict(spec.parameters))
    if before != after:
        raise RepositoryError(
            f"{spec.name} already holds versions {others} built for {before}; this build is "
            f"{after} and one config.pbtxt serves every version. Build it under another --name "
            f"or --output, or remove those versions first (triton-packager versions REPO "
            f"{spec.name} --remove N)"
        )


def read_spec(model_dir: Path) -> ModelSpec:
    """The model's config as a :class:`ModelSpec`."""
    from packager.render import spec_from_config

    return spec_from_config(read_config(model_dir))


def signature_differences(old: ModelSpec, new: ModelSpec) -> list[str]:
    """How ``new``'s tensors and batching differ from ``old``'s (empty when every version of one
    could be served by the other's config)."""
    out = []
    if old.max_batch_size != new.max_batch_size:
        out.append(f"max_batch_size {old.max_batch_size} -> {new.max_batch_size}")
    for role, before, after in (
        ("input", old.inputs, new.inputs),
        ("output", old.outputs, new.outputs),
    ):
        was = {t.name: t for t in before}
        now = {t.name: t for t in after}
        for name in [n for n in was if n not in now]:
            out.append(f"{role} {name!r} is gone")
        for name, t in now.items():
            o = was.get(name)
            if o is None:
                out.append(f"{role} {name!r} is new")
                continue
            if o.dtype != t.dtype:
                out.append(f"{role} {name!r} {o.dtype.config} -> {t.dtype.config}")
            if (o.dims, o.reshape) != (t.dims, t.reshape):
                out.append(f"{role} {name!r} dims {list(o.dims)} -> {list(t.dims)}")
    return out


def _refuse_or_replace(staged: Path, spec: ModelSpec, others: list[int], force: bool) -> None:
    """A new signature: refused (nothing written), or with ``force`` every other version goes.

    The config is per model: with the new tensors the older versions would stop loading (and
    ``validate`` would fail on them), so they cannot stay beside it.
    """
    differences = signature_differences(read_spec(staged), spec)
    if not force:
        raise RepositoryError(
            f"{spec.name} already holds version(s) {', '.join(map(str, others))} with another "
            f"signature ({'; '.join(differences)}), and one config.pbtxt serves every version, "
            "so they would stop loading. Nothing was written. Build it under a new --name, or "
            f"pass --force to replace every version of {spec.name} with this one"
        )
    for v in others:
        shutil.rmtree(staged / str(v))


def rewrite_model(repo: Path | str, name: str, mutate: Any) -> None:
    """Stage a copy of model ``name``, let ``mutate(staged_dir)`` change it, then swap it in."""
    root = Path(repo)
    live = root / name
    if not live.is_dir():
        raise RepositoryError(f"model {name!r} not found in {root}")
    lock = _lock(root)
    _recover(root)
    stage = _new_stage(root)
    try:
        shutil.copytree(live, stage / name, symlinks=True, copy_function=_link_or_copy)
        staged = stage / name
        # An edit re-checksums the model folder: never bless a change made since the build.
        changed = bytecode_problems(staged)
        if (staged / CHECKSUMS).is_file():
            changed += verify_model_checksums(staged)
        if changed:
            raise RepositoryError(
                f"model {name!r} changed since it was built; this edit would checksum the "
                "change as built:\n"
                + "\n".join(f"  - {name}/{p}" for p in changed)
                + "\nrestore those files or rebuild the model first"
            )
        mutate(staged)
        read_config(staged)  # never swap in a config Triton cannot parse
        _write_model_sums(staged)
        _swap_in(root, stage, name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        os.close(lock)


def _lock(root: Path) -> int:
    """Hold an exclusive lock on the repository folder itself (no lock file left behind)."""
    import fcntl

    fd = os.open(root, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _put(target: Path, src: FileSource) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, Path):
        shutil.copyfile(src, target)
    elif isinstance(src, bytes):
        target.write_bytes(src)
    else:
        target.write_text(src, encoding="utf-8")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where the kernel/libc cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _swap_in(root: Path, stage: Path, name: str) -> Callable[[], None]:
    """Put the staged model live; returns the function that puts the old one back."""
    live, staged = root / name, stage / name
    old = stage / f"{name}.old"
    if not live.exists():
        os.rename(staged, live)
        how = "new"
    elif _exchange(staged, live):
        how = "exchanged"
    else:
        # Fallback: two renames; _recover() repairs the gap if we die between them.
        os.rename(live, old)
        os.rename(staged, live)
        how = "renamed"
    _fsync_dir(root)

    def undo() -> None:
        if how == "exchanged":
            _exchange(staged, live)
            return
        os.rename(live, staged)
        if how == "renamed":
            os.rename(old, live)

    return undo


def _swap_all(root: Path, stage: Path, names: list[str]) -> None:
    """Swap every staged model in; if one swap fails, put back the ones already swapped."""
    done: list[Callable[[], None]] = []
    try:
        for name in names:
            done.append(_swap_in(root, stage, name))
    except OSError:
        for undo in reversed(done):
            with contextlib.suppress(OSError):
                undo()
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_stage(root: Path) -> Path:
    """A new staging folder: beside the repository where that is possible, else inside it.

    Triton loads every folder of a repository as a model, hidden ones included: a staging folder
    left inside by a killed build stops the server from starting ("failed to load all models"),
    and a poll-mode server sees it even while a build runs. Beside the repository, on the same
    file system (so the final rename stays atomic), a leftover harms nothing.
    """
    parent = root.resolve().parent
    try:
        if parent != root.resolve() and os.stat(parent).st_dev == os.stat(root).st_dev:
            return Path(tempfile.mkdtemp(prefix=_beside_prefix(root), dir=parent))
    except OSError:  # e.g. a parent folder we may not write to: stage inside instead
        pass
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))


def _beside_prefix(root: Path) -> str:
    # The digest of the repository's path: recovery never touches another repository's stage.
    real = root.resolve()
    return f"{STAGING_PREFIX}{real.name[:40]}-{hashlib.sha256(os.fsencode(real)).hexdigest()[:12]}-"


def _stale_stages(root: Path) -> list[Path]:
    stages = [p for p in root.iterdir() if p.name.startswith(STAGING_PREFIX)]
    prefix = _beside_prefix(root)
    with contextlib.suppress(OSError):
        stages += [p for p in root.resolve().parent.iterdir() if p.name.startswith(prefix)]
    return stages


def _recover(root: Path) -> None:
    """Undo what a killed build left: restore a model moved aside, drop stale staging folders."""
    for stage in _stale_stages(root):
        for old in stage.glob("*.old"):
            name = old.name[: -len(".old")]
            if not (root / name).exists():
                os.rename(old, root / name)
        shutil.rmtree(stage, ignore_errors=True)


def iter_version_dirs(model_dir: Path) -> Iterator[Path]:
    for v in versions(model_dir):
        yield model_dir / str(v)
