"""Version folders follow Triton's rule (std::stoll after its leading-zero and warmup checks):
non-ASCII digits are not versions, and names Triton reads as a version are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.repository import triton_version, versions


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1), ("12", 12), ("0", 0), ("01", None), ("00", None), ("²", None), ("٣", None),
        ("3abc", 3), ("+4", 4), ("-2", -2), (" 7", 7), ("abc", None), ("", None),
        ("warmup", None), ("initial_state", None), (str(2**63), None), (str(2**63 - 1), 2**63 - 1),
    ],
)  # fmt: skip
def test_triton_version_follows_stoll(name: str, version: int | None) -> None:
    assert triton_version(name) == version


def test_versions_lists_exact_names_only(tmp_path: Path) -> None:
    for name in ("1", "3", "²", "٣", "3abc", "01", "0", "warmup"):
        (tmp_path / name).mkdir()
    assert versions(tmp_path) == [1, 3]


@pytest.mark.parametrize("name", ["../other", "a/b", "..", ".", "", "a\\b"])
def test_model_names_resolve_inside_the_repository_only(tmp_path: Path, name: str) -> None:
    from packager.errors import RepositoryError
    from packager.manifest.versions import list_versions, remove_versions

    outside = tmp_path / "other"
    (outside / "1").mkdir(parents=True)
    (outside / "config.pbtxt").write_text('name: "other"\n')
    (tmp_path / "repo").mkdir()
    for call in (lambda: list_versions(tmp_path / "repo", name),
                 lambda: remove_versions(tmp_path / "repo", name, [1])):  # fmt: skip
        with pytest.raises(RepositoryError, match="is not a model name"):
            call()
    assert (outside / "1").is_dir()  # nothing outside was touched


@pytest.mark.parametrize("name", ["config.pbtxt", "SHA256SUMS", "build.json", "2", "a/b"])
def test_a_label_file_cannot_shadow_the_models_own_files(tmp_path: Path, name: str) -> None:
    from packager.errors import RepositoryError
    from packager.repository import write_model
    from tests.support.tree import snapshot
    from tests.unit.golden_specs import GOLDEN

    repo = tmp_path / "repo"
    write_model(repo, GOLDEN["cpu_no_batch"], {"model.pt": b"v1"})
    before = snapshot(repo)
    with pytest.raises(
        RepositoryError, match=r"a model-level file \(a label file\) cannot be named"
    ):
        write_model(
            repo, GOLDEN["cpu_no_batch"], {"model.pt": b"v2"}, model_files={name: b"cat\ndog\n"}
        )
    assert snapshot(repo) == before  # nothing written
