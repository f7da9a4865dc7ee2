"""Bad inputs to the packager: each is refused with a message that says what is wrong, and the
repository (and the folder around it) is byte-identical afterwards.

Covered: truncated, empty and random-byte model files; ONNX with missing or short external data;
pickles that would run code (weights, model files, example inputs); names that traverse paths or
that Triton rejects; symlinks that lead out of a repository; absurd dims and batch sizes;
manifests with wrong types; a full disk (a real tiny tmpfs), a file-size limit (EFBIG from the
kernel) and a read-only output folder.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from packager.builder import build
from packager.errors import ManifestError, PackagerError, RepositoryError, SourceError, SpecError
from packager.manifest.builder import build_manifest
from packager.validation import validate
from tests.support.tree import snapshot

ROOT = Path(__file__).resolve().parents[2]
MLP_REF = "tests.support.torch_models:MLP"  # a zero-argument nn.Module class (16 -> 4)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]) -> Path:
    repo = tmp_path_factory.mktemp("template") / "repo"
    build(str(model_files["mlp"]), name="existing", output=repo)
    build(str(model_files["mlp"]), name="py", output=repo, backend="python")
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    """A repository holding two models, inside ``tmp_path/area`` (watched as a whole)."""
    dst = tmp_path / "area" / "repo"
    shutil.copytree(template, dst)
    return dst


def refused(
    area: Path, call: Callable[[], Any], *needles: str, error: type[Exception] = PackagerError
) -> str:
    """``call`` raises ``error`` naming every needle, and ``area`` is byte-identical after."""
    before = snapshot(area)
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    assert snapshot(area) == before
    return text


# ------------------------------------------------------------------------------ model files


@pytest.mark.parametrize("keep", [0, 1, 16, 0.25, 0.5, 0.9, -1])
def test_truncated_onnx_is_refused(
    keep: float, repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    data = model_files["mlp"].read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(data[:n])
    text = refused(
        repo.parent, lambda: build(str(bad), name="m", output=repo), str(bad), error=SourceError
    )
    assert "not a valid ONNX" in text


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_torchscript_is_refused(
    keep: float, repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    data = model_files["torchscript"].read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(data[: int(len(data) * keep)])
    refused(
        repo.parent,
        lambda: build(str(bad), name="m", output=repo, input_specs=["INPUT__0:FP32:16"]),
        str(bad),
        "truncated, corrupt",
        error=SourceError,
    )


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_are_refused(seed: int, repo: Path, tmp_path: Path) -> None:
    rng = random.Random(seed)
    # A protobuf tag byte or a zip signature first gets the file past the format sniffers.
    head = [b"", b"\x08", b"\x08\x07", b"PK\x03\x04"][seed % 4]
    bad = tmp_path / f"junk{seed}{['.onnx', '.pt', '.bin'][seed % 3]}"
    bad.write_bytes(head + rng.randbytes(rng.randint(1, 20_000)))
    text = refused(repo.parent, lambda: build(str(bad), name="m", output=repo), bad.name)
    assert any(
        s in text for s in ("not a valid ONNX", "truncated, corrupt", "zip archive", "TorchScript")
    ), text


def test_onnx_whose_external_data_is_missing_or_short(
    repo: Path, external_onnx: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "alone" / external_onnx.name
    alone.parent.mkdir()
    shutil.copy(external_onnx, alone)
    refused(
        repo.parent,
        lambda: build(str(alone), name="m", output=repo),
        "external data",
        "missing",
        f"{external_onnx.name}.data",
        error=SourceError,
    )
    data = external_onnx.with_name(external_onnx.name + ".data")
    (alone.parent / data.name).write_bytes(data.read_bytes()[:100])
    refused(
        repo.parent,
        lambda: build(str(alone), name="m", output=repo),
        str(alone),
        f"external data file {data.name} is truncated: it has 100 bytes and tensor",
        error=SourceError,
    )


# ------------------------------------------------------------------------ code in pickles


class RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_pickled_checkpoint_that_would_run_code_is_refused(
    how: str, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the module reference is imported from the working directory
    marker = tmp_path / "PWNED"
    evil = tmp_path / "weights.pt"
    if how == "torch.save":
        torch.save({"net.0.weight": RunsCode(marker)}, evil)
    else:
        evil.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)}))
    refused(
        repo.parent,
        lambda: build(MLP_REF, name="m", output=repo, weights=str(evil)),
        "refusing to load",
        "weights_only=True",
        error=SourceError,
    )
    assert not marker.exists(), "the pickle's code ran"
    # Handed over as the model file itself, it is not unpickled either.
    refused(repo.parent, lambda: build(str(evil), name="m", output=repo), evil.name)
    assert not marker.exists()


def test_pickled_example_inputs_are_refused(
    repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "PWNED"
    npz = tmp_path / "examples.npz"
    np.savez(npz, INPUT__0=np.array([RunsCode(marker)], dtype=object))
    refused(
        repo.parent,
        lambda: build(str(model_files["torchscript"]), name="m", output=repo, example_inputs=npz),
        "not a readable .npz",
        error=SourceError,
    )
    assert not marker.exists()


# ----------------------------------------------------------------------------------- names

BAD_NAMES = {
    "../escape": "path separator",
    "../../etc": "path separator",
    "a/b": "path separator",
    "a\\b": "path separator",
    "/abs": "path separator",
    "..": "path separator",
    ".": "path separator",
    "": "empty",
    ".hidden": "characters Triton rejects",
    "-flag": "characters Triton rejects",
    "sp ace": "characters Triton rejects",
    "new\nline": "characters Triton rejects",
    "nul\x00": "characters Triton rejects",
    "ünï": "characters Triton rejects",
    "q?x=1": "characters Triton rejects",
    "x" * 129: "characters Triton rejects",
}


@pytest.mark.parametrize("name", sorted(BAD_NAMES), ids=repr)
def test_names_that_traverse_paths_or_triton_rejects(
    name: str, repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    refused(
        tmp_path,  # the whole test folder: nothing may appear beside the repository either
        lambda: build(str(model_files["mlp"]), name=name, output=repo),
        BAD_NAMES[name],
        error=SpecError,
    )


def test_manifest_names_that_traverse_paths(
    repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        yaml.safe_dump({"models": [{"name": "../escape", "source": str(model_files["mlp"])}]})
    )
    refused(
        tmp_path,
        lambda: build_manifest(manifest, repo, force=True),
        "deploy.yaml:2",
        "path separator",
        error=ManifestError,
    )


# -------------------------------------------------------------------------------- symlinks


@contextmanager
def linked_out(repo: Path, kind: str) -> Iterator[Path]:
    """Replace part of model ``existing`` with a symlink to a copy outside the repository."""
    outside = repo.parent / "outside"
    model = repo / "existing"
    part = {
        "model folder": model,
        "version folder": model / "1",
        "config": model / "config.pbtxt",
        "artifact": model / "1" / "model.onnx",
    }[kind]
    copy = outside / part.name
    outside.mkdir()
    if part.is_dir():
        shutil.copytree(part, copy)
        shutil.rmtree(part)
    else:
        shutil.copy(part, copy)
        part.unlink()
    part.symlink_to(copy)
    yield outside


LINKS = ["model folder", "version folder", "config", "artifact"]


@pytest.mark.parametrize("kind", LINKS)
def test_validate_flags_symlinks_that_leave_the_repository(kind: str, repo: Path) -> None:
    with linked_out(repo, kind):
        report = validate(repo)
    problems = next(m.problems for m in report.models if m.name == "existing")
    assert not report.ok
    assert any("is a symlink to" in p and "outside the repository" in p for p in problems), problems


def test_a_symlink_inside_the_repository_is_not_flagged(repo: Path) -> None:
    (repo / "existing" / "labels.txt").write_text("a\nb\n")
    (repo / "py" / "labels.txt").symlink_to("../existing/labels.txt")
    report = validate(repo)
    problems = [f"{m.name}/{p}" for m in report.models for p in m.problems]
    assert not any("symlink" in p for p in problems), problems
    # The files were added by hand after the build: the model-level SHA256SUMS says so, nothing else.
    assert sorted(problems) == [
        f"{m}/labels.txt: not listed in SHA256SUMS (added after build)" for m in ("existing", "py")
    ]


@pytest.mark.parametrize("kind", LINKS)
@pytest.mark.parametrize("force", [False, True], ids=["new version", "force version 1"])
def test_build_never_writes_through_a_symlink(
    kind: str, force: bool, repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    with linked_out(repo, kind) as outside:
        before = snapshot(outside)
        other = tmp_path / "other.onnx"
        shutil.copy(model_files["fixed"], other)
        try:
            build(
                str(model_files["mlp"]),
                name="existing",
                output=repo,
                version=1 if force else None,
                force=force,
            )
        except RepositoryError as exc:
            assert "symlink" in str(exc), exc
        assert snapshot(outside) == before


def test_validate_flags_hidden_folders_triton_would_load(repo: Path) -> None:
    (repo / ".ipynb_checkpoints").mkdir()
    (repo.parent / "elsewhere").mkdir()
    report = validate(repo)
    flagged = {m.name: m.problems for m in report.models if m.problems}
    assert list(flagged) == [".ipynb_checkpoints"]
    assert "Triton still tries to load it" in flagged[".ipynb_checkpoints"][0]


# -------------------------------------------------------------------------------- dims


@pytest.mark.parametrize(
    ("dims", "needle"),
    [
        ("0", "dims are positive or -1"),
        ("-5", "dims are positive or -1"),
        ("4,0", "dims are positive or -1"),
        ("100000000000", "more than 1 GiB"),
        ("1000,1000,1000", "more than 1 GiB"),
        (str(2**63), "more than 1 GiB"),
        ("x", "dims must be integers"),
        # An empty dims part is a scalar per sample; this model cannot take one, and says so.
        ("", "check --input dtypes and dims"),
    ],
)
def test_absurd_dims_are_refused(
    dims: str, needle: str, repo: Path, model_files: dict[str, Path]
) -> None:
    refused(
        repo.parent,
        lambda: build(
            str(model_files["torchscript"]),
            name="m",
            output=repo,
            input_specs=[f"INPUT__0:FP32:{dims}"],
        ),
        needle,
    )


@pytest.mark.parametrize(("mbs", "needle"), [(-1, "must be >= 0"), (2**40, "larger than 2^31-1")])
def test_absurd_max_batch_size_is_refused(
    mbs: int, needle: str, repo: Path, model_files: dict[str, Path]
) -> None:
    refused(
        repo.parent,
        lambda: build(str(model_files["mlp"]), name="m", output=repo, max_batch_size=mbs),
        needle,
        error=SpecError,
    )


# ------------------------------------------------------------------------------- manifests

WRONG_VALUES: list[Any] = [123, 1.5, "text", [1, 2], {"a": 1}, True, None, -1]
MODEL_KEYS = [
    "name",
    "source",
    "max_batch_size",
    "instance_groups",
    "dynamic_batching",
    "version",
    "version_policy",
    "parameters",
    "warmup",
    "backend",
    "inputs",
]


def test_manifests_with_wrong_types_are_refused_key_by_key(
    repo: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    """Every key of a model entry, given each wrong type: a ManifestError naming the key (or,
    where the value happens to be valid, a build), never a traceback or a touched output."""
    manifest = tmp_path / "deploy.yaml"
    tried = refusals = 0
    for key in MODEL_KEYS:
        for value in WRONG_VALUES:
            entry: dict[str, Any] = {"name": "m", "source": str(model_files["mlp"])}
            entry[key] = value
            manifest.write_text(yaml.safe_dump({"models": [entry]}))
            before = snapshot(repo.parent)
            tried += 1
            try:
                build_manifest(manifest, repo, dry_run=True)
            except ManifestError as exc:
                refusals += 1
                assert f"models[0].{key}" in str(exc) or "models[0]" in str(exc), (key, value, exc)
            assert snapshot(repo.parent) == before, (key, value)
    assert tried == len(MODEL_KEYS) * len(WRONG_VALUES)
    print(f"\n{tried} wrong-typed manifest values: {refusals} refused")
    assert refusals >= tried * 3 // 4, (refusals, tried)
    # Whole sections of the wrong type, at once: every problem listed with its line.
    manifest.write_text("models: {name: m}\npython_steps: 7\nensembles: text\n")
    text = refused(repo.parent, lambda: build_manifest(manifest, repo), error=ManifestError)
    for line in (
        "deploy.yaml:1: models",
        "deploy.yaml:2: python_steps",
        "deploy.yaml:3: ensembles",
    ):
        assert line in text, text


# ------------------------------------------------------------------- full or read-only disks


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_disk_full_on_a_tiny_tmpfs_leaves_the_repository_as_it_was(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "256k"):
        pytest.skip("needs root to mount a tmpfs (the EFBIG test below runs everywhere)")
    try:
        repo = mnt / "repo"
        build(str(model_files["mlp"]), name="existing", output=repo)
        fillers = []
        with pytest.raises(OSError):  # fill the file system, one page at a time
            for i in range(1000):
                fillers.append(mnt / f"fill{i}")
                fillers[-1].write_bytes(b"\0" * 4096)
        failures = 0
        for _ in range(12):  # free one page more each round until the build fits
            before = snapshot(repo)
            try:
                build(str(model_files["mlp"]), name="existing", output=repo)
                break
            except RepositoryError as exc:
                assert "No space left on device" in str(exc), exc
                assert "left as it was" in str(exc)
                assert snapshot(repo) == before
                failures += 1
                fillers.pop().unlink(missing_ok=True)
        assert failures >= 2
        assert (repo / "existing" / "2").is_dir()
        assert validate(repo).ok
        assert not [p for p in mnt.iterdir() if p.name.startswith(".tp-")]
    finally:
        _umount(mnt)


def test_file_size_limit_efbig_from_the_kernel_leaves_the_repository_as_it_was(
    repo: Path, model_files: dict[str, Path]
) -> None:
    """RLIMIT_FSIZE makes the kernel fail any write past 2000 bytes (EFBIG): a real I/O error
    in the middle of staging, without root."""
    script = textwrap.dedent(
        f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from packager.builder import build
        from packager.errors import PackagerError
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        try:
            build({str(model_files["mlp"])!r}, name="existing", output={str(repo)!r})
        except PackagerError as exc:
            print("REFUSED", exc)
        """
    )
    before = snapshot(repo.parent)
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.stdout.startswith("REFUSED"), r.stdout + r.stderr
    assert "File too large" in r.stdout and "left as it was" in r.stdout
    assert snapshot(repo.parent) == before


def test_read_only_output_folder_leaves_the_repository_as_it_was(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    ro = tmp_path / "ro"
    mounted = _mount_tmpfs(ro, "4m")
    if not mounted and os.geteuid() == 0:
        pytest.skip("root ignores permission bits, and mounting a read-only tmpfs failed")
    try:
        repo = ro / "repo" if mounted else tmp_path / "repo"
        build(str(model_files["mlp"]), name="existing", output=repo)
        if mounted:  # root ignores permission bits: make the file system itself read-only
            subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        else:
            repo.chmod(0o555)
            (repo / "existing").chmod(0o555)
        before = snapshot(repo)
        with pytest.raises(RepositoryError) as info:
            build(str(model_files["mlp"]), name="existing", output=repo)
        assert "Read-only file system" in str(info.value) or "Permission denied" in str(info.value)
        assert "left as it was" in str(info.value)
        assert snapshot(repo) == before
        assert validate(repo).ok
    finally:
        if mounted:
            _umount(ro)
        elif (tmp_path / "repo").exists():
            (tmp_path / "repo").chmod(0o755)
            (tmp_path / "repo" / "existing").chmod(0o755)
