"""Triton's own ONNX Runtime and PyTorch backends for the embedded server, compiled once from source.

The nvidia-pytriton wheel carries only Triton's Python backend. This module compiles NVIDIA's
``onnxruntime_backend`` and ``pytorch_backend`` of the embedded server's release (r24.10, kept in
``third_party/``) into the cache, once per Triton release, runtime version and environment::

    <cache>/native-2.51.0-onnxruntime-onnxruntime1.19.2-<key>/
        libtriton_onnxruntime.so       compiled here (CPU only)
        libonnxruntime.so.1 -> the container's ONNX Runtime (1.19.2 for 24.10), from its PyPI
                               wheel in <cache>/runtimes/ (not the user's own onnxruntime)
        libtritonserver.so  -> nvidia-pytriton's libtritonserver-<hash>.so (the running server's)

:func:`packager.serve.embedded.prepare_backends` links each built folder into the server's
``--backend-directory``, and :class:`packager.serve.server.LocalServer` then serves
``onnxruntime_onnx`` / ``pytorch_libtorch`` models as they are. Where a backend cannot be built
(no cmake, no compiler, no RapidJSON headers), :func:`status` says what is missing and those models
run through the Python-backend runtime instead (:mod:`packager.serve.shadow`).
``TRITON_PACKAGER_NATIVE=0`` turns the native backends off.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packager.errors import ServerError
from packager.formats import FORMATS
from packager.releases import NGC_RELEASE, TRITON_SOURCE_BRANCH, TRITON_VERSION

DISABLE_ENV = "TRITON_PACKAGER_NATIVE"  # "0" / "off": every native model via the Python runtime
ARCHIVE = f"triton-{TRITON_SOURCE_BRANCH}/sources.tar.gz"
# The archive in third_party/ is used only if it is the one its README names.
ARCHIVE_SHA256 = "e6e22e32294910c1e3aa4cae1c7f24424798c9c8e9d171b0f171bb8750af01bd"
ORT_MIN_VERSION = (1, 19)  # the backend asks for ORT C API 19 (ONNX Runtime 1.19)
_LAYOUT = "1"  # bump when the built folder changes shape

# CMake's FetchContent wants googletest for common/src/test, which is never built here: a
# placeholder with empty targets lets the configure step pass offline without it.
_GTEST_PLACEHOLDER = """\
cmake_minimum_required(VERSION 3.17)
project(gtest_placeholder LANGUAGES CXX)
add_library(gtest INTERFACE)
add_library(gtest_main INTERFACE)
add_library(GTest::gtest ALIAS gtest)
add_library(GTest::gtest_main ALIAS gtest_main)
"""


@dataclass(frozen=True)
class NativeBackend:
    """One of Triton's own backends that can be compiled for the embedded server."""

    name: str  # folder under --backend-directory (= the config's backend)
    format: str  # packager.formats name of the models it runs
    runtime: str  # the Python distribution whose shared library it links
    source: str  # its folder inside the archive
    target: str  # its CMake target
    library: str  # the file that target builds


# How each format's backend is compiled from third_party/: (source folder, CMake target, library).
# Its name and runtime come from the one format table (packager.formats.FORMATS).
_COMPILED = {
    "onnx": ("onnxruntime_backend", "triton-onnxruntime-backend", "libtriton_onnxruntime.so"),
    "torchscript": ("pytorch_backend", "triton-pytorch-backend", "libtriton_pytorch.so"),
}
BACKENDS: dict[str, NativeBackend] = {
    fmt: NativeBackend(FORMATS[fmt].backend, fmt, FORMATS[fmt].runtime, *compiled)
    for fmt, compiled in _COMPILED.items()
}


@dataclass(frozen=True)
class BackendStatus:
    """Whether a native backend is ready: its folder, or why not."""

    backend: NativeBackend
    runtime_version: str | None
    path: Path | None = None
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend.name,
            "format": self.backend.format,
            "runtime": self.backend.runtime,
            "runtime_version": self.runtime_version,
            "source": TRITON_SOURCE_BRANCH,
            "ready": self.ready,
            "path": str(self.path) if self.path else None,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """``Triton's onnxruntime backend (r24.10, ONNX Runtime 1.19.2 as in the 24.10 container)``."""
        if self.backend.format == "onnx":
            runtime = f"ONNX Runtime {self.runtime_version} as in the {NGC_RELEASE} container"
        else:
            runtime = f"{self.backend.runtime} {self.runtime_version}"
        return f"Triton's {self.backend.name} backend ({TRITON_SOURCE_BRANCH}, {runtime})"


