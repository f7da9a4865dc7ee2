"""Manifests with YAML aliases that expand without bound (a "billion laughs" file) or that
contain themselves are refused with a file:line error before anything walks them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from packager.errors import ManifestError
from packager.manifest.builder import build_manifest
from packager.manifest.yamlcheck import MAX_NODES, load


def laughs(levels: int, width: int = 9) -> str:
    """A list of ``width`` strings, then ``levels`` lists each holding ``width`` aliases of the
    one before: ``width ** (levels + 1)`` strings once expanded, in a few hundred bytes."""
    lines = ["models:", "  - &l0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"  - &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_manifest_is_refused_at_the_line_that_expands(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(laughs(9))  # 9**10 = 3.5e9 strings
    assert manifest.stat().st_size < 500
    with pytest.raises(ManifestError) as info:
        build_manifest(manifest, tmp_path / "out")
    # The first list whose expansion passes the budget: 9**5 = 59049 > 50000 nodes (line 6).
    assert f"deploy.yaml:6: aliases expand this node to more than {MAX_NODES}" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_the_refusal_costs_little_memory(tmp_path: Path) -> None:
    """Measured in a fresh interpreter: its peak RSS stays far below the 2.2 GB it cost."""
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(laughs(12))  # 700 bytes, 9**13 strings: a MemoryError before
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from packager.errors import ManifestError
        from packager.manifest.yamlcheck import load
        try:
            load(Path({str(manifest)!r}))
        except ManifestError as exc:
            print(exc)
        status = Path("/proc/self/status").read_text()  # this process's peak since exec
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *message, peak_mb = out.stdout.strip().splitlines()
    assert "deploy.yaml:6: aliases expand" in "\n".join(message)
    assert int(peak_mb) < 200


def test_a_self_referencing_alias_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("models: &m\n  - name: x\n    more: *m\n")
    with pytest.raises(ManifestError, match=r"deploy.yaml:1: an alias refers to the node that"):
        load(manifest)


def test_aliases_within_the_budget_still_work(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(laughs(3))  # 9**4 = 6561 strings: fine
    data, _ = load(manifest)
    assert len(data["models"][3]) == 9 and data["models"][3][0][0][0][0] == "lol"


def test_nesting_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("models: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ManifestError, match="nested too deeply"):
        load(manifest)
