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
