"""Ensemble specs: wiring checks, inference of ensemble tensors, rendering and validate()."""

from pathlib import Path

import pytest

from packager.errors import SpecError
from packager.manifest.ensemble import EnsembleStep, ensemble_spec, plan_ensemble, wiring_problems
from packager.render import parse_config, render_config, spec_from_config
from packager.repository import write_model
from packager.spec import ModelSpec, TensorSpec
from packager.validation import validate

TOK = ModelSpec(
    name="tok",
    backend="python",
    max_batch_size=8,
    inputs=(TensorSpec("TEXT", "BYTES", (1,)),),
    outputs=(TensorSpec("IDS", "INT64", (8,)),),
)
CLS = ModelSpec(
    name="cls",
    platform="onnxruntime_onnx",
    max_batch_size=16,
    inputs=(TensorSpec("IDS", "INT64", (8,)),),
    outputs=(TensorSpec("LOGITS", "FP32", (4,)),),
)
POST = ModelSpec(
    name="post",
    backend="python",
    max_batch_size=8,
    inputs=(TensorSpec("LOGITS", "FP32", (4,)),),
    outputs=(TensorSpec("LABELS", "BYTES", (2,)), TensorSpec("PROBS", "FP32", (4,))),
)
MEMBERS = {m.name: m for m in (TOK, CLS, POST)}
STEPS = (
    EnsembleStep("tok", input_map={"TEXT": "text"}, output_map={"IDS": "ids"}),
    EnsembleStep("cls", input_map={"IDS": "ids"}, output_map={"LOGITS": "logits"}),
    EnsembleStep("post", input_map={"LOGITS": "logits"}, output_map={"LABELS": "labels"}),
)


def issues(steps=STEPS, members=MEMBERS, **kw):
    kw.setdefault("outputs", ["labels"])
    spec, found = plan_ensemble("pipe", steps, members, **kw)
    return spec, [f"{'.'.join(map(str, p))}: {m}" for p, m in found]


def test_valid_pipeline_infers_tensors_and_batch_size_and_renders() -> None:
    spec = ensemble_spec("pipe", STEPS, MEMBERS, outputs=["labels"])
    assert spec.platform == "ensemble"
    assert spec.max_batch_size == 8  # the smallest member's
    assert spec.inputs == (TensorSpec("text", "BYTES", (1,)),)
    assert spec.outputs == (TensorSpec("labels", "BYTES", (2,)),)
    config = parse_config(render_config(spec))
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["tok", "cls", "post"]
    assert dict(config.ensemble_scheduling.step[1].output_map) == {"LOGITS": "logits"}
    # Read back from config.pbtxt, the same checks find nothing wrong.
    assert wiring_problems(spec_from_config(config), MEMBERS) == []


def test_step_order_does_not_matter_but_loops_do() -> None:
    spec = ensemble_spec("pipe", tuple(reversed(STEPS)), MEMBERS, outputs=["labels"])
    assert [s.model_name for s in spec.ensemble_steps] == ["post", "cls", "tok"]
    loop = (
        EnsembleStep("cls", input_map={"IDS": "a"}, output_map={"LOGITS": "b"}),
        EnsembleStep(
            "post", input_map={"LOGITS": "b"}, output_map={"LABELS": "labels", "PROBS": "c"}
        ),
        EnsembleStep("tok", input_map={"TEXT": "c"}, output_map={"IDS": "a"}),
    )
    members = {**MEMBERS, "tok": TOK.replace(inputs=(TensorSpec("TEXT", "FP32", (4,)),))}
    _, found = issues(loop, members, inputs=[])
    assert any(
        "the steps form a cycle: steps[0] (cls) -> steps[1] (post) -> steps[2] (tok) -> steps[0] (cls)"
        in f
        for f in found
    ), found


def test_missing_tensor_is_named_with_what_exists() -> None:
    steps = (
        STEPS[0],
        EnsembleStep("cls", input_map={"IDS": "idz"}, output_map={"LOGITS": "logits"}),
        STEPS[2],
    )
    _, found = issues(steps, inputs=["text"])
    assert found == [
        "steps.1.inputs.IDS: wired to tensor 'idz', which no step produces and which is not an "
        "ensemble input; tensors available: ids, labels, logits, text"
    ]


