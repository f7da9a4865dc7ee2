"""Checksums cover everything Triton or Python reads, and compiled Python never gets in.

The committed ``model_repository/`` (an ONNX model, two Python steps, a label file, an ensemble)
is copied and changed the ways a hand edit or an attacker would: each change is refused by
``validate`` and by ``serve`` (before any server starts); the tool's own edits keep it valid.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.errors import RepositoryError
from packager.manifest.versions import list_versions, set_policy
from packager.repository import CHECKSUMS, verify_repository, write_model
from packager.validation import validate
from tests.support.tree import snapshot
from tests.unit.golden_specs import GOLDEN

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository", dst)
    return dst


def _edit_config(repo: Path) -> None:
    # A valid edit: Triton loads it happily, and it changes how the model is served.
    path = repo / "classifier" / "config.pbtxt"
    text = path.read_text()
    assert "count: 1" in text
    path.write_text(text.replace("count: 1", "count: 3"))


def _change_labels(repo: Path) -> None:
    path = repo / "postprocess" / "labels.txt"
    path.write_text(path.read_text().replace("sports", "science", 1))


def _plant_pyc(repo: Path) -> None:
    # Python imports __pycache__/step.cpython-310.pyc instead of step.py when it looks newer.
    cache = repo / "tokenizer" / "1" / "__pycache__"
    cache.mkdir()
    (cache / "step.cpython-310.pyc").write_bytes(b"\x6f\x0d\x0d\x0a" + b"\0" * 12)


def _plant_bare_pyc(repo: Path) -> None:
    # A sourceless .pyc beside model.py is imported as a module of its own.
    (repo / "postprocess" / "1" / "helpers.pyc").write_bytes(b"\x6f\x0d\x0d\x0a" + b"\0" * 12)


CHANGES = {
    "valid config edit": (_edit_config, "classifier/config.pbtxt: checksum mismatch"),
    "changed label file": (_change_labels, "postprocess/labels.txt: checksum mismatch"),
    "planted __pycache__": (_plant_pyc, "tokenizer/1/__pycache__"),
    "planted .pyc": (_plant_bare_pyc, "postprocess/1/helpers.pyc: compiled Python"),
}


def test_the_committed_repository_is_valid(repo: Path) -> None:
    assert validate(repo).ok, validate(repo).to_dict()
    assert verify_repository(repo) == ([], [])
    for model in ("classifier", "postprocess", "tokenizer", "text_classifier"):
        listed = (repo / model / CHECKSUMS).read_text()
        assert "  config.pbtxt\n" in listed
    assert "  labels.txt\n" in (repo / "postprocess" / CHECKSUMS).read_text()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_validate_refuses(repo: Path, change: str) -> None:
    make, expected = CHANGES[change]
    make(repo)
    report = validate(repo)
    assert not report.ok
    problems = [f"{m.name}/{p}" for m in report.models for p in m.problems]
    assert any(p.startswith(expected) or expected in p for p in problems), problems


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_serve_refuses_before_starting_a_server(repo: Path, change: str) -> None:
    make, expected = CHANGES[change]
    make(repo)
    result = CliRunner().invoke(main, ["serve", str(repo), "--http-port", "0"])
    assert result.exit_code == 1, result.output
    assert "changed since it was built" in result.output
    assert expected in result.output
    assert "starting tritonserver" not in result.output


def test_no_checksums_still_refuses_compiled_python(repo: Path) -> None:
    _plant_bare_pyc(repo)
    report = validate(repo, checksums=False)
    assert not report.ok
    assert any("compiled Python" in p for m in report.models for p in m.problems)


def test_versions_policy_rewrites_the_model_checksums(repo: Path) -> None:
    before = (repo / "classifier" / CHECKSUMS).read_text()
    set_policy(repo, "classifier", "latest:2")
    assert "latest" in (repo / "classifier" / "config.pbtxt").read_text()
    assert (repo / "classifier" / CHECKSUMS).read_text() != before
    assert validate(repo).ok, validate(repo).to_dict()


def test_an_edit_by_the_tool_never_blesses_a_hand_edit(repo: Path) -> None:
    _edit_config(repo)
    before = snapshot(repo)
    with pytest.raises(RepositoryError, match="changed since it was built") as info:
        set_policy(repo, "classifier", "latest:2")
    assert "classifier/config.pbtxt" in str(info.value)
    assert snapshot(repo) == before


def test_a_build_refuses_compiled_python_and_keeps_the_repository(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    spec = GOLDEN["cpu_no_batch"]
    write_model(out, spec, {"model.pt": b"v1"})
    before = snapshot(out)
    for files in ({"model.pt": b"v2", "__pycache__/x.cpython-310.pyc": b"\0"},
                  {"model.pt": b"v2", "helper.pyc": b"\0"}):  # fmt: skip
        with pytest.raises(RepositoryError, match="compiled Python"):
            write_model(out, spec, files)
        assert snapshot(out) == before


def test_a_new_version_keeps_no_changed_model_file(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    spec = GOLDEN["cpu_no_batch"]
    write_model(out, spec, {"model.pt": b"v1"}, model_files={"labels.txt": "a\nb\n"})
    # The label file is rewritten by this build: its hand edit is replaced, not blessed.
    (out / "scorer" / "labels.txt").write_text("x\ny\n")
    write_model(out, spec, {"model.pt": b"v2"}, model_files={"labels.txt": "a\nb\n"})
    assert verify_repository(out) == ([], [])
    # A model-level file this build would keep as it is: refused, nothing written.
    (out / "scorer" / "notes.txt").write_text("planted\n")
    before = snapshot(out)
    with pytest.raises(RepositoryError, match=r"notes\.txt: not listed"):
        write_model(out, spec, {"model.pt": b"v3"})
    assert snapshot(out) == before


@pytest.mark.parametrize("change", ["valid config edit", "changed label file"])
def test_versions_reports_a_changed_model_file(repo: Path, change: str) -> None:
    make, expected = CHANGES[change]
    model = expected.split("/")[0]
    assert list_versions(repo, model).model_problems == ()
    make(repo)
    assert any(expected.split("/", 1)[1] in p for p in list_versions(repo, model).model_problems)
    result = CliRunner().invoke(main, ["versions", str(repo), model])
    assert result.exit_code == 1
    assert "config.pbtxt and model files: checksums FAIL" in result.output
    assert expected.split("/", 1)[1] in result.output
