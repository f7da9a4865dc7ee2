"""`triton-packager mesh` through click's CliRunner (files are checked offline; no cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from packager.cli import main
from tests.support.deploy import BUILT, python_model, validate_resource
from tests.support.tree import snapshot


def run(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "model_repository"
    python_model(repo, "pymlp", "model.onnx", "{ kind: KIND_CPU count: 1 }")
    return repo


URIS = (
    "--repository-uri", "s3://bucket/models/v1", "--canary-uri", "s3://bucket/models/v2",
    "--image", BUILT,
)  # fmt: skip


def test_istio_writes_a_valid_set_and_says_the_split(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "mesh"
    code, stdout, stderr = run(
        "mesh", repo, *URIS, "--canary-weight", "10", "--canary-header", "x-canary=always",
        "--namespace", "ml", "--credentials-secret", "s3-creds", "-o", out,
    )  # fmt: skip
    assert code == 0, stdout + stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "deployment-canary.yaml",
        "deployment-stable.yaml",
        "destinationrule.yaml",
        "hpa-canary.yaml",
        "hpa-stable.yaml",
        "peerauthentication.yaml",
        "service.yaml",
        "virtualservice.yaml",
    ]
    for path in out.iterdir():
        assert validate_resource(yaml.safe_load(path.read_text())) == [], path.name
    assert "traffic: stable 90 %, canary 10 %" in stdout
    assert f"apply: kubectl apply -f {out}" in stdout
    assert "VirtualService model-repository" in stdout
    assert "must be in the istio mesh" in stderr  # the note on who the routes apply to


def test_linkerd_json(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "linkerd"
    code, stdout, stderr = run(
        "mesh", repo, *URIS, "--mesh", "linkerd", "--canary-weight", "5",
        "--canary-header", "x-canary=on", "--gpus-per-replica", "0", "-o", out, "--json",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    info = json.loads(stdout)
    assert info["traffic"] == {
        "weights": {"stable": 95, "canary": 5},
        "canary_header": "x-canary=on",
        "mirror_percent": None,
    }
    kinds = sorted(r["kind"] for r in info["resources"])
    assert kinds.count("Service") == 3 and {"HTTPRoute", "GRPCRoute"} <= set(kinds)
    assert info["files"] == [str(out / p.name) for p in sorted(out.iterdir())]
    for path in out.iterdir():
        assert validate_resource(yaml.safe_load(path.read_text())) == [], path.name


def test_rerun_with_another_weight_rewrites_only_what_changed(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "mesh"
    args = ("mesh", repo, *URIS, "--mesh", "gateway", "-o", out)
    assert run(*args, "--canary-weight", "0")[0] == 0
    before = {p.name: yaml.safe_load(p.read_text()) for p in out.iterdir()}
    assert run(*args, "--canary-weight", "100")[0] == 0
    after = {p.name: yaml.safe_load(p.read_text()) for p in out.iterdir()}
    assert {n for n in before if before[n] != after[n]} == {"httproute.yaml", "grpcroute.yaml"}
    weights = [b["weight"] for b in after["httproute.yaml"]["spec"]["rules"][-1]["backendRefs"]]
    assert weights == [0, 100]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary-weight", "120"], "--canary-weight must be an integer percentage 0..100"),
        (["--mesh", "linkerd", "--mirror", "50"], "Linkerd cannot mirror traffic"),
        (["--mirror", "50", "--canary-weight", "5"], "mirror first with --canary-weight 0"),
        (["--canary-header", "X-Canary=1"], "write the name in lowercase"),
    ],
)
def test_bad_option_is_a_clear_error_and_writes_nothing(
    repo: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "mesh"
    before = snapshot(repo)
    code, _, stderr = run("mesh", repo, *URIS, *args, "-o", out)
    assert code == 1
    assert stderr.startswith("error: ") and message in stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert snapshot(repo) == before


def test_help_names_every_traffic_option() -> None:
    code, stdout, _ = run("mesh", "--help")
    assert code == 0 and "REPOSITORY" in stdout
    for flag in ("--mesh", "--canary-uri", "--canary-weight", "--canary-header", "--mirror"):
        assert flag in stdout
    assert "[istio|linkerd|gateway]" in stdout
