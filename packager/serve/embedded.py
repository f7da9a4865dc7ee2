"""The tritonserver binary of the nvidia-pytriton wheel: locate it, prepare its backend folder,
build its environment, and read its log.

:mod:`packager.serve.server` runs it; this module knows where things are and what the log means.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import socket
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path

from packager.errors import ServerError
from packager.releases import PYTRITON_VERSION, TRITON_VERSION, cache_root
from packager.serve import stub_env

PYTRITON_DIST = "nvidia-pytriton"
ENV_DIR = "env"  # in the backend folder: the Python environment of the stubs

# Bumped whenever the prepared backend folder changes shape, so stale caches are not reused
# (the .pth line and the base interpreter are part of the cache key too).
_BACKEND_LAYOUT = "2"


# ---------------------------------------------------------------------------------------------
# Locating and preparing the binary


def _pytriton_root() -> Path:
    try:
        dist = importlib.metadata.distribution(PYTRITON_DIST)
    except importlib.metadata.PackageNotFoundError:
        from packager.extras import install_target

        raise ServerError(
            "the embedded Triton server is not installed; install the server extra and the "
            f"binary: pip install {install_target('server')} && pip install --no-deps "
            f"nvidia-pytriton=={PYTRITON_VERSION} (it carries tritonserver {TRITON_VERSION}), or deploy "
            "with Docker (`triton-packager docker`)"
        ) from None
    return Path(str(dist.locate_file("pytriton/tritonserver")))


def cache_directory() -> Path:
    """The wheel's response cache implementations (``caches/local``), for ``--cache-directory``:
    the server's default, /opt/tritonserver/caches, exists only in NVIDIA's image."""
    return _pytriton_root() / "caches"


def tritonserver_binary() -> Path:
    """Path of the ``tritonserver`` executable from the nvidia-pytriton wheel."""
    binary = _pytriton_root() / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(
            f"{binary} is missing: the nvidia-pytriton install is incomplete; reinstall it with "
            "`pip install --force-reinstall --no-deps nvidia-pytriton==0.7.0`"
        )
    return binary


def pytriton_libs() -> Path:
    """``nvidia_pytriton.libs``: the shared libraries the server binary links (libtritonserver...)."""
    return _pytriton_root().parent.parent / "nvidia_pytriton.libs"


def prepare_backends(
    cache_dir: Path | None = None, native: Mapping[str, Path] | None = None
) -> Path:
    """Create (once) and return a ``--backend-directory`` holding the Python backend.

    ``native`` maps backend names to built folders (:mod:`packager.serve.native`), linked in under
    those names; Triton loads a backend only when a model asks for it, so a linked backend
    costs nothing to a server that serves no such model.

    ``python/`` gets links to ``libtriton_python.so``, NVIDIA's ``triton_python_backend_utils.py``
    and the stub built for the running Python version; ``env/`` is the environment the stubs'
    interpreter starts as (:mod:`packager.serve.stub_env`). The folder is keyed by the wheel location
    and this interpreter, so that two environments never share one. When this process has
    numpy 2, the numpy 1.x overlay for the stubs is prepared here too.
    """
    root = _pytriton_root()
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / minor / "triton_python_backend_stub"
    lib = root / "backends" / "python" / "libtriton_python.so"
    utils = root / "backends" / "python" / "triton_python_backend_utils.py"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").glob("3.*"))
        raise ServerError(
            f"the embedded Triton server has no Python backend stub for Python {minor} "
            f"(it has: {', '.join(have) or 'none'}); run triton-packager with one of those versions"
        )
    for needed in (lib, utils):
        if not needed.is_file():
            raise ServerError(f"{needed} is missing: reinstall nvidia-pytriton==0.7.0 --no-deps")

    cache = cache_dir or cache_root()
    stub_env.numpy_overlay(cache)
    key = hashlib.sha256(
        f"{root.resolve()}|{minor}|{_BACKEND_LAYOUT}|{stub_env.base_executable()}|"
        f"{stub_env.PTH_LINE}".encode()
    ).hexdigest()[:10]
    target = cache / f"backends-{TRITON_VERSION}-py{minor}-{key}"
    links = {"triton_python_backend_stub": stub, "libtriton_python.so": lib, utils.name: utils}
    if _backend_dir_ok(target, links):
        _link_native(target, native)
        return target

    # Build next to the target and rename: concurrent starts (pytest -n, two shells) never see
    # a half-made folder.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=target.parent))
    try:
        (staging / "python").mkdir()
        for name, source in links.items():
            (staging / "python" / name).symlink_to(source)
        stub_env.write_env(staging / ENV_DIR)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not _backend_dir_ok(target, links):  # someone else won the race: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _link_native(target, native)
    return target


def _link_native(target: Path, native: Mapping[str, Path] | None) -> None:
    """Point ``target/<backend>`` at each built backend folder (replaced atomically)."""
    for name, folder in (native or {}).items():
        link = target / name
        if link.is_symlink() and link.resolve() == folder.resolve():
            continue
        tmp = target / f".{name}-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(folder, target_is_directory=True)
        os.replace(tmp, link)


def _backend_dir_ok(target: Path, links: dict[str, Path]) -> bool:
    try:
        return all(
            (target / "python" / name).resolve() == source.resolve()
            for name, source in links.items()
        ) and stub_env.env_ok(target / ENV_DIR)
    except OSError:
        return False


def server_environment(backends: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for tritonserver and its Python stubs, given :func:`prepare_backends`."""
    env = dict(os.environ if base is None else base)
    lib_paths = [str(pytriton_libs())]
    # The stub links libpython3.X.so. Prefer the running interpreter's own (pyenv, setup-python)
    # so that model.py runs under the exact Python that installed numpy/torch.
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    shared = sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname
    if shared and (Path(libdir) / soname).exists():
        lib_paths.insert(0, libdir)
    if env.get("LD_LIBRARY_PATH"):
        lib_paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_paths)
    # The stub's interpreter finds its home by searching PATH for python3: ours comes first,
    # whatever the caller's PATH holds (another environment's numpy 2, or nothing under env -i).
    env["PATH"] = os.pathsep.join([str(backends / ENV_DIR / "bin"), env.get("PATH") or os.defpath])
    overlay = stub_env.numpy_overlay(backends.parent, install=False)
    paths = ([str(overlay)] if overlay else []) + stub_env.importable_paths()
    env[stub_env.SYS_PATH_ENV] = os.pathsep.join(paths)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Reading the server's log

