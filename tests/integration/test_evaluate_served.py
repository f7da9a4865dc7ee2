"""Compressed models served by the real embedded tritonserver keep their accuracy.

A classifier trained in seconds (tests/support/classifier.py) is built four ways into one
repository (fp32, dynamic int8, static int8, fp16), served once for the whole module (native
ONNX models run through the server's Python-backend shadow), and scored with ``evaluate``
through :mod:`packager.client`, over HTTP and gRPC, from the library and from the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from packager.builder import BuildResult, build
from packager.cli import main
from packager.compress.evaluate import evaluate, load_labeled
from packager.errors import PackagerError
from packager.serve.server import LocalServer
from tests.support import classifier

pytestmark = pytest.mark.integration


@dataclass
class Served:
    server: LocalServer
    clf: classifier.Classifier
    builds: dict[str, BuildResult]


@pytest.fixture(scope="module")
def served(start_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    clf = classifier.trained()
    repo = tmp_path_factory.mktemp("evaluate") / "repo"
    options = {
        "clf": {},
        "clf_dyn8": {"quantize": "dynamic-int8"},
        "clf_s8": {"quantize": "static-int8", "calibration_data": clf.calibration},
        "clf_fp16": {"fp16": True},
    }
    builds = {
        name: build(clf.onnx, name=name, output=repo, eval_data=clf.test if opts else None, **opts)
        for name, opts in options.items()
    }
    server = start_server(repo)
    yield Served(server, clf, builds)
    server.stop()


@pytest.mark.parametrize("name", ["clf_dyn8", "clf_s8"])
def test_int8_is_3x_smaller_and_within_2_points_through_the_server(served, name):
    fp32 = evaluate("clf", served.clf.test, url=served.server.http_url)
    int8 = evaluate(name, served.clf.test, url=served.server.http_url)
    assert fp32.metrics["accuracy"] == pytest.approx(served.clf.accuracy, abs=0.002)
    assert abs(int8.metrics["accuracy"] - fp32.metrics["accuracy"]) <= 0.02
    comp = served.builds[name].record["compression"]
    assert comp["param_ratio"] >= 3.0
    # The accuracy measured at build time (in-process ONNX Runtime) is what the server gives.
    assert comp["stages"][-1]["metric"] == pytest.approx(int8.metrics["accuracy"], abs=0.01)


def test_fp16_keeps_accuracy_and_fp32_inputs(served):
    result = evaluate("clf_fp16", served.clf.test, url=served.server.http_url)
    assert abs(result.metrics["accuracy"] - served.clf.accuracy) <= 0.01


def test_served_fp32_matches_its_reference_sample_for_sample(served):
    result = evaluate(
        "clf",
        served.clf.test,
        url=served.server.http_url,
        metrics=["accuracy", "top2"],
        reference=served.clf.onnx,
        batch_size=20,
    )
    assert result.samples == 1000 and result.batch_size == 20
    assert result.reference_metrics == pytest.approx(result.metrics, abs=1e-9)
    assert result.agreement == 1.0
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert result.metrics["top2"] >= result.metrics["accuracy"]
    text = result.table()
    assert "reference classifier.onnx" in text and "+0.0000" in text


def test_int8_against_the_fp32_reference_over_grpc(served):
    result = evaluate(
        "clf_dyn8",
        served.clf.test,
        url=f"grpc://{served.server.grpc_url}",
        reference=served.clf.onnx,
    )
    assert result.agreement is not None and result.agreement >= 0.95
    assert result.max_abs_diff > 0  # int8 is not bit-identical: the comparison measures it
    assert result.reference_metrics["accuracy"] == pytest.approx(served.clf.accuracy, abs=0.002)


def test_progress_reports_every_batch(served):
    seen: list[tuple[int, int]] = []
    evaluate(
        "clf",
        served.clf.test,
        url=served.server.http_url,
        batch_size=30,  # the models' max_batch_size is 32
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(min(n, 1000), 1000) for n in range(30, 1030, 30)]


def test_data_that_does_not_fit_is_refused(served, tmp_path: Path):
    data = load_labeled(served.clf.test)
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=data.inputs["input"], labels=data.labels)
    with pytest.raises(PackagerError, match=r"lacks input.*input"):
        evaluate("clf", bad, url=served.server.http_url)
    with pytest.raises(PackagerError, match="no output 'probs'"):
        evaluate("clf", served.clf.test, url=served.server.http_url, output="probs")
    with pytest.raises(PackagerError, match=r"max_batch_size \(32\); got 33"):
        evaluate("clf", served.clf.test, url=served.server.http_url, batch_size=33)


def test_evaluate_command_json_on_stdout_progress_on_stderr(served):
    result = CliRunner().invoke(
        main,
        [
            "evaluate", "clf_s8", "--data", str(served.clf.test), "--metric", "accuracy",
            "--metric", "top2", "--reference", str(served.clf.onnx),
            "--url", served.server.http_url, "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["metrics"]) == {"accuracy", "top2"}
    assert abs(data["metrics"]["accuracy"] - data["reference_metrics"]["accuracy"]) <= 0.02
    assert data["samples"] == 1000 and data["model"] == "clf_s8"
    assert "evaluating clf_s8" in result.stderr


def test_evaluate_command_table(served):
    result = CliRunner().invoke(
        main,
        ["evaluate", "clf_dyn8", "--data", str(served.clf.test), "--url", served.server.http_url],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["metric", "served", "clf_dyn8"]
    assert "1000 samples" in result.stdout


def test_evaluate_command_unknown_model(served):
    result = CliRunner().invoke(
        main,
        ["evaluate", "nope", "--data", str(served.clf.test), "--url", served.server.http_url],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and "nope" in result.stderr
