"""A second version of a library for tests, in its own folder: never in the shared venv.

``pip install --target`` into the project cache (once; staged and renamed so concurrent tests
never see half an install), then used by a subprocess whose ``PYTHONPATH`` puts it first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from packager.serve.embedded import cache_root


def installed(requirements: Sequence[str], *, timeout: float = 600) -> Path:
    """A folder holding exactly ``requirements`` (``--no-deps``: the rest comes from the venv)."""
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    name = "-".join(r.replace("==", "-") for r in requirements)
    target = cache_root() / "pinned" / f"{name}-{py}"
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--target", str(staging), *requirements],
            check=True, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        (staging / ".complete").write_text("\n".join(requirements) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_with(folder: Path, code: str, *, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python whose imports find ``folder`` first; its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