# One log line: `E1127 16:32:27.053018 2907 model_lifecycle.cc:642] "message"`
_LOG_LINE = re.compile(r'^([IWE])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "(.*)"\s*$')
_LOAD_FAILED = re.compile(r"^failed to load '([^']+)' version (\d+): (.*)$", re.S)


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def load_failures(log: str) -> list[tuple[str, str, str]]:
    """(model, version, reason) for every "failed to load" line of a tritonserver log."""
    found = []
    for line in log.splitlines():
        m = _LOG_LINE.match(line)
        if m and m.group(1) == "E":
            f = _LOAD_FAILED.match(_unescape(m.group(2)))
            if f:
                found.append((f.group(1), f.group(2), f.group(3).strip()))
    return found


def error_lines(log: str) -> list[str]:
    """The server's own error messages: E-lines and ``error: ...`` lines, unescaped."""
    out = []
    for line in log.splitlines():
        m = _LOG_LINE.match(line)
        if m and m.group(1) == "E":
            msg = _unescape(m.group(2)).strip()
            if "CudaDriverHelper" not in msg:  # printed on every machine without a GPU
                out.append(msg)
        elif line.startswith("error:"):
            out.append(line.strip())
    return out


# What to do about a load failure whose cause is the embedded server itself, not the model.
_HINTS = {
    "unable to find backend library for backend 'vllm'": (
        " (Triton's vLLM backend runs only in NVIDIA's vLLM image on GPU hosts: deploy it with "
        "`triton-packager docker`/`k8s`, or build the folder with `--task text-generation` and "
        "the default backend to serve it here)"
    ),
}


def _hint(reason: str) -> str:
    return next((hint for needle, hint in _HINTS.items() if needle in reason), "")


def describe_failure(log: str) -> str:
    """The most useful explanation of a failed start found in the log."""
    failures = load_failures(log)
    if failures:
        return "\n".join(
            f"model '{name}' version {version} failed to load: {reason}{_hint(reason)}"
            for name, version, reason in failures
        )
    errors = error_lines(log)
    if errors:
        return "\n".join(errors[-5:])
    tail = [line for line in log.splitlines() if line.strip() and line[:1] not in "|+"]
    return "\n".join(tail[-10:]) or "(the server wrote nothing)"
