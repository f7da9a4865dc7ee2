"""Plan, then write: the text pipeline honours every model option in one plan (no manifest,
no scratch repository), a dry run plans without writing, and manifests may say what the CLI says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.builder import BuildOptions, build, plan
from packager.cli import main
from packager.errors import SpecError
from packager.manifest.builder import build_manifest
from packager.render import parse_config
from tests.support import hf_models


@pytest.fixture(scope="module")
def clf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_models.tiny_classifier_folder(tmp_path_factory.mktemp("clf") / "clf")


def _config(repo: Path, name: str) -> object:
    return parse_config((repo / name / "config.pbtxt").read_text())


def test_text_pipeline_writes_exactly_the_options_given(clf: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = CliRunner().invoke(
        main,
        ["build", str(clf), "--name", "s", "--text", "--max-batch-size", "0",
         "--instances", "2", "--warmup", "1", "-o", str(repo)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = _config(repo, "s_model")
    assert model.max_batch_size == 0 and not model.HasField("dynamic_batching")  # type: ignore[attr-defined]
    assert [g.count for g in model.instance_group] == [2]  # type: ignore[attr-defined]
    assert len(model.model_warmup) == 1  # type: ignore[attr-defined]
    for name in ("s", "s_tokenizer", "s_labels"):
        assert _config(repo, name).max_batch_size == 0, name  # type: ignore[attr-defined]
    assert "built s version 1 (ensemble, ensemble)" in result.output
    record = json.loads((repo / "s_tokenizer" / "1" / "build.json").read_text())
    assert record["source"]["file"] == "hf_steps.py"  # no temporary path in the record


def test_text_pipeline_refuses_what_it_cannot_honour(clf: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--version-policy does not apply to a text pipeline"):
        build(clf, name="s", output=tmp_path / "r", text=True, version_policy="all")
    assert not (tmp_path / "r").exists()


def test_a_plan_writes_nothing_and_the_dry_run_is_the_plan(clf: Path, tmp_path: Path) -> None:
    options = BuildOptions("s", output=tmp_path / "r", text=True)
    with plan(clf, options) as p:
        names = [m.name for m in p.models]
        configs = {m.name: m.config for m in p.models}
    assert names == ["s_tokenizer", "s_model", "s_labels", "s"]  # members before the ensemble
    assert not (tmp_path / "r").exists()
    dry = build(clf, options.replace(dry_run=True))
    assert {m.name: m.config for m in dry.models} == configs and dry.written is None


def test_a_manifest_takes_the_cli_options(clf: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        f"models:\n"
        f"  - {{name: s, source: {clf}, text: true, max_batch_size: 4, instances: 2,\n"
        f"     warmup: 2, dynamic_batching: {{max_queue_delay_us: 50}}}}\n"
    )
    result = build_manifest(manifest, tmp_path / "repo")
    assert [m.name for m in result.models] == ["s_tokenizer", "s_model", "s_labels", "s"]
    model = _config(tmp_path / "repo", "s_model")
    assert model.max_batch_size == 4 and [g.count for g in model.instance_group] == [2]  # type: ignore[attr-defined]
    assert model.dynamic_batching.max_queue_delay_microseconds == 50  # type: ignore[attr-defined]
    assert model.model_warmup[0].batch_size == 2  # type: ignore[attr-defined]
