"""A Python step's pip requirements: declared in the manifest, recorded in build.json, and
installed in the Docker image (the text pipeline's tokenizer step needs `tokenizers`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from packager.deploy import footprint
from packager.errors import ManifestError, PackagerError
from packager.manifest.builder import build_manifest

STEP = "def double(x):\n    return {'y': x * 2}\n"


def manifest(tmp_path: Path, requires: list[str]) -> Path:
    (tmp_path / "step.py").write_text(STEP)
    doc = {
        "python_steps": [
            {
                "name": "double",
                "file": "step.py",
                "function": "double",
                "max_batch_size": 4,
                "requires": requires,
                "inputs": [{"name": "x", "dtype": "FP32", "dims": [2]}],
                "outputs": [{"name": "y", "dtype": "FP32", "dims": [2]}],
            }
        ]
    }
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_requirements_are_recorded_and_reach_the_image(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_manifest(manifest(tmp_path, ["tokenizers==0.23.3"]), repo)
    record = json.loads((repo / "double" / "1" / "build.json").read_text())
    assert record["requires"] == ["tokenizers==0.23.3"]
    packages = footprint.pip_packages(footprint.scan(repo, gpus=0))
    assert packages == ("numpy==1.26.4", "tokenizers==0.23.3")


def test_a_requirement_a_shell_would_interpret_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_manifest(manifest(tmp_path, ["ok==1; rm -rf /"]), repo)
    with pytest.raises(PackagerError, match="rm -rf"):
        footprint.pip_packages(footprint.scan(repo, gpus=0))


def test_requires_must_be_a_list_of_strings(tmp_path: Path) -> None:
    path = manifest(tmp_path, [])
    doc = yaml.safe_load(path.read_text())
    doc["python_steps"][0]["requires"] = "tokenizers"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match="requires"):
        build_manifest(path, tmp_path / "repo")


def step_manifest(tmp_path: Path, source: str, requires: list[str]) -> Path:
    path = manifest(tmp_path, requires)
    (tmp_path / "step.py").write_text(source)
    return path


def test_an_import_without_requires_is_named_at_build_time(tmp_path: Path) -> None:
    # Issue 32: such a step built, and docker did not list the package.
    source = (
        "import json\nimport numpy as np\nimport scipy.special\n\n"
        "def double(x):\n    from sklearn import base\n    return {'y': x * 2}\n\n"
        "def other(x):\n    import torch  # another step's code: not this one's\n"
    )
    repo = tmp_path / "repo"
    with pytest.raises(PackagerError) as err:
        build_manifest(step_manifest(tmp_path, source, []), repo)
    text = str(err.value)
    assert "step.py:3: imports 'scipy', which the step's requires: does not list" in text
    assert "step.py:6: imports 'sklearn'" in text
    assert "json" not in text.replace("step.py", "") and "torch" not in text
    assert not repo.exists()

    built = build_manifest(step_manifest(tmp_path, source, ["scipy==1.13.1", "scikit-learn"]), repo)
    assert [m.name for m in built.models] == ["double"]


def test_optional_imports_are_not_required(tmp_path: Path) -> None:
    source = (
        "try:\n    import orjson as fast\nexcept ImportError:\n    fast = None\n\n"
        "def double(x):\n    return {'y': x * 2}\n"
    )
    build_manifest(step_manifest(tmp_path, source, []), tmp_path / "repo")
