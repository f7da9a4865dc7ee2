"""Packages pinned for NVIDIA's image install on the image's Python (3.10) and platform.

Two repositories, a text-generation model and Python-backend models of both runtimes, get their
Dockerfile pins; each is an exact ``==`` pin from the target profile (never the version
installed here), and the set resolves with pip's resolver for Python 3.10 manylinux. The
generation code then runs with the pinned transformers (in its own folder, in a subprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager import releases as rel
from packager.builder import build
from packager.deploy.docker import render_docker
from packager.deploy.footprint import requirement_name, target_pins
from tests.support.gen_models import PROMPTS, make_causal_lm


@pytest.fixture(scope="module")
def repositories(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pins")
    llm = make_causal_lm(root / "gpt2", "gpt2")
    build(str(llm), name="llm", output=root / "generation")
    build(str(model_files["mlp"]), name="mlp", output=root / "python", backend="python")
    build(str(model_files["torchscript"]), name="ts", output=root / "python", backend="python",
          input_specs=["INPUT__0:FP32:16"])  # fmt: skip
    return {"generation": root / "generation", "python": root / "python", "llm": llm}


def _pins(repo: Path) -> tuple[str, ...]:
    return render_docker(repo, repo.parent / "docker").pip


def test_every_pin_is_exact_and_from_the_target_profile(repositories: dict[str, Path]) -> None:
    pinned = target_pins()
    generation, python = _pins(repositories["generation"]), _pins(repositories["python"])
    assert {requirement_name(p) for p in generation} >= {"numpy", "torch", "transformers"}
    assert {requirement_name(p) for p in python} >= {"numpy", "torch", "onnxruntime-gpu"}
    for pin in generation + python:
        assert "==" in pin, pin
        assert pinned[requirement_name(pin)] == pin
    dockerfile = render_docker(repositories["generation"], "docker").files["Dockerfile"]
    assert '"transformers==5.20.2"' in dockerfile and '"numpy==1.26.4"' in dockerfile


def test_a_build_recorded_before_the_profile_gets_the_profile_pin(
    repositories: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    repo = tmp_path / "old"
    shutil.copytree(repositories["generation"], repo)
    record = repo / "llm" / "1" / "build.json"
    data = json.loads(record.read_text())
    data["requires"] = ["torch==2.5.1", "transformers==5.25.0", "tokenizers==0.23.3"]
    record.write_text(json.dumps(data))  # as an older triton-packager recorded it
    assert "transformers==5.20.2" in _pins(repo)
    assert not any("5.25.0" in p for p in _pins(repo))


@pytest.mark.registry
@pytest.mark.slow
def test_the_pins_resolve_for_python_310_manylinux(repositories: dict[str, Path]) -> None:
    from packager.deploy.pins import resolve

    pins = sorted(set(_pins(repositories["generation"]) + _pins(repositories["python"])))
    resolved = resolve(pins)  # pip's resolver, as inside the image: Python 3.10, glibc 2.35
    for pin in pins:
        name, _, version = pin.partition("==")
        assert resolved[requirement_name(name)] == version, (pin, resolved.get(name))


@pytest.mark.registry
def test_the_local_transformers_would_not_resolve_there() -> None:
    """Why the pins come from the profile: this machine's transformers needs Python 3.11."""
    import importlib.metadata

    from packager.deploy.pins import resolve
    from packager.errors import PackagerError

    local = importlib.metadata.version("transformers")
    if local == rel.GENERATION_PACKAGES[0].partition("==")[2]:
        pytest.fail("the local transformers equals the pin: choose a case that differs")
    with pytest.raises(PackagerError, match=r"do not resolve for Python 3\.10"):
        resolve([f"transformers=={local}"])


_GENERATE = """
import json, sys
import transformers, tokenizers
sys.path.insert(0, {vdir!r})  # the version folder: model.py imports tp_engine from there
import tp_engine, tp_sampling
engine = tp_engine.Engine.load({hf!r}).start()
out = {{"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}}
try:
    for prompt in {prompts!r}:
        sink = tp_engine.QueueSink()
        params = tp_sampling.parse_sampling({{"temperature": 0, "max_tokens": 16}})
        engine.submit(prompt, params, sink, stream=True, prepend=False)
        text = "".join(sink)
        out[prompt] = {{"tokens": sink.tokens, "text": text}}
finally:
    engine.stop()
from tests.support.gen_models import reference_generate
out["reference"] = {{p: reference_generate({hf!r}, p, 16)[0] for p in {prompts!r}}}
print(json.dumps(out))
"""


@pytest.mark.registry
@pytest.mark.slow
def test_generation_runs_with_the_pinned_transformers(repositories: dict[str, Path]) -> None:
    from tests.support.pinned import installed, run_with

    folder = installed(rel.GENERATION_PACKAGES)  # in the cache, never in the shared venv
    vdir = repositories["generation"] / "llm" / "1"
    code = _GENERATE.format(vdir=str(vdir), hf=str(vdir / "hf"), prompts=list(PROMPTS))
    out = json.loads(run_with(folder, code).splitlines()[-1])
    assert f"transformers=={out['transformers']}" in rel.GENERATION_PACKAGES
    assert f"tokenizers=={out['tokenizers']}" in rel.GENERATION_PACKAGES
    for prompt in PROMPTS:
        # The engine's greedy decoding equals that transformers release's own generate().
        assert out[prompt]["tokens"] == out["reference"][prompt], prompt
        assert out[prompt]["text"]
