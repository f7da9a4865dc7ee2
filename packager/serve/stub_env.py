"""The Python environment that the embedded server's Python models run in.

Triton's Python backend runs each model in a ``triton_python_backend_stub`` process that embeds
CPython. That interpreter is started *isolated* (PYTHONPATH and PYTHONHOME are ignored) and finds
its home the way an embedded Python does: by searching ``PATH`` for ``python3``. The stub then
imports numpy from C++ before any model code runs. So, left alone, the server's models get the
numpy of whatever ``python3`` comes first on ``PATH`` - another environment's numpy 2 when the
server is started by full path, from cron, under ``env -i`` or from an IDE - and Triton 2.51's
stub, built for numpy 1.x, then answers every request with *empty* output tensors.

The fix is to hand the stub an environment of our own, whatever the caller's ``PATH``:

``<backends>/env/``
    a minimal virtual environment (``pyvenv.cfg`` + ``bin/python3`` linked to this process's
    base interpreter). :func:`packager.serve.embedded.server_environment` puts its ``bin`` first on
    the server's ``PATH``, so the stub's interpreter starts *as* this environment.
``<backends>/env/lib/python3.X/site-packages/_triton_packager_paths.pth``
    runs at interpreter start, before the stub imports numpy, and appends the paths listed in
    ``TRITON_PACKAGER_SYS_PATH``: a numpy 1.x overlay when this process has numpy 2, then this
    process's own ``sys.path`` (its site-packages: onnxruntime, torch, the user's step code).

The overlay (:func:`numpy_overlay`) is numpy 1.26.4 installed with pip into the cache, once per
Python version; ``scripts/setup.sh`` prepares it, and the first ``serve`` does if setup did not.
Why not the dlpack path (``np.from_dlpack`` / ``Tensor.from_dlpack``) under numpy 2: it gives
correct answers but prints a ``PyCapsule_GetPointer`` traceback into the server log on every
request and costs more per request; docs/serve.md has the measurements.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packager.errors import ServerError

SYS_PATH_ENV = "TRITON_PACKAGER_SYS_PATH"
# numpy for the stub: the newest 1.x, which Triton 2.51's Python backend stub was built against.
NUMPY1 = "numpy==1.26.4"

# The .pth line runs in the stub's interpreter at start-up (site.py executes lines that start
# with "import"). It must stay one line; it also keeps __pycache__ out of model repositories.
PTH_NAME = "_triton_packager_paths.pth"
PTH_LINE = (
    "import os, sys; "
    f"sys.path.extend(p for p in os.environ.get({SYS_PATH_ENV!r}, '').split(os.pathsep) "
    "if p and p not in sys.path); sys.dont_write_bytecode = True\n"
)


def base_executable() -> Path:
    """The real interpreter behind this process (the base Python of a virtual environment)."""
    base = getattr(sys, "_base_executable", "") or sys.executable
    return Path(os.path.realpath(base))


def write_env(target: Path) -> None:
    """Write the stub's virtual environment into ``target`` (a new folder)."""
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    exe = base_executable()
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python3").symlink_to(exe)
    (target / "pyvenv.cfg").write_text(
        f"home = {exe.parent}\n"
        "include-system-site-packages = false\n"
        f"version = {'.'.join(map(str, sys.version_info[:3]))}\n",
        encoding="utf-8",
    )
    site = target / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / PTH_NAME).write_text(PTH_LINE, encoding="utf-8")


def env_ok(target: Path) -> bool:
    """Whether ``target`` is a complete environment for this interpreter."""
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    pth = target / "lib" / f"python{minor}" / "site-packages" / PTH_NAME
    try:
        return (
            (target / "bin" / "python3").resolve() == base_executable()
            and (target / "pyvenv.cfg").is_file()
            and pth.read_text(encoding="utf-8") == PTH_LINE
        )
    except OSError:
        return False


def numpy_major() -> int:
    import numpy

    return int(numpy.__version__.split(".")[0])


def numpy_overlay(cache_root: Path, *, install: bool = True) -> Path | None:
    """A folder holding numpy 1.x for the stub, or None when this process's numpy is 1.x.

    Installed once per Python version with pip (``--target``, wheels only) into ``cache_root``
    and renamed into place, so concurrent starts never see half an install.
    """
    if numpy_major() < 2:
        return None
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_root / f"stub-{NUMPY1.replace('==', '-')}-py{minor}"
    if (target / "numpy" / "__init__.py").is_file():
        return target
    if not install:
        return None
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--target", "STAGING", NUMPY1,
    ]  # fmt: skip
    what_to_do = (
        f"Triton 2.51's Python backend needs numpy 1.x but this environment has numpy 2; "
        f"triton-packager keeps a separate {NUMPY1} for the server's models in {target}. "
        f"Create it with: {sys.executable} -m pip install --target {target} {NUMPY1}"
    )
    print(f"preparing the server's Python environment: {NUMPY1} into {target} ...", file=sys.stderr)
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".stub-numpy-", dir=cache_root))
    try:
        command[command.index("STAGING")] = str(staging)
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ServerError(f"{what_to_do}\npip failed: {detail[0]}")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "numpy" / "__init__.py").is_file():  # not a lost race: real error
                raise
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerError(f"{what_to_do}\n({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def importable_paths() -> list[str]:
    """sys.path of this process without the standard library and the current directory."""
    import sysconfig

    stdlib = {
        os.path.realpath(p)
        for key in ("stdlib", "platstdlib")
        if (p := sysconfig.get_paths().get(key))
    }
    out: list[str] = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if real in stdlib or real.endswith("lib-dynload") or entry in out:
            continue
        out.append(os.path.abspath(entry))
    return out
