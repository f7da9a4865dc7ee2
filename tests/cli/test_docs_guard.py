"""Guards against drift between the CLI, the README and the release facts."""

from pathlib import Path

from click.testing import CliRunner

from packager.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_is_documented_in_the_readme_and_has_help() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        assert f"triton-packager {name}" in readme, f"README does not document `{name}`"
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, f"`{name} --help` failed: {result.output}"


def test_every_command_module_is_routed() -> None:
    routed = {target.split(":")[0] for target in COMMANDS.values()}
    # Underscore modules (__init__, _options) are shared helpers, not commands.
    modules = {
        f"packager.commands.{p.stem}"
        for p in (ROOT / "packager" / "commands").glob("*.py")
        if not p.stem.startswith("_")
    }
    assert modules <= routed


def test_readme_quickstart_scripts_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in readme
        assert (ROOT / script).is_file()
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
