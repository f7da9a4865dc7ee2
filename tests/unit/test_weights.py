"""packager.sources.pytorch.weights and the "pytorch" source: references, safe weight loading, registry detection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from packager import sources
from packager.errors import SourceError
from packager.repository import sha256_file
from packager.sources import SourceOptions
from packager.sources.pytorch.module import PyTorchModuleSource
from packager.sources.pytorch.weights import (
    import_reference,
    instantiate,
    is_reference,
    load_weights,
    read_state_dict,
)
from packager.sources.verify import torchscript_runner

MODULE_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.lin = nn.Linear(3, width)

        def forward(self, x):
            return self.lin(x)

    def make_model():
        return Net(width=2)

    def needs_args(width):
        return Net(width)

    def not_a_model():
        return 42

    instance = Net()
    """
)


@pytest.fixture
def user_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the user's model code, as the working directory (like the CLI is run)."""
    pkg = tmp_path / "userpkg_weights_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODULE_SOURCE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import sys

    for name in [m for m in sys.modules if m.startswith("userpkg_weights_test")]:
        del sys.modules[name]


def test_reference_forms(user_project: Path) -> None:
    assert is_reference("userpkg_weights_test.models:make_model")
    assert not is_reference("model.onnx") and not is_reference("a/b:c") and not is_reference(42)
    net = instantiate(import_reference("userpkg_weights_test.models:make_model"), "r")
    assert net.lin.out_features == 2
    assert (
        instantiate(import_reference("userpkg_weights_test.models:Net"), "r").lin.out_features == 4
    )
    assert isinstance(
        instantiate(import_reference("userpkg_weights_test.models:instance"), "r"), torch.nn.Module
    )


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("no_such_module_xyz:make", "no such module in the working directory"),
        ("userpkg_weights_test.models:missing", "has no attribute 'missing'.*make_model"),
        ("userpkg_weights_test.models:needs_args", "needs argument.*width.*factory"),
        ("userpkg_weights_test.models:not_a_model", "returned a int, not a torch.nn.Module"),
    ],
)
def test_reference_errors(user_project: Path, ref: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        instantiate(import_reference(ref), ref)


def _net(width: int = 2) -> torch.nn.Module:
    torch.manual_seed(width)
    return torch.nn.Sequential(torch.nn.Linear(3, width))


def test_state_dict_and_safetensors_load(tmp_path: Path) -> None:
    trained = _net()
    pt, st = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(trained.state_dict(), pt)
    save_file(trained.state_dict(), str(st))
    for path in (pt, st):
        fresh = torch.nn.Sequential(torch.nn.Linear(3, 2))
        load_weights(fresh, path)
        assert torch.equal(fresh[0].weight, trained[0].weight)


def test_training_checkpoint_and_dataparallel_prefix(tmp_path: Path) -> None:
    trained = _net()
    ckpt = tmp_path / "ckpt.pt"
    prefixed = {f"module.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": prefixed, "best_acc": 0.9}, ckpt)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2))
    load_weights(fresh, ckpt)
    assert torch.equal(fresh[0].bias, trained[0].bias)


def test_mismatched_weights_are_named(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(_net(5).state_dict(), path)
    with pytest.raises(SourceError, match=r"size mismatch.*0.weight"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(3, 2)), path)
    torch.save({"other.weight": torch.zeros(1)}, path)
    with pytest.raises(
        SourceError,
        match=r"missing 2 key\(s\): 0.bias, 0.weight; unexpected 1 key\(s\): other.weight",
    ):
        load_weights(torch.nn.Sequential(torch.nn.Linear(3, 2)), path)


