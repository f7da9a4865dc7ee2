"""Every ``--json`` prints one JSON object with the keys docs/cli.md lists (issue 32).

The commands that need no server run here on a real model; bench, infer, generate, evaluate,
explain and tune are checked against a real server by their own tests.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from packager.cli import main
from tests.support.client_models import mlp_onnx

ROOT = Path(__file__).resolve().parents[2]


def documented() -> dict[str, set[str]]:
    rows = {}
    for line in (ROOT / "docs" / "cli.md").read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9 -]+?)`[^|]* \| (`.*`) \|$", line)
        if m:
            rows[m[1]] = set(re.findall(r"`([a-z_]+)`", m[2].split(" (")[0]))
    return rows


def run_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict), f"{args[0]} --json printed {type(doc).__name__}, not an object"
    return doc


def test_offline_commands_print_the_documented_object(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    mlp_onnx(tmp_path / "model.onnx")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    keys = documented()
    uri = ["--repository-uri", "s3://bucket/models"]
    cases = {
        "build": ("build", "model.onnx", "--name", "mlp", "-o", "repo"),
        "inspect": ("inspect", "model.onnx"),
        "validate": ("validate", "repo"),
        "versions": ("versions", "repo", "mlp"),
        "fit": ("fit", "repo"),
        "docker": ("docker", "repo", "-o", "d"),
        "k8s": ("k8s", "repo", "-o", "k", *uri),
        "mesh": ("mesh", "repo", "-o", "m", *uri, "--canary-uri", "s3://bucket/v2"),
        "backends": ("backends",),
    }
    for name, args in cases.items():
        doc = run_json(*args)
        assert keys[name] <= set(doc), f"{name}: documented {sorted(keys[name] - set(doc))} missing"
    dry = run_json("build", "model.onnx", "--name", "mlp", "-o", "repo", "--dry-run")
    assert keys["build"] <= set(dry) and dry["dry_run"] is True
    manifest = run_json("build", "-f", "examples/deploy.yaml", "-o", "repo2")
    assert {"dry_run", "models", "manifest", "output"} <= set(manifest)