def enabled() -> bool:
    """False when ``TRITON_PACKAGER_NATIVE`` is 0/off/false/no."""
    return os.environ.get(DISABLE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def archive_path() -> Path:
    """The r24.10 sources: inside the installed package, else the source tree's third_party/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "third_party" / ARCHIVE, here.parent / "third_party" / ARCHIVE):
        if candidate.is_file():
            return candidate
    raise ServerError(
        f"the Triton backend sources ({ARCHIVE}) are not in this installation; reinstall "
        "triton-packager from its repository"
    )


# ---------------------------------------------------------------------------------------------
# The runtime libraries a backend links


@dataclass(frozen=True)
class _Runtime:
    version: str
    lib_dir: Path  # folder whose shared libraries are linked into the backend folder
    libs: tuple[Path, ...]  # the files linked (each under its own name)
    aliases: dict[str, Path]  # extra link names (a SONAME the wheel does not ship as a file)
    include_dirs: tuple[Path, ...]


def _dist_files(dist_name: str) -> tuple[str, Path]:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ServerError(f"{dist_name} is not installed") from None
    return dist.version, Path(str(dist.locate_file("")))


def _runtime(backend: NativeBackend, sources: Path | None = None) -> _Runtime:
    """Locate the runtime library of ``backend`` (no import).

    ONNX Runtime: the target container's (``releases.TARGET.onnxruntime``), from its wheel in the
    cache (:func:`packager.sources.onnx_target.runtime_site`), never the user's own onnxruntime:
    a model READY here then loads in the container. LibTorch: the environment's torch wheel (the
    container's libtorch 2.5 has no CPU wheel to be had).
    """
    if backend.format == "onnx":
        from packager.sources.onnx_target import runtime_library
        from packager.sources.onnx_target import runtime_site as ort_site

        site, why = ort_site()
        if site is None:
            raise ServerError(why)
        lib = runtime_library(site)
        capi = lib.parent
        version = lib.name.removeprefix("libonnxruntime.so.")
        parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
        if parts < ORT_MIN_VERSION:
            raise ServerError(
                f"onnxruntime {version} is older than the C API the backend needs (1.19)"
            )
        # The wheel ships libonnxruntime.so.1.X.Y only; the backend asks for its SONAME.
        aliases = {"libonnxruntime.so.1": lib, "libonnxruntime.so": lib}
        libs = tuple(sorted(capi.glob("libonnxruntime*.so*")))
        include: tuple[Path, ...] = (sources,) if sources else ()
        return _Runtime(version, capi, libs, aliases, include)
    version, site = _dist_files(backend.runtime)
    torch_dir = site / "torch"
    lib_dir = torch_dir / "lib"
    if not (lib_dir / "libtorch.so").is_file():
        raise ServerError(f"torch {version} has no lib/libtorch.so (a wheel without libtorch?)")
    libs = tuple(sorted(p for p in lib_dir.iterdir() if ".so" in p.name and p.is_file()))
    include = (torch_dir / "include", torch_dir / "include" / "torch" / "csrc" / "api" / "include")
    return _Runtime(version, lib_dir, libs, {}, include)


def _libtritonserver() -> Path:
    from packager.serve.embedded import pytriton_libs

    found = sorted(pytriton_libs().glob("libtritonserver*.so"))
    if not found:
        raise ServerError(
            f"no libtritonserver*.so in {pytriton_libs()}: reinstall nvidia-pytriton==0.7.0"
        )
    return found[0]


# ---------------------------------------------------------------------------------------------
# Status, cache and build


def missing_tools(backend: NativeBackend) -> list[str]:
    """What this machine lacks to compile ``backend`` (empty when it can)."""
    return [f"{what} (Debian: apt-get install {pkg})" for what, pkg in _missing(backend)]


def missing_debian_packages() -> list[str]:
    """The Debian packages that would let every backend compile (setup.sh installs them)."""
    return sorted({pkg for b in BACKENDS.values() for _, pkg in _missing(b)})


def _missing(backend: NativeBackend) -> list[tuple[str, str]]:
    missing = []
    if shutil.which("cmake") is None:
        missing.append(("cmake >= 3.17", "cmake"))
    if not _compiler():
        missing.append(("a C++17 compiler", "g++"))
    if not _rapidjson_found():
        missing.append(("the RapidJSON headers", "rapidjson-dev"))
    if backend.format == "torchscript" and not (_python_include() / "Python.h").is_file():
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        missing.append((f"the Python {version} headers", f"python{version}-dev"))
    return missing


def _compiler() -> str | None:
    env = os.environ.get("CXX")
    if env and shutil.which(env):
        return env
    return next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


def _rapidjson_found() -> bool:
    prefixes = [Path(p) for p in os.environ.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [Path(sys.prefix), Path("/usr/local"), Path("/usr")]
    for prefix in prefixes:
        for rel in ("share/cmake/RapidJSON", "lib/cmake/RapidJSON", "lib64/cmake/RapidJSON"):
            if (prefix / rel / "RapidJSONConfig.cmake").is_file():
                return True
        if any((prefix / "lib").glob("*/cmake/RapidJSON/RapidJSONConfig.cmake")):
            return True
    return False


def _python_include() -> Path:
    return Path(sysconfig.get_paths()["include"])


def cache_folder(backend: NativeBackend) -> Path:
    """Where ``backend`` is (or will be) built for this environment."""
    from packager.releases import cache_root

    runtime = _runtime(backend)
    key = hashlib.sha256(
        f"{runtime.lib_dir.resolve()}|{_libtritonserver().resolve()}|{ARCHIVE_SHA256}|"
        f"{sys.version_info[:2]}|{_LAYOUT}".encode()
    ).hexdigest()[:10]
    name = f"native-{TRITON_VERSION}-{backend.name}-{backend.runtime}{runtime.version}-{key}"
    return cache_root() / name


def _built_ok(folder: Path, backend: NativeBackend) -> bool:
    lib = folder / backend.library
    if not lib.is_file() or lib.is_symlink():
        return False
    # Every link must still resolve: the wheel it points into may have been reinstalled.
    return all(p.exists() for p in folder.iterdir())


def status(
    backend: NativeBackend, *, build: bool = False, progress: Callable[[str], None] | None = None
) -> BackendStatus:
    """Whether ``backend`` is ready; with ``build``, compile it first when it is not."""
    if build and backend.format == "onnx":  # the container's ONNX Runtime, installed once
        from packager.sources.onnx_target import runtime_site as ort_site

        ort_site(install=True, progress=progress)
    try:
        version = _runtime(backend).version
        folder = cache_folder(backend)
    except ServerError as exc:
        return BackendStatus(backend, None, reason=str(exc))
    if _built_ok(folder, backend):
        return BackendStatus(backend, version, folder)
    failed = folder.with_name(folder.name + ".failed")
    if failed.is_file():
        return BackendStatus(backend, version, reason=failed.read_text(encoding="utf-8").strip())
    missing = missing_tools(backend)
    if missing:
        return BackendStatus(
            backend, version, reason=f"cannot compile it here: missing {'; '.join(missing)}"
        )
    if not build:
        return BackendStatus(
            backend, version, reason="not built yet (`triton-packager backends --build`)"
        )
    try:
        return BackendStatus(backend, version, build_backend(backend, progress=progress))
    except ServerError as exc:
        return BackendStatus(backend, version, reason=str(exc))


def backends_status(
    *, build: bool = False, force: bool = False, progress: Callable[[str], None] | None = None
) -> list[BackendStatus]:
    """Every native backend's status; with ``build``, compile the missing ones (``force``: again)."""
    if force:
        for backend in BACKENDS.values():
            with contextlib.suppress(ServerError):
                folder = cache_folder(backend)
                folder.with_name(folder.name + ".failed").unlink(missing_ok=True)
                shutil.rmtree(folder, ignore_errors=True)
    return [status(b, build=build or force, progress=progress) for b in BACKENDS.values()]


def build_backend(backend: NativeBackend, *, progress: Callable[[str], None] | None = None) -> Path:
    """Compile ``backend`` into the cache (once; concurrent callers wait for the first)."""
    folder = cache_folder(backend)
    failed = folder.with_name(folder.name + ".failed")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(folder.name + ".lock")):
        if _built_ok(folder, backend):
            return folder
        runtime = _runtime(backend)
        if progress:
            progress(
                f"building Triton's {backend.name} backend ({TRITON_SOURCE_BRANCH}, "
                f"{backend.runtime} {runtime.version}) into {folder} (once, about 30 s) ..."
            )
        work = Path(tempfile.mkdtemp(prefix=f".build-{backend.name}-", dir=folder.parent))
        log = folder.with_name(folder.name + ".log")
        try:
            library = _compile(backend, work, log)
            staging = work / "out"
            _assemble(backend, library, staging)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        except ServerError as exc:
            # Remembered, so that every later start does not spend the same 30 s failing.
            failed.write_text(
                f"{exc} (log: {log}; retry: `triton-packager backends --build --force`)\n",
                encoding="utf-8",
            )
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        failed.unlink(missing_ok=True)
        return folder


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unpack(work: Path) -> Path:
    archive = archive_path()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != ARCHIVE_SHA256:
        raise ServerError(f"{archive} is not the archive its README names (sha256 {digest})")
    src = work / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    (src / "gtest-placeholder").mkdir()
    (src / "gtest-placeholder" / "CMakeLists.txt").write_text(_GTEST_PLACEHOLDER, encoding="utf-8")
    return src


