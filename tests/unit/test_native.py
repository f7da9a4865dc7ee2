"""packager.serve.native without a server: switches, what is missing, the cache key, a failed
build remembered (a real cmake run with a compiler that cannot compile), the archive check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from packager.errors import ServerError
from packager.releases import TARGET
from packager.serve import native
from packager.sources import onnx_target

ORT = native.BACKENDS["onnx"]
# The container's ONNX Runtime that setup installed into the real cache: linked into each test's
# own cache, so that no test installs it again from PyPI.
INSTALLED_RUNTIME = onnx_target.runtime_folder()


def _cache_with_runtime(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    assert (INSTALLED_RUNTIME / "ok").is_file(), "scripts/setup.sh installs it"
    monkeypatch.setenv("TRITON_PACKAGER_CACHE", str(cache))
    (cache / "runtimes").mkdir(parents=True)
    (cache / "runtimes" / INSTALLED_RUNTIME.name).symlink_to(INSTALLED_RUNTIME)


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("No", False)]
)
def test_the_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(native.DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(native.DISABLE_ENV, value)
    assert native.enabled() is on


def test_missing_tools_are_named_with_their_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no compiler on it
    monkeypatch.delenv("CXX", raising=False)
    missing = native.missing_tools(ORT)
    assert "cmake >= 3.17 (Debian: apt-get install cmake)" in missing
    assert "a C++17 compiler (Debian: apt-get install g++)" in missing
    assert {"cmake", "g++"} <= set(native.missing_debian_packages())


def test_without_tools_status_says_what_is_missing_and_builds_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cache_with_runtime(monkeypatch, tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path))
    st = native.status(ORT, build=True)
    assert not st.ready
    assert st.reason.startswith("cannot compile it here: missing cmake")
    assert not any((tmp_path / "cache").glob("native-*")) if (tmp_path / "cache").exists() else True


def test_cache_folder_names_release_backend_and_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cache_with_runtime(monkeypatch, tmp_path)
    folder = native.cache_folder(ORT)
    assert folder.parent == tmp_path
    # The container's ONNX Runtime, not the environment's own onnxruntime.
    assert folder.name.startswith(f"native-2.51.0-onnxruntime-onnxruntime{TARGET.onnxruntime}-")
    assert native.cache_folder(native.BACKENDS["torchscript"]) != folder


def test_not_built_yet_is_a_status_not_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cache_with_runtime(monkeypatch, tmp_path)
    st = native.status(ORT)
    if native.missing_tools(ORT):
        assert "missing" in st.reason
    else:
        assert st.reason == "not built yet (`triton-packager backends --build`)"
    assert st.to_dict()["ready"] is False and st.to_dict()["backend"] == "onnxruntime"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake to run a real configure")
def test_a_failed_build_is_remembered_and_forced_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cache_with_runtime(monkeypatch, tmp_path)
    monkeypatch.setenv("CXX", "false")  # a "compiler" that fails every check
    st = native.status(ORT, build=True)
    assert not st.ready
    assert (
        "compiling Triton's onnxruntime backend failed: cmake's configure step exited" in st.reason
    )
    folder = native.cache_folder(ORT)
    failed = folder.with_name(folder.name + ".failed")
    assert failed.is_file() and not folder.exists()
    assert not list(tmp_path.glob(".build-*"))  # the work folder is gone
    # Remembered: the next start reports it without spending the build again.
    again = native.status(ORT, build=True)
    assert again.reason == failed.read_text(encoding="utf-8").strip()
    assert "triton-packager backends --build --force" in again.reason
    assert not list(tmp_path.glob("runtimes/.install-*"))  # nothing was installed again
    # --force forgets it and tries again (failing the same way here).
    [forced, _] = native.backends_status(force=True)
    assert "cmake's configure step exited" in forced.reason


def test_a_changed_archive_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "sources.tar.gz"
    bad.write_bytes(b"not the archive")
    monkeypatch.setattr(native, "archive_path", lambda: bad)
    with pytest.raises(ServerError, match="is not the archive its README names"):
        native._unpack(tmp_path)


def test_the_archive_ships_with_its_licenses() -> None:
    archive = native.archive_path()
    assert archive.name == "sources.tar.gz"
    licenses = sorted(p.name for p in (archive.parent / "licenses").iterdir())
    assert licenses == [
        "backend.LICENSE",
        "common.LICENSE",
        "core.LICENSE",
        "onnxruntime_backend.LICENSE",
        "onnxruntime_c_api.LICENSE",
        "pytorch_backend.LICENSE",
    ]


def test_without_the_containers_onnx_runtime_status_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRITON_PACKAGER_CACHE", str(tmp_path))
    st = native.status(ORT)  # without build: nothing is installed
    assert not st.ready
    assert f"ONNX Runtime {TARGET.onnxruntime} (the container's) is not installed" in st.reason
    assert "backends --build" in st.reason
    assert not (tmp_path / "runtimes").exists()
