"""The wheel ships the templates: install it into a fresh venv and render from the installed copy."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_renders_a_config_from_its_installed_templates(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("triton_packager-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    assert (target / "packager" / "templates" / "config.pbtxt.j2").is_file()
    script = (
        "import packager, packager.render as r\n"
        "from packager.spec import ModelSpec, TensorSpec\n"
        "print(packager.__file__)\n"
        "print(r.templates_dir())\n"
        "print(r.render_config(ModelSpec('m', (TensorSpec('x','FP32',(2,)),), (TensorSpec('y','FP32',(2,)),),"
        " platform='onnxruntime_onnx', max_batch_size=4)))\n"
    )
    # Dependencies come from this environment; the package itself only from the installed wheel.
    env = dict(os.environ, PYTHONPATH=f"{target}{os.pathsep}{sysconfig.get_paths()['purelib']}")
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-I",
            "-c",
            f"import sys; sys.path[:0]={env['PYTHONPATH'].split(os.pathsep)!r}\n" + script,
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    ).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == str(target / "packager" / "templates")
    assert 'name: "m"' in out and "max_batch_size: 4" in out
