from pathlib import Path

import pytest

from packager.errors import SpecError
from packager.render import parse_config, render_config, spec_from_config, templates_dir
from packager.scheduling import (
    RateLimiter,
    RateLimitResource,
    SequenceBatching,
    SequenceControl,
    SequenceState,
)
from packager.spec import (
    DynamicBatching,
    GpuOptimization,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    default_warmup,
)
from tests.unit.golden_specs import GOLDEN

GOLDEN_DIR = Path(__file__).parent.parent / "golden"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_configs_match_and_parse_with_tritons_schema(name: str) -> None:
    expected = (GOLDEN_DIR / f"{name}.pbtxt").read_text()
    assert render_config(GOLDEN[name]) == expected
    config = parse_config(expected)  # the real schema: tritonclient.grpc.model_config_pb2
    assert config.name == GOLDEN[name].name
    assert config.max_batch_size == GOLDEN[name].max_batch_size


def test_gpu_golden_has_two_instances_on_gpus_0_and_1() -> None:
    c = parse_config((GOLDEN_DIR / "gpu_batching.pbtxt").read_text())
    assert [(g.count, list(g.gpus)) for g in c.instance_group] == [(2, [0, 1])]
    assert list(c.dynamic_batching.preferred_batch_size) == [8, 16]
    assert c.dynamic_batching.max_queue_delay_microseconds == 200


def test_max_batch_size_zero_is_written_explicitly() -> None:
    # Triton's auto-complete would otherwise treat a missing field as "unknown" and may guess.
    text = (GOLDEN_DIR / "cpu_no_batch.pbtxt").read_text()
    assert "max_batch_size: 0\n" in text


def test_everything_round_trips() -> None:
    base = GOLDEN["gpu_batching"]
    full = base.replace(
        dynamic_batching=DynamicBatching(
            (8, 16),
            200,
            False,  # preserve ordering: Triton refuses it with 3 levels and DELAY
            3,
            2,
            QueuePolicy("DELAY", 1000, True, 64),
            ((3, QueuePolicy("REJECT", 50, False, 4)), (1, QueuePolicy("DELAY", 9, True, 0))),
        ),
        instance_groups=(
            InstanceGroup(
                "KIND_GPU",
                2,
                (0, 1),
                rate_limiter=RateLimiter(
                    (RateLimitResource("R1", 2, True), RateLimitResource("R2")), 3
                ),
            ),
        ),
        response_cache=True,
        version_policy=VersionPolicy("specific", versions=(1, 3)),
        parameters={"b": "2", "a": 'quote " and \\ backslash'},
        gpu_optimization=GpuOptimization(True, "FP32", 1 << 28, cuda_graphs=True),
        outputs=(TensorSpec("output", "FP32", (4,), label_filename="labels.txt"),),
        inputs=(
            TensorSpec("input", "FP32", (16,)),
            TensorSpec("opt", "BYTES", (1,), optional=True),
        ),
    )
    full = full.replace(warmup=(default_warmup(full, 4),))
    text = render_config(full)
    back = spec_from_config(parse_config(text))
    assert back == full
    assert render_config(back) == text


def test_render_refuses_an_invalid_spec() -> None:
    with pytest.raises(SpecError, match="dynamic batching needs max_batch_size"):
        render_config(GOLDEN["cpu_no_batch"].replace(dynamic_batching=DynamicBatching()))


def test_config_that_does_not_parse_is_reported() -> None:
    with pytest.raises(SpecError, match="does not parse"):
        parse_config('name: "x"\nmax_batch_sizes: 3\n')


def test_instance_kinds_render() -> None:
    for kind in ("KIND_AUTO", "KIND_CPU", "KIND_MODEL", "KIND_GPU"):
        s = GOLDEN["cpu_no_batch"].replace(instance_groups=(InstanceGroup(kind, 3),))
        assert parse_config(render_config(s)).instance_group[0].count == 3


def test_templates_dir_is_found() -> None:
    assert (templates_dir() / "config.pbtxt.j2").is_file()


