"""`versions` and `build -f` through click's CliRunner: list, policy, remove, and refusals that
leave the repository byte-identical."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.repository import read_config, versions
from tests.support.tree import snapshot

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "deploy.yaml"


def run(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository with a second and third version of the classifier."""
    repo = tmp_path_factory.mktemp("cli") / "repo"
    code, out = run("build", "-f", MANIFEST, "-o", repo)
    assert code == 0, out
    onnx = repo / "classifier" / "1" / "model.onnx"
    for _ in range(2):
        code, out = run("build", onnx, "--name", "classifier", "-o", repo, "--max-batch-size", 8)
        assert code == 0, out
    return repo


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "repo")
    return tmp_path / "repo"


def test_build_f_builds_the_manifest_and_prints_a_summary(tmp_path: Path) -> None:
    code, out = run("build", "-f", MANIFEST, "-o", tmp_path / "r")
    assert code == 0, out
    assert f"built 4 models from {MANIFEST} into {tmp_path / 'r'}:" in out
    assert "text_classifier  version 1  ensemble     ensemble, max_batch_size 8" in out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "classifier", "postprocess", "text_classifier", "tokenizer",
    ]  # fmt: skip


def test_build_f_json_and_dry_run(tmp_path: Path) -> None:
    code, out = run("build", "-f", MANIFEST, "-o", tmp_path / "r", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert [(m["name"], m["kind"]) for m in data["models"]][-1] == ("text_classifier", "ensemble")
    assert "tokenizer/1/model.py" in data["models"][1]["files"]
    code, out = run("build", "-f", MANIFEST, "-o", tmp_path / "dry", "--dry-run")
    assert code == 0, out
    assert "# text_classifier/config.pbtxt (ensemble, version 1)" in out
    assert not (tmp_path / "dry").exists()


def test_build_needs_exactly_one_of_model_or_manifest(tmp_path: Path) -> None:
    code, out = run("build", "-o", tmp_path / "r")
    assert code == 2 and "give MODEL to package one model, or -f deploy.yaml" in out
    code, out = run("build", "x.onnx", "-f", MANIFEST, "-o", tmp_path / "r")
    assert code == 2 and "give MODEL or -f MANIFEST, not both" in out
    code, out = run("build", "-f", MANIFEST, "-o", tmp_path / "r", "--max-batch-size", "4")
    assert code == 2 and "--max-batch-size applies to MODEL; with -f, set model options" in out
    code, out = run("build", MANIFEST.parent / "models" / "classifier.onnx", "-o", tmp_path / "r")
    assert code == 2 and "Missing option '--name'" in out
    assert not (tmp_path / "r").exists()


def test_build_f_reports_manifest_errors_and_writes_nothing(tmp_path: Path, repo: Path) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_text("models:\n  - name: m\n    source: nowhere.onnx\n    batch: 3\n")
    before = snapshot(repo)
    code, out = run("build", "-f", bad, "-o", repo, "--force")
    assert code == 1
    assert "error: " in out and "deploy.yaml:4: models[0].batch: unknown key" in out
    assert "deploy.yaml:3: models[0].source: file 'nowhere.onnx' does not exist" in out
    assert snapshot(repo) == before


def test_versions_lists_policy_served_versions_and_checksums(repo: Path) -> None:
    code, out = run("versions", repo, "classifier")
    assert code == 0, out
    assert "classifier (onnxruntime_onnx): version policy latest:1 (Triton's default" in out
    assert "  version 1: not served, checksums ok" in out
    assert "  version 3: served, checksums ok" in out
    digest = (repo / "classifier" / "3" / "SHA256SUMS").read_text().split()[0]
    assert f"      {digest[:16]}  build.json" in out or f"      {digest[:16]}  model.onnx" in out
    code, out = run("versions", repo, "classifier", "--json")
    data = json.loads(out)
    assert data["served"] == [3] and data["version_policy"] == "latest:1"
    assert set(data["versions"][0]["files"]) == {"build.json", "model.onnx"}


def test_policy_is_written_as_a_build_would_write_it(repo: Path, tmp_path: Path) -> None:
    code, out = run("versions", repo, "classifier", "--policy", "latest:2")
    assert code == 0, out
    assert "version policy of classifier set to latest:2" in out
    assert "  version 2: served" in out and "  version 1: not served" in out
    config = read_config(repo / "classifier")
    assert config.version_policy.latest.num_versions == 2
    # Same text as building with that policy from the start.
    code, _ = run(
        "build",
        repo / "classifier" / "1" / "model.onnx",
        "--name", "classifier", "-o", tmp_path / "other", "--max-batch-size", 8,
        "--version-policy", "latest:2",
    )  # fmt: skip
    assert code == 0
    assert (repo / "classifier" / "config.pbtxt").read_text() == (
        tmp_path / "other" / "classifier" / "config.pbtxt"
    ).read_text()
    code, out = run("versions", repo, "classifier", "--policy", "specific:1,3", "--json")
    assert json.loads(out)["served"] == [1, 3]


def test_remove_a_version(repo: Path) -> None:
    code, out = run("versions", repo, "classifier", "--remove", 1)
    assert code == 0, out
    assert "removed version(s) 1 of classifier" in out
    assert versions(repo / "classifier") == [2, 3]
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--remove", 7), "cannot remove version(s) 7 of 'classifier': no such version; versions are: 1, 2, 3"),
        (("--remove", 1, "--remove", 2, "--remove", 3), "would leave 'classifier' with no version"),
        (("--policy", "specific:4"), "version policy specific:4 names version(s) 4, which 'classifier' does not have"),
        (("--policy", "newest"), "version policy 'newest' is not one of: latest[:N], all, specific:V1,V2"),
        (("--policy", "specific:1", "--remove", 1), "names version(s) 1, which 'classifier' does not have (it will have: 2, 3)"),
    ],
)  # fmt: skip
def test_refusals_leave_the_repository_unchanged(
    repo: Path, args: tuple[object, ...], message: str
) -> None:
    before = snapshot(repo)
    code, out = run("versions", repo, "classifier", *args)
    assert code == 1, out
    assert message in out
    assert snapshot(repo) == before


def test_a_version_pinned_by_an_ensemble_cannot_be_dropped(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "pin.yaml").write_text(
        "ensembles:\n"
        "  - name: pinned\n"
        "    inputs: [{name: ids, dtype: INT64, dims: [8]}]\n"
        "    outputs: [logits]\n"
        "    steps:\n"
        "      - {model: classifier, version: 1, inputs: {INPUT_IDS: ids}, outputs: {LOGITS: logits}}\n"
    )
    code, out = run("build", "-f", tmp_path / "pin.yaml", "-o", repo)
    assert code == 0, out
    before = snapshot(repo)
    code, out = run("versions", repo, "classifier", "--remove", 1)
    assert code == 1
    assert "ensemble 'pinned' pins 'classifier' version 1, which would no longer be served" in out
    assert snapshot(repo) == before


def test_unknown_model_and_broken_checksums(repo: Path) -> None:
    code, out = run("versions", repo, "classifer")
    assert code == 1
    assert "model 'classifer' not found" in out and "classifier, postprocess" in out
    (repo / "tokenizer" / "1" / "step.py").write_text("# changed after the build\n")
    code, out = run("versions", repo, "tokenizer")
    assert code == 1
    assert "version 1: served, checksums FAIL" in out
    assert "1/step.py: checksum mismatch (file changed after build)" in out
