"""`build module:factory` through click's CliRunner: PyTorch export, verification, refusals.

Every failure must leave the output repository byte-identical (a repository that already
holds a model, so that "untouched" means something).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from packager.cli import main
from packager.render import parse_config
from packager.repository import sha256_file
from packager.sources.verify import torchscript_runner
from tests.support.tree import snapshot

USER_CODE = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            h = self.lin(x)
            return {"logits": h, "probs": h.softmax(-1)}


    def make_model():
        return Net()


    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 4)

        def forward(self, input_ids, attention_mask):
            w = attention_mask.unsqueeze(-1).float()
            return (self.embed(input_ids) * w).sum(1)


    class UsesNumpy(nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.tanh(x.numpy()) * x.shape[0])


    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)


    class BakedBatch(nn.Module):
        def forward(self, x):
            return x * float(x.shape[0])
    """
)
MODULE = "tp_cli_user_models"


def run(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's folder: model code and weights, as the working directory."""
    (tmp_path / f"{MODULE}.py").write_text(USER_CODE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop(MODULE, None)


@pytest.fixture
def repo(project: Path) -> Path:
    """A repository that already holds one (cheap, TorchScript) model."""
    code, out = run("build", f"{MODULE}:Net", "--input", "x:FP32:4", "--format", "torchscript",
                    "--name", "existing", "-o", project / "repo")  # fmt: skip
    assert code == 0, out
    return project / "repo"


def test_torchscript_build_with_weights(project: Path) -> None:
    sys.path.insert(0, str(project))
    try:
        import tp_cli_user_models as user  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(project))
    net = user.make_model()
    torch.nn.init.constant_(net.lin.weight, 0.25)
    torch.save(net.state_dict(), project / "best.pt")
    code, out = run(
        "build", f"{MODULE}:make_model", "--weights", "best.pt", "--input", "x:FP32:4",
        "--format", "torchscript", "--name", "net", "-o", project / "repo", "--json",
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out)
    cfg = parse_config((project / "repo/net/config.pbtxt").read_text())
    assert cfg.platform == "pytorch_libtorch" and cfg.max_batch_size > 0
    assert [i.name for i in cfg.input] == ["x"]
    assert [o.name for o in cfg.output] == ["logits__0", "probs__1"]
    assert [list(o.dims) for o in cfg.output] == [[3], [3]]
    record = json.loads((project / "repo/net/1/build.json").read_text())
    assert record["source"]["weights_sha256"] == sha256_file(project / "best.pt")
    assert record["verification"]["passed"] is True
    assert result["record"]["verification"]["passed"] is True
    run_ts = torchscript_runner(project / "repo/net/1/model.pt", ["x"], ["logits__0", "probs__1"])
    got = run_ts({"x": np.ones((2, 4), np.float32)})["logits__0"]
    np.testing.assert_allclose(got, np.ones((2, 3)) + net.lin.bias.detach().numpy(), rtol=1e-6)


def test_onnx_build_from_npz_with_dynamic_axes_and_names(project: Path) -> None:
    np.savez(
        project / "sample.npz",
        input_ids=np.arange(10, dtype=np.int64).reshape(2, 5),
        attention_mask=np.ones((2, 5), dtype=np.int64),
    )
    code, out = run(
        "build", f"{MODULE}:Text", "--example-input", "sample.npz", "--name", "text",
        "--dynamic-axis", "input_ids:1", "--dynamic-axis", "attention_mask:1",
        "--output-name", "pooled", "--opset", "18", "-o", project / "repo",
    )  # fmt: skip
    assert code == 0, out
    cfg = parse_config((project / "repo/text/config.pbtxt").read_text())
    assert cfg.platform == "onnxruntime_onnx"
    assert [(i.name, list(i.dims)) for i in cfg.input] == [
        ("input_ids", [-1]),
        ("attention_mask", [-1]),
    ]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("pooled", [4])]
    files = sorted(p.name for p in (project / "repo/text/1").iterdir())
    assert files == ["SHA256SUMS", "build.json", "model.onnx"]  # no external data file
    assert json.loads((project / "repo/text/1/build.json").read_text())["onnx_opset"] == 18


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((f"{MODULE}:UsesNumpy", "--input", "x:FP32:4"), "cannot export the model to ONNX"),
        ((f"{MODULE}:UsesNumpy", "--input", "x:FP32:4", "--format", "torchscript"), "cannot trace"),
        (
            (f"{MODULE}:Noisy", "--input", "x:FP32:4", "--format", "torchscript"),
            "not deterministic",
        ),
        ((f"{MODULE}:BakedBatch", "--input", "x:FP32:3", "--format", "torchscript"), "max abs err"),
        ((f"{MODULE}:Net",), "needs example inputs"),
        (("no_such_pkg_xyz:make",), "no such module"),
    ],
)
def test_failures_explain_and_leave_repository_untouched(
    repo: Path, args: tuple, message: str
) -> None:
    before = snapshot(repo)
    code, out = run("build", *args, "--name", "broken", "-o", repo)
    assert code == 1
    assert out.startswith("error: ") and message in out
    assert snapshot(repo) == before


def test_verification_table_names_output_and_case(repo: Path) -> None:
    code, out = run("build", f"{MODULE}:BakedBatch", "--input", "x:FP32:3", "--format", "torchscript",
                    "--name", "baked", "-o", repo)  # fmt: skip
    assert code == 1
    table = out[out.index("case") :]
    assert "OUTPUT__0" in table and "batch 3" in table and "FAIL" in table


def test_no_verify_builds_a_non_deterministic_model(repo: Path) -> None:
    code, out = run("build", f"{MODULE}:Noisy", "--input", "x:FP32:4", "--format", "torchscript",
                    "--no-verify", "--name", "noisy", "-o", repo)  # fmt: skip
    assert code == 0, out
    record = json.loads((repo / "noisy/1/build.json").read_text())
    assert record["verification"] == {"skipped": True}


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def test_checkpoint_that_runs_code_is_refused(repo: Path, project: Path) -> None:
    marker = project / "marker.txt"
    torch.save({"lin.weight": torch.zeros(3, 4), "lin.bias": torch.zeros(3), "x": _WritesMarker(marker)},
               project / "evil.pt")  # fmt: skip
    before = snapshot(repo)
    code, out = run("build", f"{MODULE}:Net", "--weights", "evil.pt", "--input", "x:FP32:4",
                    "--name", "evil", "-o", repo)  # fmt: skip
    assert code == 1
    assert "refusing to load" in out and "arbitrary" in out
    assert not marker.exists()
    assert snapshot(repo) == before


def test_an_ordinary_mlp_build_says_what_its_fixed_axes_are(project: Path) -> None:
    # Issue 32: every MLP build printed "the module failed with another size there".
    code, out = run("build", f"{MODULE}:Net", "--input", "x:FP32:4", "--name", "mlp",
                    "-o", project / "repo")  # fmt: skip
    assert code == 0, out
    assert "x:1: fixed at 4: the size the module requires there, like a layer's input width" in out
    assert "fails" not in out and "failed" not in out