def test_dtype_and_shape_mismatch_between_producer_and_consumer() -> None:
    members = {**MEMBERS, "cls": CLS.replace(inputs=(TensorSpec("IDS", "INT32", (16,)),))}
    _, found = issues(members=members)
    assert (
        "steps.1.inputs.IDS: dtype mismatch on tensor 'ids': steps[0] (tok) output 'IDS' is INT64 "
        "but steps[1] (cls) input 'IDS' expects INT32" in found
    )
    assert any(
        "shape mismatch on tensor 'ids'" in f and "[-1, 8]" in f and "[-1, 16]" in f for f in found
    )


def test_unknown_model_unknown_member_tensors_and_unwired_input() -> None:
    steps = (
        EnsembleStep("tok", input_map={"TXT": "text"}, output_map={"IDS": "ids"}),
        EnsembleStep("clz", input_map={"IDS": "ids"}, output_map={"LOGITS": "logits"}),
        EnsembleStep("post", input_map={"LOGITS": "ids"}, output_map={"LABEL": "labels"}),
    )
    _, found = issues(steps, outputs=[TensorSpec("labels", "BYTES", (2,))], inputs=[])
    text = "\n".join(found)
    assert "steps.0.inputs.TXT: model 'tok' has no input 'TXT'; inputs are: TEXT" in text
    assert "steps.0.inputs: input 'TEXT' of model 'tok' is not wired" in text
    assert "steps.1.model: model 'clz' does not exist; models are: cls, post, tok" in text
    assert (
        "steps.2.outputs.LABEL: model 'post' has no output 'LABEL'; outputs are: LABELS, PROBS"
        in text
    )
    assert "outputs.0: ensemble output 'labels' is not produced by any step" in text


def test_two_producers_self_reference_and_unused_input() -> None:
    steps = (
        *STEPS,
        EnsembleStep("tok", input_map={"TEXT": "text"}, output_map={"IDS": "ids"}),
        EnsembleStep("pipe", input_map={}, output_map={}),
    )
    _, found = issues(steps, inputs=["text", TensorSpec("unused", "FP32", (1,))])
    text = "\n".join(found)
    assert (
        "steps.3.outputs.IDS: tensor 'ids' is already produced by steps[0] (tok) output 'IDS'"
        in text
    )
    assert "steps.4.model: an ensemble cannot run itself" in text
    assert "inputs.1: ensemble input 'unused' is not used by any step" in text


def test_ensemble_batch_size_must_fit_every_member() -> None:
    _, found = issues(max_batch_size=16)
    assert found == [
        "max_batch_size: 16 is larger than the max_batch_size 8 of 'tok' (steps[0] (tok)); use at most 8",
        "max_batch_size: 16 is larger than the max_batch_size 8 of 'post' (steps[2] (post)); use at most 8",
    ]


def test_non_batching_ensemble_feeds_batching_members_with_full_shapes() -> None:
    spec = ensemble_spec("pipe", STEPS, MEMBERS, outputs=["labels"], max_batch_size=0)
    assert spec.inputs == (TensorSpec("text", "BYTES", (-1, 1)),)
    assert spec.outputs == (TensorSpec("labels", "BYTES", (-1, 2)),)


def test_unknown_output_name_cannot_be_inferred() -> None:
    with pytest.raises(SpecError, match=r"outputs\[0\]: no step produces a tensor named 'nope'"):
        ensemble_spec("pipe", STEPS, MEMBERS, outputs=["nope"])


def test_validate_reports_ensemble_wiring_from_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for m in (TOK, POST):  # "cls" is missing from the repository
        write_model(repo, m, {"model.py": "# python"})
    spec = ensemble_spec("pipe", STEPS, MEMBERS, outputs=["labels"])
    write_model(repo, spec, {})
    report = validate(repo)
    pipe = next(m for m in report.models if m.name == "pipe")
    assert (
        "ensemble steps[1].model: model 'cls' does not exist; models are: post, tok"
        in pipe.problems
    )
    assert not report.ok
