import pytest

from packager.errors import SpecError
from packager.spec import (
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
    default_warmup,
    problems,
)


def spec(**kw):
    base = dict(
        name="m",
        inputs=(TensorSpec("x", "FP32", (4,)),),
        outputs=(TensorSpec("y", "FP32", (2,)),),
        platform="onnxruntime_onnx",
        max_batch_size=8,
    )
    base.update(kw)
    return ModelSpec(**base)


def test_valid_spec_has_no_problems() -> None:
    assert problems(spec()) == []
    assert spec().check().name == "m"


def test_every_problem_is_reported_at_once() -> None:
    bad = spec(
        name="a/b",
        max_batch_size=0,
        inputs=(TensorSpec("x", "FP32", ()), TensorSpec("x", "INT64", (0,))),
        instance_groups=(InstanceGroup("KIND_GPU", 0, (-1,)),),
        dynamic_batching=DynamicBatching((16,), -5),
    )
    with pytest.raises(SpecError) as info:
        bad.check()
    found = "\n".join(info.value.problems)
    for needle in (
        "path separator",
        "rank 0",
        "duplicate tensor name 'x'",
        "dim 0",
        "count must be >= 1",
        "GPU ids must be >= 0",
        "dynamic batching needs max_batch_size > 0",
        "max queue delay must be >= 0",
    ):
        assert needle in found, needle
    assert len(info.value.problems) >= 8


def test_preferred_batch_size_above_max_is_rejected() -> None:
    assert any(
        "preferred batch size 16 > max_batch_size 8" in p
        for p in problems(spec(dynamic_batching=DynamicBatching((4, 16))))
    )


def test_priority_and_queue_policy_rules() -> None:
    p = problems(
        spec(dynamic_batching=DynamicBatching(priority_levels=2, default_priority_level=3))
    )
    assert any("default priority level 3" in x for x in p)
    p = problems(spec(dynamic_batching=DynamicBatching(default_queue_policy=QueuePolicy("DROP"))))
    assert any("REJECT or DELAY" in x for x in p)


@pytest.mark.parametrize("name", ["..", ".hidden", "-x", "a b", "a\\b", "", "é", "x" * 129])
def test_names_triton_rejects(name: str) -> None:
    assert problems(spec(name=name))


def test_gpus_only_with_kind_gpu() -> None:
    assert any(
        "only allowed with KIND_GPU" in p
        for p in problems(spec(instance_groups=(InstanceGroup("KIND_CPU", 1, (0,)),)))
    )


def test_version_policy_parse() -> None:
    assert VersionPolicy.parse("latest:2") == VersionPolicy("latest", 2)
    assert VersionPolicy.parse("all") == VersionPolicy("all")
    assert VersionPolicy.parse("specific:1,3").versions == (1, 3)
    assert str(VersionPolicy.parse("specific:1,3")) == "specific:1,3"
    with pytest.raises(SpecError, match="latest"):
        VersionPolicy.parse("newest")
    assert problems(spec(version_policy=VersionPolicy("latest", 0)))


def test_default_warmup_covers_every_input_with_concrete_dims() -> None:
    s = spec(inputs=(TensorSpec("x", "FP32", (-1, 3)), TensorSpec("t", "BYTES", (1,))))
    w = default_warmup(s, 4)
    assert w.batch_size == 4
    assert [(i.name, i.dims, i.data) for i in w.inputs] == [
        ("x", (1, 3), "random"),
        ("t", (1,), "zero"),
    ]
    assert problems(s.replace(warmup=(w,))) == []
    assert problems(s.replace(warmup=(default_warmup(s, 64),)))  # above max_batch_size


def test_latest_0_means_the_same_everywhere() -> None:
    """One rule (VersionPolicy.served) for versions, validate, fit and footprint: latest:0
    serves no version (and is a config problem), wherever the policy comes from."""
    from packager.deploy.footprint import _served_versions
    from packager.manifest.versions import served_versions
    from packager.render import parse_config, version_policy_of

    policy = VersionPolicy("latest", 0)
    assert policy.served([1, 2, 3]) == []
    assert served_versions(policy, [1, 2, 3]) == []
    config = parse_config('name: "m"\nversion_policy { latest { num_versions: 0 } }\n')
    assert version_policy_of(config) == policy
    assert _served_versions(config, [1, 2, 3]) == []
    assert VersionPolicy("latest", 2).served([3, 1, 2]) == [2, 3]
    assert _served_versions(parse_config('name: "m"\n'), [1, 2]) == [2]  # Triton's latest:1
