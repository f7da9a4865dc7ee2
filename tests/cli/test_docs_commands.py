"""Every command block of README.md and docs/*.md runs as written (issue 32).

A command block is a fenced block tagged ``bash`` (or ``sh``/``shell``/``console``); synopses
with ``[optional]`` parts and sample output go in untagged blocks. Blocks run in document order,
one file after another, in one shared folder (so a block may use what an earlier one built),
with ``triton-packager`` on PATH running this checkout and the example inputs below. A block
that cannot run here is marked on the line before its fence::

    <!-- docs-test: skip needs a GPU host -->

and is reported as skipped with that reason (``pytest -rs`` lists them). Every
``triton-packager`` line of any fenced block (synopses too) is also checked for options that do
not exist under that name (renamed or removed ones).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|shell|console)\s*$")
MARK = re.compile(r"^<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if FENCE.match(lines[i]):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                mark = MARK.match(lines[i - 1]) if i else None
                rel = str(path.relative_to(ROOT))
                out.append(Block(rel, i + 1, "\n".join(lines[i + 1 : end]), mark and mark[1]))
                i = end
            i += 1
    return out


BLOCKS = blocks()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: the committed examples, and the files the docs call model.onnx etc."""
    import torch

    from tests.support.client_models import mlp_onnx

    work = tmp_path_factory.mktemp("docs")
    for folder in ("examples", "scripts", "model_repository"):  # as in a checkout
        shutil.copytree(ROOT / folder, work / folder)
    mlp = mlp_onnx(work / "model.onnx")  # input [-1, 16] FP32 -> output [-1, 4]
    net = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4)
    )
    traced = torch.jit.trace(net.eval(), torch.zeros(1, 3, 224, 224))
    torch.jit.save(traced, str(work / "model.pt"))  # TorchScript: INPUT__0 [3, 224, 224]
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(mlp, work / name)
    rng = np.random.default_rng(0)
    np.save(work / "x.npy", rng.standard_normal((2, 16)).astype(np.float32))
    np.savez(work / "calib.npz", input=rng.standard_normal((8, 16)).astype(np.float32))
    np.savez(
        work / "test.npz",
        input=rng.standard_normal((32, 16)).astype(np.float32),
        labels=rng.integers(0, 4, 32),
    )
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "triton-packager"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m packager "$@"\n')
    shim.chmod(0o755)
    return work


def test_every_block_is_found_and_every_skip_has_a_reason() -> None:
    assert len(BLOCKS) > 10
    for b in BLOCKS:
        assert b.skip is None or len(b.skip) > 8, f"{b.id}: say why it is skipped"


@pytest.mark.integration
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs_as_written(block: Block, workspace: Path) -> None:
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    env = {
        **os.environ,
        "PATH": f"{workspace / '.bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{block.id} failed as written (exit {result.returncode}):\n{block.text}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def command_lines() -> list[tuple[str, str]]:
    """(where, command line) for every ``triton-packager ...`` line in any fenced block of the
    docs, tagged or not (synopses included), continuation lines joined."""
    out = []
    for path in DOCS:
        rel = str(path.relative_to(ROOT))
        fenced, pending, start = False, "", 0
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                fenced, pending = not fenced, ""
                continue
            if not fenced:
                continue
            text = line.split(" #", 1)[0].strip() if not pending else line.strip()
            if pending:
                pending += " " + text.split(" #", 1)[0]
            elif re.match(r"^(\$ )?triton-packager [a-z]", text):
                pending, start = text.removeprefix("$ "), n
            if pending and not pending.endswith("\\"):
                out.append((f"{rel}:{start}", pending))
                pending = ""
            elif pending:
                pending = pending[:-1].rstrip()
    return out


def test_every_documented_option_exists_under_its_name() -> None:
    # Untagged synopses are not run, but a renamed or removed option in them still misleads.
    import click

    from packager.cli import main

    ctx = click.Context(main)
    problems = []
    for where, line in command_lines():
        words = line.split()
        command = main.get_command(ctx, words[1])
        if command is None:
            problems.append(f"{where}: no command {words[1]!r}")
            continue
        visible = {o for p in command.params if not getattr(p, "hidden", False)
                   for o in (*p.opts, *p.secondary_opts)}  # fmt: skip
        visible.add("--help")
        for word in words[2:]:
            for token in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", word):
                if token not in visible:
                    problems.append(f"{where}: triton-packager {words[1]} has no {token}")
    assert not problems, "\n".join(problems)
