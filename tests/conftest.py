"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import models


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real ONNX and TorchScript files exported from torch once per session."""
    return models.export_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def external_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX file with its weights in a side .onnx.data file."""
    return models.export_external(tmp_path_factory.mktemp("external"))
