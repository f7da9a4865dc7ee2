"""Deploy manifests: the example builds byte for byte, errors name file:line and key path, and a
failed build leaves the output folder byte-identical."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from packager.errors import ManifestError
from packager.manifest.builder import build_manifest
from packager.manifest.pysteps import StepRunner
from packager.repository import read_config, versions
from packager.validation import validate
from tests.support.tree import snapshot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_TEXT = (EXAMPLES / "deploy.yaml").read_text()


def _tree(root: Path) -> dict[str, str]:
    # The Python backend writes __pycache__ next to model.py when a repository is served.
    return {k: v for k, v in snapshot(root).items() if "__pycache__" not in k}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built once from the examples folder."""
    out = tmp_path_factory.mktemp("built") / "repo"
    build_manifest(EXAMPLES / "deploy.yaml", out)
    return out


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of examples/ to edit."""
    dst = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture
def output(tmp_path: Path, built: Path) -> Path:
    """An output folder that already holds the example (so 'unchanged' is a real claim)."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out


def fails(manifest: Path, output: Path, *messages: str, force: bool = True) -> str:
    """Build must fail with every message, and leave ``output`` byte-identical (even with force)."""
    before = snapshot(output)
    with pytest.raises(ManifestError) as info:
        build_manifest(manifest, output, force=force)
    text = str(info.value)
    for m in messages:
        assert m in text, text
    assert snapshot(output) == before
    return text


def edit(example: Path, old: str, new: str, count: int = 1) -> Path:
    text = (example / "deploy.yaml").read_text()
    assert text.count(old) >= count, old
    (example / "deploy.yaml").write_text(text.replace(old, new, count))
    return example / "deploy.yaml"


# --------------------------------------------------------------------------- the example


def test_committed_model_repository_is_the_build_of_the_example(built: Path) -> None:
    assert _tree(built) == _tree(ROOT / "model_repository"), (
        "model_repository/ is stale; rebuild it with: triton-packager build -f "
        "examples/deploy.yaml -o model_repository --force"
    )