class _RunsCodeOnLoad:
    """Unpickling this calls Path.write_text(marker): what a malicious checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran while loading"))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"lin.weight": torch.zeros(2, 3), "payload": _RunsCodeOnLoad(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(SourceError, match="refusing to load") as info:
        read_state_dict(evil)
    assert not marker.exists()  # the payload never ran
    msg = str(info.value)
    assert "weights_only=True" in msg and "arbitrary" in msg and "state_dict()" in msg


def test_whole_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_net(), path)  # torch.save(model): needs the class at load time -> unpickling
    with pytest.raises(SourceError, match=r"not a plain state_dict.*torch\.nn"):
        read_state_dict(path)


def test_unreadable_weights(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(SourceError, match="not a readable safetensors"):
        read_state_dict(junk)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(SourceError, match="no state_dict in it"):
        read_state_dict(listed)


# --- the registered source ---------------------------------------------------------------------


def test_registry_detects_modules_and_references(user_project: Path) -> None:
    assert "pytorch" in sources.names()
    assert sources.detect(torch.nn.Linear(2, 2)).name == "pytorch"
    assert sources.detect("userpkg_weights_test.models:make_model").name == "pytorch"
    src = PyTorchModuleSource()
    assert not src.sniff("model.onnx") and not src.sniff(Path("x.pt")) and not src.sniff(3)


def test_source_load_with_weights_records_sha(user_project: Path) -> None:
    net = instantiate(import_reference("userpkg_weights_test.models:make_model"), "r")
    torch.nn.init.constant_(net.lin.weight, 0.5)
    weights = user_project / "best.safetensors"
    save_file(net.state_dict(), str(weights))
    loaded = PyTorchModuleSource().load(
        "userpkg_weights_test.models:make_model",
        SourceOptions(
            weights=str(weights),
            input_specs=("x:FP32:3",),
            format="torchscript",
            max_batch_size=8,
        ),
    )
    try:
        source = loaded.record["source"]
        assert source == {
            "format": "pytorch",
            "reference": "userpkg_weights_test.models:make_model",
            "weights": "best.safetensors",
            "weights_sha256": sha256_file(weights),
        }
        # The exported model carries the loaded weights, not the factory's random ones.
        run = torchscript_runner(loaded.files["model.pt"], ["x"], ["OUTPUT__0"])
        out = run({"x": np.ones((1, 3), np.float32)})["OUTPUT__0"]
        expected = np.full((1, 2), 1.5) + net.lin.bias.detach().numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    finally:
        loaded.close()


def test_source_load_live_module_defaults_to_onnx() -> None:
    loaded = PyTorchModuleSource().load(
        _net(), SourceOptions(example_inputs=np.ones((2, 3), np.float32), format="auto")
    )
    try:
        assert loaded.format == "onnx" and list(loaded.files) == ["model.onnx"]
        assert loaded.record["source"]["class"] == "torch.nn.modules.container.Sequential"
    finally:
        loaded.close()


def test_weight_norm_checkpoint_is_renamed_by_torchs_own_hooks(tmp_path: Path) -> None:
    """Old nn.utils.weight_norm checkpoints keep weight_g/weight_v; the parametrized weight
    norm of today stores them elsewhere, and its load hook renames them: torch decides."""
    old = torch.nn.Conv1d(2, 3, 3)
    with torch.no_grad():
        g, v = torch.rand(3, 1, 1) + 0.5, torch.randn(3, 2, 3)
    path = tmp_path / "wn.pt"
    torch.save({"weight_g": g, "weight_v": v, "bias": torch.zeros(3)}, path)
    new = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(2, 3, 3))
    assert load_weights(new, path) == []
    expected = g * v / v.norm(dim=(1, 2), keepdim=True)
    assert torch.allclose(new.weight, expected, atol=1e-6)
    del old


def test_model_state_checkpoint_with_training_only_keys(tmp_path: Path) -> None:
    """resemblyzer's layout: {"step", "model_state": {..., "similarity_weight"}, "optimizer_state"}."""
    trained = _net()
    state = dict(trained.state_dict()) | {"similarity_weight": torch.ones(1)}
    path = tmp_path / "ckpt.pt"
    torch.save({"step": 7, "model_state": state, "optimizer_state": {"lr": 0.1}}, path)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2))
    assert load_weights(fresh, path) == ["similarity_weight"]
    assert torch.equal(fresh[0].weight, trained[0].weight)


def test_a_checkpoint_without_a_known_layout_lists_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "gen": {"w": torch.zeros(1), "n": 2}}, path)
    with pytest.raises(
        SourceError,
        match=r"its keys: 'epoch' \(int\), 'gen' \(mapping of 2, 1 tensors\).*ckpt\[KEY\]",
    ):
        read_state_dict(path)
