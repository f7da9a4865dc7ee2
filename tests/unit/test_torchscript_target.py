"""TorchScript archives against the container's libtorch 2.5: version record, custom ops, and
what could not be checked, said."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from packager.releases import TARGET
from packager.sources import torchscript_target


def _save(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_a_plain_module_passes_and_says_what_was_not_checked(tmp_path: Path) -> None:
    found = torchscript_target.check(_save(torch.nn.Linear(3, 2), tmp_path / "m.pt"))
    assert found.problems == []
    assert "aten operator" in found.unchecked and "not checked" in found.unchecked


def test_a_newer_archive_version_is_refused(tmp_path: Path) -> None:
    src = _save(torch.nn.Linear(3, 2), tmp_path / "m.pt")
    newer = tmp_path / "newer.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(newer, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("/version") and item.filename.count("/") == 1:
                data = f"{TARGET.torchscript_max_file_version + 1}\n".encode()
            zout.writestr(item, data)
    problems = torchscript_target.check(newer, "model.pt").problems
    assert len(problems) == 1
    assert "archive version 11" in problems[0] and "libtorch 2.5" in problems[0]


def test_a_custom_operator_is_named(tmp_path: Path) -> None:
    lib = torch.library.Library("tp_acme", "DEF")
    lib.define("twice(Tensor x) -> Tensor")
    lib.impl("twice", lambda x: x * 2, "CompositeExplicitAutograd")

    class UsesCustom(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.tp_acme.twice(x) + 1

    problems = torchscript_target.check(_save(UsesCustom(), tmp_path / "c.pt"), "model.pt").problems
    assert any("op tp_acme::twice is a custom operator" in p for p in problems), problems


def _rewrite(src: Path, dst: Path, drop: str | None = None, version: int | None = None) -> Path:
    """A copy of archive ``src`` without members ending in ``drop``, its version set to ``version``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if drop and item.filename.endswith(drop):
                continue
            data = zin.read(item)
            if version is not None and item.filename.endswith("version"):
                data = f"{version}\n".encode()
            zout.writestr(item, data)
    return dst


def test_a_version_6_or_later_archive_is_read_from_its_data_folder(tmp_path: Path) -> None:
    # gelu's upgrader makes torch.jit.save write version 10, as ``<root>/.data/version`` (not
    # ``<root>/version``): every transformer with gelu (all-MiniLM-L6-v2) saves so.
    traced = torch.jit.trace(torch.nn.GELU(), torch.zeros(2))
    path = tmp_path / "all-MiniLM-L6-v2.model.pt"
    torch.jit.save(traced, str(path))
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert any(n.endswith("/.data/version") for n in names)
    assert not any(n.endswith("/version") and "/.data/" not in n for n in names)
    assert torchscript_target.check(path).problems == []
    newer = _rewrite(path, tmp_path / "newer.pt", version=TARGET.torchscript_max_file_version + 1)
    problems = torchscript_target.check(newer, "model.pt").problems
    assert len(problems) == 1 and "archive version 11" in problems[0], problems


def test_an_archive_without_a_version_record_is_refused(tmp_path: Path) -> None:
    for i, module in enumerate((torch.nn.Linear(3, 2), torch.nn.GELU())):
        src = _save(module, tmp_path / f"m{i}.pt")
        gone = _rewrite(src, tmp_path / f"gone{i}.pt", drop="version")
        problems = torchscript_target.check(gone, "model.pt").problems
        assert problems == [
            "model.pt: the archive has no version record; save it with torch.jit.save"
        ]
