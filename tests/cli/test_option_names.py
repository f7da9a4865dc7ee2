"""One meaning per option name across commands (issue 32).

docs/cli.md holds the table of every option name that more than one command takes; this test
keeps that table and the CLI in step, so that a new command reusing a name has to say what it
means there. Renamed options keep working for a while, say so, and refuse to be mixed with their
new name.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from packager.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(--?[a-z0-9-]+)` \| ([a-z0-9, -]+) \|")  # commands may hold a hyphen


def shared_names() -> dict[str, set[str]]:
    ctx = click.Context(main)
    names: dict[str, set[str]] = {}
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts + param.secondary_opts:
                    names.setdefault(opt, set()).add(name)
    return {opt: cmds for opt, cmds in names.items() if len(cmds) > 1}


def documented() -> dict[str, set[str]]:
    rows = {}
    for line in (ROOT / "docs" / "cli.md").read_text().splitlines():
        if m := ROW.match(line):
            rows[m.group(1)] = {c.strip() for c in m.group(2).split(",")}
    return rows


def test_every_shared_option_name_is_in_the_table_with_its_commands() -> None:
    table = documented()
    for opt, commands in sorted(shared_names().items()):
        assert opt in table, f"{opt} ({', '.join(sorted(commands))}) is missing in docs/cli.md"
        assert table[opt] == commands, f"docs/cli.md: {opt} is taken by {sorted(commands)}"


def test_names_that_meant_two_things_now_mean_one() -> None:
    shared = shared_names()
    assert shared["--input"] == {"build", "inspect"}  # NAME:DTYPE:DIMS
    assert shared["--input-file"] == {"infer", "bench", "explain"}  # NAME=FILE.npy
    assert shared["--gpus"] == {"build", "docker"}  # device ids (fit: --gpu-count)
    assert shared["--duration-s"] == shared["--warmup-s"] == {"bench", "tune"}
    assert shared["--no-checksums"] == {"serve", "validate"}
    assert "--no-verify" not in shared  # build only: verify the export
    assert shared["--output"] == {"build", "docker", "k8s", "mesh"}  # a folder to write
    assert "--text" not in shared and "--kind" not in shared and "--warmup" not in shared


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (["infer", "m", "--input", "nosuch.npy"], "--input-file", "nosuch.npy: no such file"),
        (["bench", "m", "--input", "nosuch.npy"], "--input-file", "nosuch.npy: no such file"),
        (["bench", "m", "--duration", "0"], "--duration-s", "--duration-s must be positive"),
        (["bench", "m", "--warmup", "-1"], "--warmup-s", "--warmup-s 0 or more"),
        (["explain", "m", "--text", "hi", "--html", "no/a.html"], "--input-text", "does not exist"),
        (["explain", "m", "--input", "nosuch.npy"], "--input-file", "nosuch.npy: no such file"),
        (["fit", "nosuch", "--gpus", "1"], "--gpu-count", "nosuch"),
        (["serve", "nosuch", "--no-verify"], "--no-checksums", "nosuch"),
    ],
)
def test_an_old_name_still_works_and_says_its_new_name(
    old: list[str], new: str, message: str
) -> None:
    result = run(*old)
    assert f"is deprecated here; use {new} (same meaning)" in result.stderr
    assert message in result.output and "No such option" not in result.output


def test_old_and_new_name_together_are_refused() -> None:
    result = run("infer", "m", "--input", "a.npy", "--input-file", "b.npy")
    assert result.exit_code == 2 and "give only --input-file" in result.output
    result = run("bench", "m", "--duration", "1", "--duration-s", "2")
    assert result.exit_code == 2 and "give only --duration-s" in result.output


def test_new_names_are_taken(tmp_path: Path) -> None:
    assert "nosuch.npy: no such file" in run("infer", "m", "--input-file", "nosuch.npy").output
    result = run("bench", "m", "--duration-s", "0")
    assert "--duration-s must be positive" in result.output and not result.stderr.count("warn")
    for command, option in (("infer", "--select-output"), ("evaluate", "--select-output"),
                            ("explain", "--select-output"), ("explain", "--feature-kind"),
                            ("fit", "--gpu-count"), ("serve", "--no-checksums")):  # fmt: skip
        assert option in run(command, "--help").output, (command, option)
