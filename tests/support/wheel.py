"""Build the project's wheel, install it into a folder, and run Python that sees only that copy."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from the source tree into ``tmp_path/dist``; returns its path."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return next(dist.glob("triton_packager-*.whl"))


def core_environment(tmp_path: Path) -> Path:
    """A new virtual environment with the wheel and only its core dependencies (from PyPI or
    pip's cache); returns its ``bin`` folder."""
    wheel = build_wheel(tmp_path)
    env = tmp_path / "core-env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return env / "bin"


def install_wheel(tmp_path: Path) -> Path:
    """Build the wheel from the source tree and pip-install it (no deps) into ``tmp_path/site``."""
    wheel = build_wheel(tmp_path)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    return target


def run_installed(target: Path, code: str, *args: str, cwd: Path) -> list[str]:
    """Run ``code`` with ``packager`` importable only from ``target``; returns stdout lines.

    Dependencies (and the nvidia-pytriton server) come from this environment; ``-I`` drops
    PYTHONPATH and the working directory, so the source tree is out of reach.
    """
    paths = [str(target), sysconfig.get_paths()["purelib"]]
    prefix = f"import sys; sys.path[:0] = {paths!r}\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-I", "-c", prefix + code, *args],
        check=True, capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    ).stdout.splitlines()  # fmt: skip
