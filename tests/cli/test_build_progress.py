"""Long module and Hugging Face builds name their slow steps (issue 32).

``packager.sources.progress.slow_step`` prints a line for a step once it has run 2 s, on a
terminal (tests/unit/test_progress.py checks the lines and the timing); here a recorder stands in
for it so that a real build shows which steps it announces, however fast this machine runs them.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from packager.cli import main

MODULE = "tp_progress_user_model"


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    @contextlib.contextmanager
    def record(what: str, *args: object, **kwargs: object) -> Iterator[None]:
        seen.append(what)
        yield

    import packager.sources.huggingface as hf
    import packager.sources.pytorch.export as export
    import packager.sources.pytorch.weights as weights

    for module in (hf, export, weights):
        monkeypatch.setattr(module, "slow_step", record)
    return seen


def test_a_module_build_announces_import_weights_export_and_verification(
    steps: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{MODULE}.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def make():
            return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    """)
    )
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                   torch.nn.Linear(8, 2)).state_dict(), tmp_path / "w.pt")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(main, ["build", f"{MODULE}:make", "--weights", "w.pt",
                                           "--input", "input:FP32:4", "--name", "m", "-o", "repo"])  # fmt: skip
    finally:
        sys.modules.pop(MODULE, None)
    assert result.exit_code == 0, result.output
    assert steps[0] == f"importing {MODULE} (and torch)"
    assert "reading the weights in w.pt" in steps
    assert any(s.startswith("exporting to ONNX") for s in steps)
    assert "verifying the export against the module" in steps


@pytest.mark.integration
def test_a_hugging_face_build_announces_loading_the_model(steps: list[str], tmp_path: Path) -> None:
    from tests.support.hf_models import tiny_classifier_folder

    folder = tiny_classifier_folder(tmp_path / "clf")
    result = CliRunner().invoke(main, ["build", str(folder), "--name", "clf", "-o",
                                       str(tmp_path / "repo")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert steps[0] == "loading the Hugging Face model in clf (transformers)"
    assert any(s.startswith("exporting to ONNX") for s in steps)
