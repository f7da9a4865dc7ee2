"""Install hints work from where the user installed, and name the feature's own extra (issue 32).

From this checkout the hint is ``pip install -e '.[EXTRA]'`` (an installed wheel's hint,
``pip install 'triton-packager[EXTRA]'``, is checked on a real wheel in test_core_install.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager import extras
from packager.cli import main
from tests.support.onnx_models import affine_onnx

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_names_its_own_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    err = extras.missing_extra(ModuleNotFoundError(name="torch"))
    assert err is not None and "pip install -e '.[pytorch]'" in str(err)
    monkeypatch.chdir(tmp_path)  # elsewhere: the checkout's path, which works from anywhere
    err = extras.missing_extra(ModuleNotFoundError(name="matplotlib"))
    assert err is not None and f"pip install -e '{ROOT}[plots]'" in str(err)
    assert "triton-packager[" not in str(err)


def test_a_wheel_names_the_published_package() -> None:
    assert extras.install_target("compress", root=None) in (
        "'triton-packager[compress]'",  # an installed wheel
        "-e '.[compress]'",
        f"-e '{ROOT}[compress]'",
    )
    wheel_root = ROOT / "no-such-checkout"
    assert extras.install_target("server", root=wheel_root) == f"-e '{wheel_root}[server]'"


def test_quantize_without_onnxruntime_names_the_compress_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime is brought by three extras; --quantize needs [compress], not the first listed.
    model = affine_onnx(tmp_path / "affine.onnx")
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    result = CliRunner().invoke(main, ["build", str(model), "--name", "q", "-o",
                                       str(tmp_path / "repo"), "--quantize", "dynamic-int8"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "pip install -e '.[compress]' (extras: [compress] to quantization" in result.output
    assert not (tmp_path / "repo" / "q").exists()
