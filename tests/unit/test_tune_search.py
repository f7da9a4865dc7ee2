"""The pure parts of tune: search space, objective, grid and hill climbing, config overrides,
and --apply's config edit through the atomic repository writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager.errors import SpecError, TuneError
from packager.render import parse_config, render_config
from packager.repository import read_config, verify_repository, write_model
from packager.spec import DynamicBatching, InstanceGroup, ModelSpec, TensorSpec, Warmup, WarmupInput
from packager.tune.apply import TUNING_RECORD, apply_candidate, config_text, tuned_config
from packager.tune.run import search_space
from packager.tune.search import (
    Budget,
    Candidate,
    Objective,
    Point,
    SearchSpace,
    Trial,
    check_options,
    parse_int_list,
    pick_winner,
    run_search,
)
from packager.tune.server import current_candidate, override_config, request_inputs
from tests.support.tree import snapshot

SPEC = ModelSpec(
    name="mlp",
    platform="onnxruntime_onnx",
    max_batch_size=32,
    inputs=(TensorSpec("input", "FP32", (16,)),),
    outputs=(TensorSpec("output", "FP32", (4,)),),
    instance_groups=(InstanceGroup("KIND_CPU", 1),),
    dynamic_batching=DynamicBatching((8, 32), 0, preserve_ordering=True),
    warmup=(Warmup("w", 32, (WarmupInput("input", "FP32", (16,)),)),),
)
SPACE = SearchSpace((1, 2, 4), (8, 32, 128), (0, 200, 1000), True, 32)


def pt(c: int, thr: float, p99: float, errors: int = 0) -> Point:
    return Point(c, thr, p99 / 2, p99 * 0.8, p99 * 0.9, p99, requests=int(thr) or 1, errors=errors)


# ----------------------------------------------------------------------------- search space


def test_candidate_labels_are_unique_over_the_grid() -> None:
    grid = SPACE.grid()
    assert len(grid) == 3 * (1 + 3 * 3)
    assert len({c.label for c in grid}) == len(grid)
    assert Candidate(2, 32, True, 200).label == "i2-b32-q200"
    assert Candidate(1, 32, False).label == "i1-b32-off"
    assert Candidate(1, 32, False).to_dict()["queue_delay_us"] is None


def test_space_sorts_dedupes_and_refuses_bad_values() -> None:
    s = SearchSpace((4, 1, 1), (32, 8), (200, 0), True, 32)
    assert s.instances == (1, 4) and s.max_batch_sizes == (8, 32)
    with pytest.raises(TuneError, match="--instances"):
        SearchSpace((0,), (8,), (0,))
    with pytest.raises(TuneError, match="--queue-delay-us"):
        SearchSpace((1,), (8,), (-5,))


def test_snap_and_neighbours() -> None:
    assert SPACE.snap(Candidate(3, 50, True, 150)) == Candidate(2, 32, True, 200)
    assert SPACE.snap(Candidate(1, 64, False)) == Candidate(1, 32, False)
    near = SPACE.neighbours(Candidate(2, 32, True, 200))
    assert set(near) == {
        Candidate(1, 32, True, 200),
        Candidate(4, 32, True, 200),
        Candidate(2, 8, True, 200),
        Candidate(2, 128, True, 200),
        Candidate(2, 32, True, 0),
        Candidate(2, 32, True, 1000),
        Candidate(2, 32, False),
    }
    assert set(SPACE.neighbours(Candidate(1, 32, False))) == {
        Candidate(2, 32, False),
        Candidate(1, 32, True, 0),
    }


def test_a_model_that_does_not_batch_tunes_instances_only() -> None:
    config = parse_config(
        render_config(SPEC.replace(max_batch_size=0, dynamic_batching=None, warmup=()))
    )
    start = current_candidate(config)
    assert start == Candidate(1, 0, False, 0)
    space = search_space(config, start)
    assert space.grid() == [Candidate(n, 0, False) for n in (1, 2, 4)]
    with pytest.raises(TuneError, match="does not batch"):
        search_space(config, start, max_batch_sizes=(8,))


def test_default_axes_include_the_current_values() -> None:
    config = parse_config(render_config(SPEC.replace(dynamic_batching=DynamicBatching((), 300))))
    start = current_candidate(config)
    assert start == Candidate(1, 32, True, 300)
    space = search_space(config, start)
    assert space.max_batch_sizes == (8, 32, 128)
    assert space.queue_delays_us == (0, 200, 300, 1000)
    assert search_space(config, start, instances=(3,)).instances == (3,)


def test_several_instance_groups_are_measured_as_they_are() -> None:
    spec = SPEC.replace(
        instance_groups=(InstanceGroup("KIND_GPU", 1, (0,)), InstanceGroup("KIND_GPU", 2, (1,)))
    )
    config = parse_config(render_config(spec))
    start = current_candidate(config)
    assert start.instances == 3
    assert search_space(config, start).instances == (3,)
    with pytest.raises(TuneError, match="instance groups"):
        search_space(config, start, instances=(1, 2))


# ----------------------------------------------------------------------------- objective


def test_objective_latency_budget() -> None:
    obj = Objective(max_latency_ms=20)
    t = Trial(Candidate(1, 8, True), [pt(1, 100, 5), pt(8, 400, 15), pt(32, 900, 60)])
    assert obj.best_point(t) == t.points[1]
    assert obj.score(t) == (2, 400)
    with_errors = Trial(Candidate(1, 8, True), [pt(8, 500, 10, errors=3)])
    assert obj.best_point(with_errors) is None
    too_slow = Trial(Candidate(2, 8, True), [pt(1, 100, 25), pt(8, 800, 40)])
    assert obj.score(too_slow) == (1, -25)  # closest to feasible: lowest p99
    assert obj.better(t, too_slow)
    assert obj.score(Trial(Candidate(1, 8, False), error="failed to load")) == (0, 0.0)


def test_errors_are_reported_with_their_first_message() -> None:
    p = Point(4, 10.0, 1, 2, 3, 4, requests=10, errors=2, first_error="InferenceServerError: boom")
    assert p.to_dict()["first_error"] == "InferenceServerError: boom"
    assert "first_error" not in pt(1, 100, 5).to_dict()
    assert not Objective().feasible(p)


def test_objective_throughput_floor_minimizes_p99() -> None:
    obj = Objective(min_throughput=300)
    assert obj.minimize_latency
    a = Trial(Candidate(1, 8, True), [pt(1, 100, 5), pt(8, 400, 15), pt(32, 900, 60)])
    b = Trial(Candidate(2, 8, True), [pt(8, 350, 12)])
    assert obj.best_point(a) == a.points[1]
    assert pick_winner([a, b], obj) is b
    assert "lowest p99" in obj.describe()


def test_winner_ties_go_to_fewer_instances_and_none_when_infeasible() -> None:
    obj = Objective(max_latency_ms=10)
    a = Trial(Candidate(4, 8, True), [pt(1, 100, 5)])
    b = Trial(Candidate(1, 8, True), [pt(1, 100, 5)])
    assert pick_winner([a, b], obj) is b
    assert pick_winner([Trial(Candidate(1, 8, True), [pt(1, 100, 50)])], obj) is None


def test_gain_threshold_ignores_noise() -> None:
    obj = Objective()
    a = Trial(Candidate(1, 8, True), [pt(1, 102, 5)])
    b = Trial(Candidate(2, 8, True), [pt(1, 100, 5)])
    assert obj.better(a, b) and not obj.better(a, b, gain=0.03)


# ----------------------------------------------------------------------------- search


def synthetic(c: Candidate) -> Trial:
    """A unimodal landscape: batching pays, best at 2 instances, batch 32, 200 us."""
    if not c.dynamic_batching:
        thr = 100.0 * c.instances
    else:
        thr = (
            1000.0 - 150 * abs(c.instances - 2) - abs(c.max_batch_size - 32) - c.queue_delay_us / 10
        )
        thr -= abs(c.queue_delay_us - 200) / 5
    return Trial(c, [pt(16, thr, 10)])


def test_quick_search_climbs_to_the_optimum_with_fewer_trials_than_the_grid() -> None:
    obj = Objective(max_latency_ms=20)
    seen: list[str] = []
    out = run_search(
        SPACE,
        Candidate(1, 8, False),
        obj,
        synthetic,
        search="quick",
        budget=Budget(1e9, 1.0),
        progress=seen.append,
    )
    winner = pick_winner(out.trials, obj)
    assert winner is not None and winner.candidate == Candidate(2, 32, True, 200)
    assert out.stopped == "done"
    assert len(out.trials) < len(SPACE.grid())
    assert out.trials[0].candidate == Candidate(1, 32, False)  # the start, snapped
    assert any(line.startswith("moving to") for line in seen)


def test_full_search_measures_every_candidate_current_first() -> None:
    out = run_search(
        SPACE,
        Candidate(2, 32, True, 200),
        Objective(),
        synthetic,
        search="full",
        budget=Budget(1e9, 1.0),
    )
    assert len(out.trials) == len(SPACE.grid())
    assert out.trials[0].candidate == Candidate(2, 32, True, 200)
    assert len({t.candidate for t in out.trials}) == len(out.trials)


def test_budget_stops_before_a_candidate_would_overrun() -> None:
    clock = [0.0]

    def slow(c: Candidate) -> Trial:
        clock[0] += 4.0
        return synthetic(c)

    out = run_search(
        SPACE,
        Candidate(1, 8, True),
        Objective(),
        slow,
        search="full",
        budget=Budget(10.0, 4.0, clock=lambda: clock[0]),
    )
    assert len(out.trials) == 2  # 0 -> 4 -> 8; a third would end at 12 > 10
    assert out.stopped == "budget"
    assert out.skipped == len(SPACE.grid()) - 2


def test_options_are_checked_before_anything_runs() -> None:
    assert parse_int_list("1, 8,32", "--concurrency") == (1, 8, 32)
    with pytest.raises(TuneError, match="--concurrency 'a,b'"):
        parse_int_list("a,b", "--concurrency")
    with pytest.raises(TuneError, match="raise --budget-s"):
        check_options((1, 8), 5, 3.0, 1.0, 20, None)
    with pytest.raises(TuneError, match="--max-latency-ms"):
        check_options((1,), 60, 1.0, 0.0, -1, None)


# ----------------------------------------------------------------------------- configs


def test_override_changes_only_the_tuned_knobs() -> None:
    user = parse_config(render_config(SPEC))
    served = {
        "name": "mlp",
        "backend": "python",
        "max_batch_size": 32,
        "input": [{"name": "input"}],
        "instance_group": [{"name": "mlp_0", "kind": "KIND_CPU", "count": 1}],
        # Triton's auto-complete: never reused, it would be invalid for a smaller batch size
        "dynamic_batching": {"preferred_batch_size": [32], "max_queue_delay_microseconds": 0},
        "model_warmup": [{"name": "w", "batch_size": 32}],
        "parameters": {"artifact": {"string_value": "model.onnx"}},
    }
    cfg = override_config(served, user, Candidate(2, 16, True, 500))
    assert cfg["max_batch_size"] == 16
    assert cfg["instance_group"] == [{"name": "mlp_0", "kind": "KIND_CPU", "count": 2}]
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [8]
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert cfg["dynamic_batching"]["preserve_ordering"] is True
    assert cfg["model_warmup"][0]["batch_size"] == 16
    assert cfg["backend"] == "python" and cfg["parameters"] == served["parameters"]
    assert served["max_batch_size"] == 32  # the served config itself is not changed
    off = override_config(served, user, Candidate(1, 32, False))
    assert "dynamic_batching" not in off
    json.dumps(off)  # what the load request sends
    # tune repeats one request: a cached model is measured without the cache, or every
    # candidate would time cache hits
    cached = override_config(
        {**served, "response_cache": {"enable": True}}, user, Candidate(1, 32, False)
    )
    assert "response_cache" not in cached


def test_request_inputs_are_one_sample_of_each_input() -> None:
    inputs = request_inputs(parse_config(render_config(SPEC)))
    assert {k: (v.shape, str(v.dtype)) for k, v in inputs.items()} == {
        "input": ((1, 16), "float32")
    }


def test_tuned_config_keeps_the_template_layout() -> None:
    config = parse_config(render_config(SPEC))
    new = tuned_config(config, Candidate(4, 16, True, 200))
    text = config_text(new)
    expected = SPEC.replace(
        max_batch_size=16,
        instance_groups=(InstanceGroup("KIND_CPU", 4),),
        dynamic_batching=DynamicBatching((8,), 200, preserve_ordering=True),
        warmup=(Warmup("w", 16, SPEC.warmup[0].inputs),),
    )
    assert text == render_config(expected)
    off = parse_config(config_text(tuned_config(config, Candidate(1, 32, False))))
    assert not off.HasField("dynamic_batching") and off.max_batch_size == 32


def test_tuned_config_keeps_fields_the_template_does_not_know() -> None:
    config = parse_config(render_config(SPEC) + "response_cache { enable: true }\n")
    text = config_text(tuned_config(config, Candidate(2, 32, True, 0)))
    parsed = parse_config(text)
    assert parsed.response_cache.enable
    assert parsed.instance_group[0].count == 2


def test_apply_rewrites_config_and_records_beside_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.onnx": b"graph"})
    write_model(repo, SPEC.replace(name="other"), {"model.onnx": b"other"})
    before = snapshot(repo)
    text = apply_candidate(repo / "mlp", Candidate(2, 32, True, 1000), {"winner": "i2-b32-q1000"})
    after = snapshot(repo)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # The model-level SHA256SUMS is rewritten by the same writer: the edit stays verifiable.
    assert changed == {"mlp/config.pbtxt", f"mlp/{TUNING_RECORD}", "mlp/SHA256SUMS"}
    assert verify_repository(repo) == ([], [])
    config = read_config(repo / "mlp")
    assert (repo / "mlp" / "config.pbtxt").read_text() == text
    assert config.instance_group[0].count == 2
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert json.loads((repo / "mlp" / TUNING_RECORD).read_text()) == {"winner": "i2-b32-q1000"}


def test_apply_that_cannot_be_done_leaves_the_repository_unchanged(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    spec = SPEC.replace(
        instance_groups=(InstanceGroup("KIND_GPU", 1, (0,)), InstanceGroup("KIND_GPU", 1, (1,)))
    )
    write_model(repo, spec, {"model.onnx": b"graph"})
    before = snapshot(repo)
    with pytest.raises(SpecError, match="instance groups"):
        apply_candidate(repo / "mlp", Candidate(4, 32, True, 0), {})
    assert snapshot(repo) == before