def test_build_is_deterministic_wherever_the_manifest_lives(
    example: Path, tmp_path: Path, built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths resolve from the manifest, not the cwd
    build_manifest("examples/deploy.yaml", "again")
    assert snapshot(tmp_path / "again") == snapshot(built)


def test_example_model_file_is_reproducible_from_its_script() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_model", EXAMPLES / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.make_model().SerializeToString()
    assert data == (EXAMPLES / "models" / "classifier.onnx").read_bytes()


def test_example_repository_validates_and_wires_the_labels(built: Path) -> None:
    report = validate(built)
    assert report.ok, report.to_dict()
    post = read_config(built / "postprocess")
    assert [o.label_filename for o in post.output] == ["labels.txt", ""]
    assert (built / "postprocess" / "labels.txt").read_text().split() == [
        "sports", "politics", "technology", "weather",
    ]  # fmt: skip
    ens = read_config(built / "text_classifier")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [
        "tokenizer", "classifier", "postprocess",
    ]  # fmt: skip


def test_python_steps_default_to_one_cpu_instance_unless_the_manifest_says(
    example: Path, tmp_path: Path
) -> None:
    manifest = example / "deploy.yaml"
    manifest.write_text(
        EXAMPLE_TEXT.replace(
            "    class: TopK\n", "    class: TopK\n    instance_groups: [{kind: gpu, count: 2}]\n"
        )
    )
    build_manifest(manifest, tmp_path / "out")
    groups = {
        name: [(g.kind, g.count) for g in read_config(tmp_path / "out" / name).instance_group]
        for name in ("tokenizer", "postprocess")
    }
    # Not Triton's default (one instance per GPU) for a step that only pre-processes.
    assert groups == {"tokenizer": [(2, 1)], "postprocess": [(1, 2)]}  # 2 = KIND_CPU, 1 = KIND_GPU


def test_python_steps_run_in_process_as_served(built: Path) -> None:
    tok = StepRunner(built / "tokenizer" / "1")
    ids = tok(TEXT=np.array([["Rain and wind"], ["the match"]], dtype=object))["INPUT_IDS"]
    assert ids.dtype == np.int64 and ids.shape == (2, 8)
    assert (ids[0, :3] > 0).all() and (ids[0, 3:] == 0).all()
    post = StepRunner(built / "postprocess" / "1")
    logits = np.array([[0.0, 3.0, 1.0, 0.0], [5.0, 0.0, 0.0, 6.0]], dtype=np.float64)
    out = post(LOGITS=logits)
    assert out["PROBS"].dtype == np.float32  # float64 from numpy is cast to the declared FP32
    assert out["LABELS"].tolist() == [[b"politics", b"technology"], [b"weather", b"sports"]]


# --------------------------------------------------------------------------- errors


def test_unknown_key_is_named_with_a_suggestion(example: Path, output: Path) -> None:
    m = edit(
        example,
        "    max_batch_size: 8\n    instance_groups",
        "    max_batch_sise: 8\n    instance_groups",
    )
    fails(
        m,
        output,
        "deploy.yaml:10: models[0].max_batch_sise: unknown key (did you mean 'max_batch_size'?); "
        "expected one of: name, source, version, format, backend, max_batch_size,",
    )


def test_wrong_type_says_what_is_expected(example: Path, output: Path) -> None:
    m = edit(example, "max_batch_size: 8", "max_batch_size: eight")
    m = edit(example, "dims: [8]", "dims: 8")
    fails(
        m,
        output,
        "deploy.yaml:10: models[0].max_batch_size: expected an integer >= 0, got 'eight'",
        "deploy.yaml:22: python_steps[0].outputs[0].dims: expected a list of integers, got 8",
    )


def test_missing_file_is_resolved_from_the_manifest_folder(example: Path, output: Path) -> None:
    m = edit(example, "source: models/classifier.onnx", "source: models/missing.onnx")
    m = edit(example, "labels: {PROBS: labels.txt}", "labels: {PROBS: labelz.txt}")
    fails(
        m,
        output,
        f"deploy.yaml:9: models[0].source: file 'models/missing.onnx' does not exist "
        f"(looked for {example / 'models' / 'missing.onnx'})",
        "deploy.yaml:29: python_steps[1].labels.PROBS: file 'labelz.txt' does not exist",
    )


def test_ensemble_wired_to_a_missing_tensor(example: Path, output: Path) -> None:
    m = edit(example, "inputs: {INPUT_IDS: input_ids}", "inputs: {INPUT_IDS: input_idz}")
    fails(
        m,
        output,
        "deploy.yaml:45: ensembles[0].steps[1].inputs.INPUT_IDS: wired to tensor 'input_idz', "
        "which no step produces and which is not an ensemble input; tensors available: "
        "LABELS, PROBS, TEXT, input_ids, logits",
    )


def test_dtype_mismatch_between_steps(example: Path, output: Path) -> None:
    m = edit(
        example,
        "{name: INPUT_IDS, dtype: INT64, dims: [8]}",
        "{name: INPUT_IDS, dtype: INT32, dims: [8]}",
    )
    fails(
        m,
        output,
        "deploy.yaml:45: ensembles[0].steps[1].inputs.INPUT_IDS: dtype mismatch on tensor "
        "'input_ids': steps[0] (tokenizer) output 'INPUT_IDS' is INT32 but steps[1] (classifier) "
        "input 'INPUT_IDS' expects INT64",
    )


def test_cycle_between_steps(tmp_path: Path) -> None:
    (tmp_path / "loop.py").write_text("def same(X):\n    return X\n")
    (tmp_path / "deploy.yaml").write_text(
        "python_steps:\n"
        "  - {name: a, file: loop.py, function: same, inputs: [{name: X, dtype: FP32, dims: [4]}],"
        " outputs: [{name: Y, dtype: FP32, dims: [4]}]}\n"
        "  - {name: b, file: loop.py, function: same, inputs: [{name: X, dtype: FP32, dims: [4]}],"
        " outputs: [{name: Y, dtype: FP32, dims: [4]}]}\n"
        "ensembles:\n"
        "  - name: loop\n"
        "    outputs: [y]\n"
        "    steps:\n"
        "      - {model: a, inputs: {X: x}, outputs: {Y: y}}\n"
        "      - {model: b, inputs: {X: y}, outputs: {Y: x}}\n"
    )
    out = tmp_path / "out"
    fails(
        tmp_path / "deploy.yaml",
        out,
        "deploy.yaml:7: ensembles[0].steps: the steps form a cycle: steps[0] (a) -> steps[1] (b) "
        "-> steps[0] (a); an ensemble must not loop back",
    )
    assert not out.exists()


def test_every_schema_problem_is_reported_at_once(example: Path, output: Path) -> None:
    m = edit(example, "function: tokenize", "function: tokenize\n    class: Tokenizer")
    m = edit(example, "dtype: FP32, dims: [4]}", "dtype: FLOAT33, dims: [4]}")
    m = edit(example, "- name: postprocess", "- name: tokenizer")
    text = fails(
        m,
        output,
        "deploy.yaml:15: python_steps[0]: give exactly one of 'function' or 'class'",
        "python_steps[1].inputs[0].dtype: expected a data type (BOOL,",
        "got 'FLOAT33'",
        "python_steps[1].name: 'tokenizer' is already used by python_steps[0]; names are unique",
    )
    assert text.startswith(f"{m}: 3 problem(s):")


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_text("models:\n  - name: a\n    source: [unclosed\n")
    with pytest.raises(ManifestError, match=r"deploy.yaml:\d+: not valid YAML"):
        build_manifest(bad, tmp_path / "out")
    bad.write_text("models:\n  - name: a\n    name: b\n    source: x.onnx\n")
    with pytest.raises(ManifestError, match=r"deploy.yaml:3: models\[0\].name: duplicate key"):
        build_manifest(bad, tmp_path / "out")
    bad.write_text("# nothing yet\n")
    with pytest.raises(ManifestError, match="names nothing to build"):
        build_manifest(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_python_step_entry_and_parameters_are_checked_without_running_it(
    example: Path, output: Path
) -> None:
    (example / "steps" / "tokenizer.py").write_text(
        "raise SystemExit('a build must never run step code')\n"
        "def tokenize(text):\n    return text\n"
        "class Other:\n    pass\n"
    )
    m = edit(
        example,
        "file: steps/postprocess.py\n    class: TopK",
        "file: steps/tokenizer.py\n    class: TopK",
    )
    fails(
        m,
        output,
        "python_steps[0]: tokenizer: ",
        "tokenizer.py:2: tokenize takes (text) but the step's inputs are passed as keyword "
        "arguments TEXT; add parameter(s) TEXT (or **inputs)",
        "tokenizer.py defines no class 'TopK' at top level; functions and classes there: Other, tokenize",
    )


def test_a_model_that_fails_to_load_means_nothing_is_written(example: Path, tmp_path: Path) -> None:
    (example / "models" / "classifier.onnx").write_bytes(b"\x08\x07garbage")
    out = tmp_path / "fresh"
    text = fails(
        example / "deploy.yaml",
        out,
        "deploy.yaml:8: models[0]: classifier: ",
        "ensembles[0].steps[1].model: 'classifier' could not be built (see above)",
    )
    assert "not a valid ONNX file" in text or "cannot tell the format" in text, text
    assert not out.exists()  # the three models that would have built are not there either


def test_existing_versions_need_force_and_new_versions_are_added(
    example: Path, output: Path
) -> None:
    fails(
        example / "deploy.yaml",
        output,
        "models[0].version: classifier/1 already exists in",
        "pass --force to replace it, or set another version",
        force=False,
    )
    before = snapshot(output)
    build_manifest(example / "deploy.yaml", output, force=True)
    assert snapshot(output) == before  # same manifest, same bytes
    m = edit(example, "  - name: classifier\n", "  - name: classifier\n    version: 2\n")
    with pytest.raises(ManifestError, match="tokenizer/1 already exists"):
        build_manifest(m, output)
    build_manifest(m, output, force=True)
    assert versions(output / "classifier") == [1, 2]
    assert snapshot(output)["classifier/1/model.onnx"] == before["classifier/1/model.onnx"]


def test_ensemble_may_use_models_already_in_the_output(tmp_path: Path, output: Path) -> None:
    (tmp_path / "more.yaml").write_text(
        "ensembles:\n"
        "  - name: scores\n"
        "    inputs: [{name: ids, dtype: INT64, dims: [8]}]\n"
        "    outputs: [probs]\n"
        "    steps:\n"
        "      - {model: classifier, inputs: {INPUT_IDS: ids}, outputs: {LOGITS: logits}}\n"
        "      - {model: postprocess, inputs: {LOGITS: logits}, outputs: {PROBS: probs}}\n"
    )
    result = build_manifest(tmp_path / "more.yaml", output)
    assert [m.name for m in result.models] == ["scores"]
    assert validate(output).ok


def test_dry_run_checks_everything_and_writes_nothing(example: Path, tmp_path: Path) -> None:
    result = build_manifest(example / "deploy.yaml", tmp_path / "dry", dry_run=True)
    assert [m.kind for m in result.models] == ["model", "python_step", "python_step", "ensemble"]
    assert 'platform: "ensemble"' in result.models[-1].config
    assert not result.written and not (tmp_path / "dry").exists()
