import os
from pathlib import Path

import pytest

from packager.errors import RepositoryError, SpecError
from packager.repository import (
    ModelWrite,
    list_models,
    read_config,
    read_record,
    rewrite_model,
    verify_checksums,
    versions,
    write_model,
    write_models,
)
from tests.support.tree import snapshot
from tests.unit.golden_specs import GOLDEN

SPEC = GOLDEN["cpu_no_batch"]


def test_first_write_makes_version_1_with_checksums_and_record(tmp_path: Path) -> None:
    r = write_model(
        tmp_path / "repo", SPEC, {"model.pt": b"weights"}, record={"format": "torchscript"}
    )
    assert r.version == 1
    vdir = tmp_path / "repo" / "scorer" / "1"
    assert (vdir / "model.pt").read_bytes() == b"weights"
    assert verify_checksums(vdir) == []
    assert read_record(vdir)["format"] == "torchscript"
    assert read_config(tmp_path / "repo" / "scorer").name == "scorer"
    assert [p.name for p in list_models(tmp_path / "repo")] == ["scorer"]
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]


def test_next_version_and_no_silent_overwrite(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    assert write_model(repo, SPEC, {"model.pt": b"v2"}).version == 2
    assert versions(repo / "scorer") == [1, 2]
    before = snapshot(repo)
    with pytest.raises(RepositoryError, match="--force"):
        write_model(repo, SPEC, {"model.pt": b"again"}, version=1)
    assert snapshot(repo) == before
    write_model(repo, SPEC, {"model.pt": b"forced"}, version=1, force=True)
    assert (repo / "scorer" / "1" / "model.pt").read_bytes() == b"forced"
    assert (repo / "scorer" / "2" / "model.pt").read_bytes() == b"v2"


def test_a_build_for_another_runtime_is_refused_while_old_versions_remain(
    tmp_path: Path,
) -> None:
    # One config serves every version: a python-backend config over an ONNX Runtime
    # version 1 would leave version 1 without its model.py.
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    before = snapshot(repo)
    python = SPEC.replace(platform=None, backend="python", parameters={"artifact": "model.pt"})
    with pytest.raises(
        RepositoryError, match=r"versions \[1\] built for pytorch_libtorch.*--remove"
    ):
        write_model(repo, python, {"model.pt": b"v2", "model.py": b"code"})
    assert snapshot(repo) == before
    # Replacing the only version is a clean switch.
    write_model(repo, python, {"model.pt": b"v1", "model.py": b"code"}, version=1, force=True)
    assert read_config(repo / "scorer").backend == "python"


def test_hard_linked_staging_never_changes_the_live_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"}, model_files={"labels.txt": "a\nb\n"})
    inode = os.stat(repo / "scorer" / "1" / "model.pt").st_ino
    write_model(repo, SPEC, {"model.pt": b"v2"}, model_files={"labels.txt": "c\n"})
    assert (repo / "scorer" / "1" / "model.pt").read_bytes() == b"v1"
    assert os.stat(repo / "scorer" / "1" / "model.pt").st_ino == inode
    assert (repo / "scorer" / "labels.txt").read_text() == "c\n"


def test_checksum_detects_tampering_and_extra_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    vdir = repo / "scorer" / "1"
    (vdir / "model.pt").write_bytes(b"evil")
    (vdir / "extra.bin").write_bytes(b"x")
    found = "\n".join(verify_checksums(vdir))
    assert "model.pt: checksum mismatch" in found
    assert "extra.bin: not listed" in found


def test_invalid_spec_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    before = snapshot(repo)
    bad = SPEC.replace(inputs=())
    with pytest.raises(SpecError):
        write_model(repo, bad, {"model.pt": b"v2"})
    assert snapshot(repo) == before


def test_missing_repo_is_not_created_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError):
        write_model(tmp_path / "new", SPEC, {"model.pt": Path(tmp_path / "does-not-exist")})
    assert not (tmp_path / "new").exists()


def test_write_models_is_all_or_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    before = snapshot(repo)
    other = GOLDEN["gpu_batching"]
    with pytest.raises(RepositoryError):
        write_models(
            repo,
            [
                ModelWrite(other, {"model.onnx": b"x"}),
                ModelWrite(SPEC, {"model.pt": b"y"}, version=1),
            ],
        )
    assert snapshot(repo) == before


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "repo"
    f.write_text("not a folder")
    with pytest.raises(RepositoryError, match="not a folder"):
        write_model(f, SPEC, {"model.pt": b"v1"})
    assert f.read_text() == "not a folder"


def test_symlinked_model_folder_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "scorer").symlink_to(outside)
    with pytest.raises(RepositoryError, match="symlink"):
        write_model(repo, SPEC, {"model.pt": b"v1"})
    assert list(outside.iterdir()) == []


def test_rewrite_model_refuses_a_broken_config(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    before = snapshot(repo)

    def breaks(d: Path) -> None:
        (d / "config.pbtxt").unlink()
        (d / "config.pbtxt").write_text("garbage {")

    with pytest.raises(SpecError):
        rewrite_model(repo, "scorer", breaks)
    assert snapshot(repo) == before


def test_recover_restores_a_model_moved_aside_by_a_killed_build(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.pt": b"v1"})
    stage = repo / ".tp-staging-dead"
    stage.mkdir()
    (repo / "scorer").rename(stage / "scorer.old")  # what the two-rename fallback leaves mid-swap
    write_model(repo, GOLDEN["gpu_batching"], {"model.onnx": b"x"})
    assert (repo / "scorer" / "1" / "model.pt").read_bytes() == b"v1"
    assert not stage.exists()


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_a_failed_second_swap_puts_the_first_model_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic_exchange: bool
) -> None:
    """write_models is all-or-nothing even when the OS fails between two models' swaps."""
    import packager.repository as repository

    repo = tmp_path / "repo"
    other = GOLDEN["gpu_batching"]
    write_models(
        repo, [ModelWrite(SPEC, {"model.pt": b"a1"}), ModelWrite(other, {"model.onnx": b"b1"})]
    )
    before = snapshot(repo)
    real_exchange, real_rename = repository._exchange, os.rename
    swaps = {"n": 0}

    def failing_exchange(a: Path, b: Path) -> bool:
        if Path(b).name == other.name and swaps["n"] == 0:
            swaps["n"] += 1
            raise OSError(28, "No space left on device")
        # False: as on kernels without renameat2, where the two-rename fallback runs
        return real_exchange(a, b) if atomic_exchange else False

    def failing_rename(src: object, dst: object) -> None:
        if (
            not atomic_exchange
            and Path(str(src)).name == other.name
            and Path(str(dst)).name.endswith(".old")
        ):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(repository, "_exchange", failing_exchange)
    monkeypatch.setattr(repository.os, "rename", failing_rename)
    with pytest.raises(RepositoryError, match="left as it was"):
        write_models(
            repo,
            [
                ModelWrite(SPEC, {"model.pt": b"a2"}, version=1, record={}),
                ModelWrite(other, {"model.onnx": b"b2"}, version=1),
            ],
            force=True,
        )
    monkeypatch.undo()
    assert snapshot(repo) == before
