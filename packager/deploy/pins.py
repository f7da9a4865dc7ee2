"""pip's resolver, asked for the target image's Python and platform instead of ours.

The pins in :mod:`packager.releases` are written into Dockerfiles as they are; this is how they
are checked (``tests/unit/test_pins.py``) and how new ones are chosen: pip resolves the set as
it would inside NVIDIA's image (``--python-version 3.10``, a ``--platform`` for every manylinux
tag glibc 2.35 loads, ``--only-binary=:all:``), without installing anything. It needs the
package index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from packager import releases as rel
from packager.errors import PackagerError


def resolve(
    requirements: Sequence[str],
    *,
    python: str = rel.TARGET.python,
    platforms: Sequence[str] = rel.TARGET.wheel_platforms,
    timeout: float = 600,
) -> dict[str, str]:
    """Normalized name -> version of every package pip would install for ``requirements`` on
    ``python`` / ``platforms`` (dependencies included). Raises PackagerError with pip's reason
    when the set does not resolve there."""
    from packager.deploy.footprint import requirement_name

    with tempfile.TemporaryDirectory(prefix="tp-pins-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
            "--disable-pip-version-check", "--report", str(report),
            "--python-version", python, "--only-binary=:all:",
            *(arg for p in platforms for arg in ("--platform", p)),
            "--target", str(Path(tmp) / "target"), *requirements,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PackagerError(
                f"pip did not resolve {' '.join(requirements)} in {timeout:.0f} s"
            ) from exc
        if done.returncode != 0 or not report.is_file():
            reason = [line for line in done.stderr.splitlines() if "WARNING: Location" not in line]
            raise PackagerError(
                f"{' '.join(requirements)} do not resolve for Python {python} on "
                f"{platforms[0] if platforms else 'any platform'}:\n" + "\n".join(reason[-12:])
            )
        installs = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    return {
        requirement_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs
    }
