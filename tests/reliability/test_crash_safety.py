"""Crash safety: a build SIGKILLed at a random point leaves the repository as it was or fully built.

Each trial first runs the same build to the end on a copy of the repository (that gives the
"fully built" tree, byte for byte: builds are deterministic), then runs it in the real
repository and SIGKILLs it after a random delay between 0 and that build's own duration. The
repository must then equal the "before" or the "after" tree, pass ``validate`` (which also
fails on any folder Triton would try to load, such as a staging folder left inside), and take
the next build. Trials cycle through a new model, a new version, a forced replacement of a
version, and a Python-backend model.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper

from packager.builder import build
from packager.repository import STAGING_PREFIX, _recover, _stale_stages, sha256_file
from packager.validation import validate
from tests.support.tree import snapshot

TRIALS = 40
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """The forking build worker (tests/reliability/crash_worker.py) over a pipe."""

    def __init__(self, model: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask({"model": str(model)})["status"] == "ready"

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the crash worker died"
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker(model_files: dict[str, Path]) -> Iterator[Worker]:
    w = Worker(model_files["mlp"])
    yield w
    w.close()


def scaled_weights(src: Path, dst: Path, factor: float) -> Path:
    """Same graph, different weights: a replacement whose bytes differ."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    onnx.save(model, str(dst))
    return dst


def trial_request(i: int, models: list[Path], repo: Path) -> dict[str, Any]:
    """Trial ``i``: which build to run (cycling through the kinds of write)."""
    kind = i % 4
    model = str(models[i % len(models)])
    if kind == 2:  # the replacement must differ from what version 1 holds now
        live = sha256_file(repo / "replaced" / "1" / "model.onnx")
        model = str(next(m for m in models if sha256_file(m) != live))
    if kind == 0:
        return {"model": model, "name": f"fresh{i}", "output": str(repo)}
    if kind == 1:
        return {"model": model, "name": "grows", "output": str(repo)}
    if kind == 2:
        return {
            "model": model,
            "name": "replaced",
            "output": str(repo),
            "version": 1,
            "force": True,
        }
    return {"model": model, "name": "py", "output": str(repo), "backend": "python"}


def leftovers(repo: Path) -> list[str]:
    """Staging folders inside the repository or beside it."""
    return sorted(
        p.name
        for folder in (repo, repo.parent)
        for p in folder.iterdir()
        if p.name.startswith(STAGING_PREFIX)
    )


def run_trials(
    worker: Worker, models: list[Path], tmp_path: Path, trials: range, **flags: Any
) -> tuple[Path, Counter[str]]:
    """Run kill trials; returns the repository and how the trials ended."""
    repo = tmp_path / "area" / "repo"
    build(str(models[0]), name="grows", output=repo)
    build(str(models[0]), name="replaced", output=repo)
    build(str(models[0]), name="py", output=repo, backend="python")
    rng = random.Random(20240917)
    outcomes: Counter[str] = Counter()
    for i in trials:
        before = snapshot(repo)
        scratch = tmp_path / f"ref{i}" / "repo"
        shutil.copytree(repo, scratch, symlinks=True)
        ref = worker.ask({**trial_request(i, models, scratch), **flags, "kill_after_s": None})
        assert ref["status"] == "done", ref
        after = snapshot(scratch)
        assert after != before, (i, ref)
        shutil.rmtree(scratch.parent)

        delay = rng.uniform(0.0, ref["elapsed_s"])
        got = worker.ask({**trial_request(i, models, repo), **flags, "kill_after_s": delay})
        assert got["status"] in ("killed", "done"), got
        if flags.get("no_exchange"):
            # Two renames are not atomic: a kill between them leaves the model moved aside,
            # which the next writer restores first thing (under the repository lock).
            if any(old for stage in _stale_stages(repo) for old in stage.glob("*.old")):
                outcomes["caught between the two renames"] += 1
            _recover(repo)
        now = snapshot(repo)
        state = "before" if now == before else "after" if now == after else "HALF-WRITTEN"
        outcomes[f"{got['status']}, {state}"] += 1
        assert state != "HALF-WRITTEN", (
            f"trial {i} ({got}, kill after {delay:.4f} s): differs from before at "
            f"{sorted(set(now.items()) ^ set(before.items()))[:6]}"
        )
        report = validate(repo)
        assert report.ok, (i, [m.problems for m in report.models if m.problems])
        assert not any(p.name.startswith(STAGING_PREFIX) for p in repo.iterdir())
    return repo, outcomes


@pytest.fixture
def models(model_files: dict[str, Path], tmp_path: Path) -> list[Path]:
    return [
        model_files["mlp"],
        scaled_weights(model_files["mlp"], tmp_path / "mlp_x2.onnx", 2.0),
        scaled_weights(model_files["mlp"], tmp_path / "mlp_x3.onnx", 3.0),
    ]


def test_sigkill_at_random_points_leaves_old_or_new_never_half(
    worker: Worker, models: list[Path], tmp_path: Path
) -> None:
    repo, outcomes = run_trials(worker, models, tmp_path, range(TRIALS))
    print(f"\n{TRIALS} SIGKILL trials: {dict(outcomes)}")
    # Most kills land inside the build: the trial really interrupted work in progress.
    assert sum(n for k, n in outcomes.items() if k.startswith("killed")) >= TRIALS // 2
    # The next build clears whatever a killed build left beside the repository.
    build(str(models[0]), name="last", output=repo)
    assert leftovers(repo) == []
    assert validate(repo).ok


def test_sigkill_without_rename_exchange_is_repaired_by_the_next_writer(
    worker: Worker, models: list[Path], tmp_path: Path
) -> None:
    """Where renameat2(RENAME_EXCHANGE) is missing, the swap is two renames; a kill between them
    is repaired by the recovery that every write starts with."""
    trials = 24
    _, outcomes = run_trials(worker, models, tmp_path, range(trials), no_exchange=True)
    print(f"\n{trials} SIGKILL trials without RENAME_EXCHANGE: {dict(outcomes)}")
    assert sum(n for k, n in outcomes.items() if k.startswith("killed")) >= trials // 2