def test_ensemble_steps_render() -> None:
    from types import SimpleNamespace

    s = ModelSpec(
        name="pipe",
        platform="ensemble",
        max_batch_size=8,
        inputs=(TensorSpec("text", "BYTES", (1,)),),
        outputs=(TensorSpec("label", "BYTES", (1,)),),
        ensemble_steps=(
            SimpleNamespace(
                model_name="pre",
                model_version=-1,
                input_map=(("raw", "text"),),
                output_map=(("ids", "_ids"),),
            ),
            SimpleNamespace(
                model_name="post",
                model_version=1,
                input_map=(("ids", "_ids"),),
                output_map=(("label", "label"),),
            ),
        ),
    )
    c = parse_config(render_config(s))
    assert [st.model_name for st in c.ensemble_scheduling.step] == ["pre", "post"]
    assert dict(c.ensemble_scheduling.step[0].input_map) == {"raw": "text"}


def test_sequence_batching_with_controls_and_implicit_state_round_trips() -> None:
    spec = ModelSpec(
        name="vad",
        platform="onnxruntime_onnx",
        max_batch_size=8,
        inputs=(TensorSpec("input", "FP32", (512,)),),
        outputs=(TensorSpec("output", "FP32", (1,)),),
        sequence_batching=SequenceBatching(
            "oldest",
            5_000_000,
            (
                SequenceControl("start", "START"),
                SequenceControl("end", "END", "BOOL"),
                SequenceControl("ready", "READY", "FP32"),
                SequenceControl("corrid", "CORRID", "UINT64"),
            ),
            (SequenceState("state", "stateN", "FP32", (2, 128)),),
            max_candidate_sequences=4,
            preferred_batch_sizes=(2, 4),
            max_queue_delay_us=100,
        ),
    )
    text = render_config(spec)
    config = parse_config(text)
    sb = config.sequence_batching
    assert sb.oldest.max_candidate_sequences == 4
    assert [ci.name for ci in sb.control_input] == ["START", "END", "READY", "CORRID"]
    assert list(sb.control_input[0].control[0].int32_false_true) == [0, 1]
    assert list(sb.control_input[1].control[0].bool_false_true) == [False, True]
    assert sb.state[0].initial_state[0].zero_data
    assert list(sb.state[0].initial_state[0].dims) == [2, 128]
    back = spec_from_config(config)
    assert back == spec
    assert render_config(back) == text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dynamic_batching": DynamicBatching()}, "exclude each other"),
        ({"response_cache": True}, "response cache does not support sequence batching"),
        (
            {"inputs": (TensorSpec("x", "FP32", (4,)), TensorSpec("s", "FP32", (4,)))},
            "leave it out of the inputs",
        ),
    ],
)
def test_combinations_triton_refuses_are_refused_with_what_to_do(
    changes: dict, message: str
) -> None:
    spec = ModelSpec(
        name="m",
        platform="onnxruntime_onnx",
        max_batch_size=4,
        inputs=(TensorSpec("x", "FP32", (4,)),),
        outputs=(TensorSpec("y", "FP32", (4,)),),
        sequence_batching=SequenceBatching(states=(SequenceState("s", "s_out", "FP32", (4,)),)),
    ).replace(**changes)
    with pytest.raises(SpecError, match=message):
        render_config(spec)


def test_cache_on_a_decoupled_model_and_bad_queue_policies_are_refused() -> None:
    base = GOLDEN["gpu_batching"]
    with pytest.raises(SpecError, match="decoupled"):
        render_config(base.replace(decoupled=True, response_cache=True))
    with pytest.raises(SpecError, match="priority 4 needs priority levels"):
        render_config(
            base.replace(
                dynamic_batching=DynamicBatching(
                    priority_levels=2,
                    default_priority_level=1,
                    priority_queue_policies=((4, QueuePolicy()),),
                )
            )
        )
    with pytest.raises(SpecError, match=r"CORRID.*UINT64"):
        render_config(
            base.replace(
                dynamic_batching=None,
                sequence_batching=SequenceBatching(
                    controls=(SequenceControl("corrid", "C", "FP32"),)
                ),
            )
        )