def _compile(backend: NativeBackend, work: Path, log: Path) -> Path:
    src = _unpack(work)
    runtime = _runtime(backend, sources=src)
    # find_library(onnxruntime) wants the plain name: a folder of links with it.
    link_dir = work / "runtime-lib"
    link_dir.mkdir()
    for name, target in {**{p.name: p for p in runtime.libs}, **runtime.aliases}.items():
        (link_dir / name).symlink_to(target)
    build = work / "build"
    args = [
        "cmake",
        "-S",
        str(src / backend.source),
        "-B",
        str(build),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DTRITON_ENABLE_GPU=OFF",
        f"-DTRITON_BACKEND_REPO_TAG={TRITON_SOURCE_BRANCH}",
        f"-DTRITON_CORE_REPO_TAG={TRITON_SOURCE_BRANCH}",
        f"-DTRITON_COMMON_REPO_TAG={TRITON_SOURCE_BRANCH}",
        "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        f"-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON={src / 'common'}",
        f"-DFETCHCONTENT_SOURCE_DIR_REPO-CORE={src / 'core'}",
        f"-DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND={src / 'backend'}",
        f"-DFETCHCONTENT_SOURCE_DIR_GOOGLETEST={src / 'gtest-placeholder'}",
    ]
    compiler = _compiler()
    if compiler:
        args.append(f"-DCMAKE_CXX_COMPILER={shutil.which(compiler)}")
    includes = ";".join(str(p) for p in runtime.include_dirs)
    if backend.format == "onnx":
        args += [
            f"-DTRITON_ONNXRUNTIME_INCLUDE_PATHS={includes}",
            f"-DTRITON_ONNXRUNTIME_LIB_PATHS={link_dir}",
        ]
    else:
        args += [
            f"-DTRITON_PYTORCH_INCLUDE_PATHS={includes}",
            f"-DTRITON_PYTORCH_LIB_PATHS={link_dir}",
            "-DTRITON_PYTORCH_ENABLE_TORCHVISION=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DPython3_INCLUDE_DIR={_python_include()}",
        ]
    jobs = str(max(1, os.cpu_count() or 1))
    steps = {
        "configure": args,
        "build": ["cmake", "--build", str(build), "--target", backend.target, "-j", jobs],
    }
    with open(log, "w", encoding="utf-8") as out:
        for stage, step in steps.items():
            out.write("$ " + " ".join(step) + "\n")
            out.flush()
            code = subprocess.run(
                step, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
            if code != 0:
                out.close()
                tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-15:])
                raise ServerError(
                    f"compiling Triton's {backend.name} backend failed: cmake's {stage} step "
                    f"exited {code}:\n{tail}"
                )
    library = build / backend.library
    if not library.is_file():
        raise ServerError(
            f"the {backend.name} backend build made no {backend.library} (log: {log})"
        )
    return library


def _assemble(backend: NativeBackend, library: Path, folder: Path) -> None:
    """The backend folder: the compiled library plus links to the libraries it needs.

    The library's RUNPATH is ``$ORIGIN``, so everything it needs is linked beside it. The
    running tritonserver already has ``libtritonserver-<hash>.so`` loaded; a link of the plain
    name that the backend asks for resolves to that same file, and the dynamic loader, which
    compares files by device and inode, reuses the loaded copy instead of loading a second one.
    """
    runtime = _runtime(backend)
    folder.mkdir()
    shutil.copy2(library, folder / backend.library)
    links = {p.name: p for p in runtime.libs}
    links.update(runtime.aliases)
    links["libtritonserver.so"] = _libtritonserver()
    for name, target in links.items():
        (folder / name).symlink_to(target)
