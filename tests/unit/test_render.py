from pathlib import Path

import pytest

from packager.errors import SpecError
from packager.render import parse_config, render_config, spec_from_config, templates_dir
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
            (8, 16), 200, True, 3, 2, QueuePolicy("DELAY", 1000, True, 64)
        ),
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
