"""The wheel ships the templates: install it apart from the source tree and render from that copy."""

from pathlib import Path

import pytest

from tests.support.wheel import install_wheel, run_installed


@pytest.mark.slow
def test_wheel_renders_a_config_from_its_installed_templates(tmp_path: Path) -> None:
    target = install_wheel(tmp_path)
    assert (target / "packager" / "templates" / "config.pbtxt.j2").is_file()
    script = (
        "import packager, packager.render as r\n"
        "from packager.spec import ModelSpec, TensorSpec\n"
        "print(packager.__file__)\n"
        "print(r.templates_dir())\n"
        "print(r.render_config(ModelSpec('m', (TensorSpec('x','FP32',(2,)),), (TensorSpec('y','FP32',(2,)),),"
        " platform='onnxruntime_onnx', max_batch_size=4)))\n"
    )
    out = run_installed(target, script, cwd=tmp_path)
    assert out[0].startswith(str(target))
    assert out[1] == str(target / "packager" / "templates")
    assert 'name: "m"' in out and "max_batch_size: 4" in out


@pytest.mark.slow
def test_wheel_ships_the_backend_sources_it_compiles(tmp_path: Path) -> None:
    target = install_wheel(tmp_path)
    script = "from packager.serve import native\nprint(native.archive_path())\n"
    [path] = run_installed(target, script, cwd=tmp_path)
    assert path == str(target / "packager" / "third_party" / "triton-r24.10" / "sources.tar.gz")
    assert (
        target / "packager" / "third_party" / "triton-r24.10" / "licenses" / "core.LICENSE"
    ).is_file()
